"""Trained routers on prompt embeddings: a logistic-regression classifier and a ridge
regressor (scikit-learn fits them; prediction is plain numpy, so serving needs no
scikit-learn).

- `LogisticQuality` (``router="classifier"``): per model, P(the answer is good), a good
  answer being a score at or above ``good_at`` (default: the midpoint of the training
  scores' range, so "correct" for 0/1 labels, a grade of 5.5+ on a 1-10 judge scale).
  For two-model routing it also fits the pairwise target RouteLLM's classifiers predict,
  P(strong wins) = P(strong scores strictly higher than weak), which is the strong-win
  score.
- `RidgeQuality` (``router="regressor"``): per model, a ridge regression of the score; the
  strong-win score is the predicted strong-minus-weak advantage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.extras import import_semantic
from aigw_lab.policy.learned.base import QualityModel, check_training_data, column_means

__all__ = ["LogisticQuality", "RidgeQuality"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _fit_logistic(X: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """(coef, intercept) of a logistic regression; a constant label gives a constant model."""
    if len(np.unique(y)) < 2:
        p = float(np.clip(y.mean() if len(y) else 0.5, 1e-6, 1 - 1e-6))
        return np.zeros(X.shape[1]), float(np.log(p / (1 - p)))
    linear_model = import_semantic("sklearn.linear_model", "the classifier router")
    model = linear_model.LogisticRegression(C=C, max_iter=1000).fit(X, y)
    return model.coef_[0].astype(float), float(model.intercept_[0])


class LogisticQuality(QualityModel):
    """Per-model P(good answer) and, for a model pair, P(strong wins)."""

    router: ClassVar[str] = "classifier"

    def __init__(self, C: float = 1.0, *, good_at: float | None = None) -> None:
        if not C > 0:
            raise ConfigError(f"classifier C={C!r} is invalid", hint="use C > 0")
        self.C = float(C)
        self.good_at = good_at
        self._coef: np.ndarray | None = None  # (m, d)
        self._intercept: np.ndarray | None = None  # (m,)
        self._pair: tuple[int, int] | None = None
        self._pair_coef: np.ndarray | None = None  # (d,) then the intercept last

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> LogisticQuality:
        X, Y = check_training_data(X, Y)
        if self.good_at is None:
            self.good_at = float((np.nanmin(Y) + np.nanmax(Y)) / 2)
        coefs, intercepts = [], []
        for column in Y.T:
            labelled = ~np.isnan(column)
            coef, intercept = _fit_logistic(
                X[labelled], (column[labelled] >= self.good_at).astype(int), self.C
            )
            coefs.append(coef)
            intercepts.append(intercept)
        self._coef, self._intercept = np.array(coefs), np.array(intercepts)
        if pair is not None:
            strong, weak = pair
            labelled = ~(np.isnan(Y[:, strong]) | np.isnan(Y[:, weak]))
            wins = (Y[labelled, strong] > Y[labelled, weak]).astype(int)
            coef, intercept = _fit_logistic(X[labelled], wins, self.C)
            self._pair, self._pair_coef = (int(strong), int(weak)), np.append(coef, intercept)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self._coef is None or self._intercept is None:
            raise ConfigError("this classifier is not fitted", hint="call fit(X, Y) first")
        return _sigmoid(np.asarray(X, dtype=float) @ self._coef.T + self._intercept)

    def strong_score(self, X: np.ndarray, strong: int, weak: int) -> np.ndarray:
        if self._pair == (strong, weak) and self._pair_coef is not None:
            return _sigmoid(np.asarray(X, dtype=float) @ self._pair_coef[:-1] + self._pair_coef[-1])
        return super().strong_score(X, strong, weak)

    def params(self) -> dict[str, Any]:
        return {"C": self.C, "good_at": self.good_at, "pair": list(self._pair or []) or None}

    def arrays(self) -> dict[str, np.ndarray]:
        if self._coef is None or self._intercept is None:
            raise ConfigError("this classifier is not fitted", hint="call fit(X, Y) first")
        state = {"coef": self._coef, "intercept": self._intercept}
        if self._pair_coef is not None:
            state["pair_coef"] = self._pair_coef
        return state

    @classmethod
    def from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> LogisticQuality:
        model = cls(float(params.get("C", 1.0)), good_at=params.get("good_at"))
        model._coef = np.asarray(arrays["coef"], dtype=float)
        model._intercept = np.asarray(arrays["intercept"], dtype=float)
        pair = params.get("pair")
        if pair and "pair_coef" in arrays:
            model._pair = (int(pair[0]), int(pair[1]))
            model._pair_coef = np.asarray(arrays["pair_coef"], dtype=float)
        return model


class RidgeQuality(QualityModel):
    """Per-model ridge regression of the recorded score on the prompt embedding."""

    router: ClassVar[str] = "regressor"

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha >= 0:
            raise ConfigError(f"regressor alpha={alpha!r} is invalid", hint="use alpha >= 0")
        self.alpha = float(alpha)
        self._coef: np.ndarray | None = None
        self._intercept: np.ndarray | None = None

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> RidgeQuality:
        linear_model = import_semantic("sklearn.linear_model", "the regressor router")

        X, Y = check_training_data(X, Y)
        means = column_means(Y)
        coefs, intercepts = [], []
        for j, column in enumerate(Y.T):
            labelled = ~np.isnan(column)
            if labelled.sum() < 2:
                coefs.append(np.zeros(X.shape[1]))
                intercepts.append(float(means[j]))
                continue
            model = linear_model.Ridge(alpha=self.alpha).fit(X[labelled], column[labelled])
            coefs.append(model.coef_.astype(float))
            intercepts.append(float(model.intercept_))
        self._coef, self._intercept = np.array(coefs), np.array(intercepts)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self._coef is None or self._intercept is None:
            raise ConfigError("this regressor is not fitted", hint="call fit(X, Y) first")
        return np.asarray(X, dtype=float) @ self._coef.T + self._intercept

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def arrays(self) -> dict[str, np.ndarray]:
        if self._coef is None or self._intercept is None:
            raise ConfigError("this regressor is not fitted", hint="call fit(X, Y) first")
        return {"coef": self._coef, "intercept": self._intercept}

    @classmethod
    def from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> RidgeQuality:
        model = cls(float(params.get("alpha", 1.0)))
        model._coef = np.asarray(arrays["coef"], dtype=float)
        model._intercept = np.asarray(arrays["intercept"], dtype=float)
        return model
