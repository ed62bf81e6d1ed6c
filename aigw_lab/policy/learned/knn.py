"""k-nearest-neighbour quality prediction (RouterBench's KNN router, on prompt embeddings).

A new prompt's predicted quality for each model is the mean recorded score of that model on
the ``k`` training prompts most similar to it (cosine similarity of the embeddings). Labels
missing for a neighbour are skipped; a model with no labelled neighbour gets its overall
training mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.learned.base import (
    QualityModel,
    check_training_data,
    column_means,
    top_k_similar,
)

__all__ = ["KnnQuality"]


class KnnQuality(QualityModel):
    """Mean score of the ``k`` nearest training prompts, per model."""

    router: ClassVar[str] = "knn"

    def __init__(self, k: int = 40) -> None:
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"knn k={k!r} is invalid", hint="use a positive integer")
        self.k = k
        self._X: np.ndarray | None = None
        self._Y: np.ndarray | None = None
        self._fallback: np.ndarray | None = None

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> KnnQuality:
        self._X, self._Y = check_training_data(X, Y)
        self._fallback = column_means(self._Y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        train, labels, fallback = self._fitted()
        nearest = top_k_similar(np.asarray(X, dtype=np.float32), train, self.k)
        neighbours = labels[nearest]  # (q, k, m)
        counts = np.sum(~np.isnan(neighbours), axis=1)
        sums = np.nansum(neighbours, axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), fallback[None, :])

    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def arrays(self) -> dict[str, np.ndarray]:
        train, labels, _ = self._fitted()
        return {"X": train, "Y": labels}

    @classmethod
    def from_state(cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> KnnQuality:
        return cls(int(params.get("k", 40))).fit(arrays["X"], arrays["Y"])

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._X is None or self._Y is None or self._fallback is None:
            raise ConfigError("this kNN router is not fitted", hint="call fit(X, Y) first")
        return self._X, self._Y, self._fallback
