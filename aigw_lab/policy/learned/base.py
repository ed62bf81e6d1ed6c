"""The quality-model contract shared by the learned routers.

A quality model is fitted on prompt embeddings ``X`` (n, d), unit rows, and the recorded
scores ``Y`` (n, m) of the m candidate models (NaN = no label), and then predicts, for new
prompts, a quality per candidate (`QualityModel.predict`) and, for two-model routing, a
strong-win score (`QualityModel.strong_score`: higher = the strong model is more worth it).
It saves itself as named arrays plus JSON-ready hyperparameters, so a router file needs no
pickle and no scikit-learn at serving time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from aigw_lab.errors import ConfigError

__all__ = ["QualityModel", "check_training_data", "column_means"]


class QualityModel:
    """Base of `KnnQuality`, `SwRanking`, `LogisticQuality` and `RidgeQuality`."""

    #: The ``router`` name in a learned policy's spec.
    router: ClassVar[str] = ""

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> QualityModel:
        """Learn from training prompts only; ``pair`` = (strong, weak) column indices when
        the router will route between two models (some models fit a pairwise target)."""
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted quality per candidate, shape (len(X), m)."""
        raise NotImplementedError

    def strong_score(self, X: np.ndarray, strong: int, weak: int) -> np.ndarray:
        """The strong-win score of each prompt: by default the predicted quality advantage
        of the strong model over the weak one."""
        quality = self.predict(X)
        return quality[:, strong] - quality[:, weak]

    def params(self) -> dict[str, Any]:
        """JSON-ready hyperparameters (what `from_state` needs besides the arrays)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (saved to the policy's ``.npz`` artifact)."""
        raise NotImplementedError

    @classmethod
    def from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> QualityModel:
        """Rebuild a fitted model from `params` and `arrays`."""
        raise NotImplementedError


def check_training_data(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as float32 (n, d) and ``Y`` as float (n, m) with one row per prompt; a
    `ConfigError` naming the mismatch otherwise."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=float)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) == 0:
        raise ConfigError(
            f"cannot fit a router on embeddings {X.shape} and scores {Y.shape}",
            hint="pass one embedding row and one score row per training prompt",
        )
    return X, Y


def column_means(Y: np.ndarray) -> np.ndarray:
    """Each model's mean label (0 for a model with no label at all): the fallback
    prediction when a prompt has no labelled neighbour."""
    counts = np.sum(~np.isnan(Y), axis=0)
    sums = np.nansum(Y, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def top_k_similar(X: np.ndarray, train: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the ``k`` most cosine-similar training rows of each row of ``X`` (rows are
    unit length, so cosine = dot product); computed in chunks to bound memory."""
    k = min(k, len(train))
    out = np.empty((len(X), k), dtype=np.int64)
    for start in range(0, len(X), chunk):
        sims = X[start : start + chunk] @ train.T
        out[start : start + chunk] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out
