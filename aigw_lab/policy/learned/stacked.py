"""Routers from cheap features: a similarity-weighted kNN whose k is tuned on the training
rows (`TunedKnnQuality`, ``router="knn_tuned"``), and a stack of cheap base routers under a
ridge meta-learner (`StackedQuality`, ``router="stacked"``, the default router).

Every target (each model's score, and for a strong/weak pair the strong-minus-weak gain,
which is what the strong-win score ranks by) gets four base predictions:

- kNN on the embedding, weights max(cos, 0) ** power, (k, power) chosen by leave-one-out
  error on the training rows;
- ridge regression on the embedding (alpha chosen by inner folds);
- ridge regression on prompt length and numbers (`aigw_lab.policy.learned.cheap`);
- the smoothed mean of the target in the prompt's category (in-fold target encoding).

The meta-learner is a ridge regression over the base predictions *out of sample*: kNN's
leave-one-out predictions and the other three's inner-fold predictions (each training row
predicted by bases fitted without it). The bases are then refitted on all training rows
for prediction. No step sees a row outside ``fit``'s ``X``, so a cross-fitted evaluation's
test fold stays unseen. Prediction is numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.learned.base import QualityModel, check_training_data, column_means
from aigw_lab.policy.learned.cheap import (
    SIDE_WIDTH,
    apply_category_encoding,
    fit_category_encoding,
    fit_ridge,
    has_side_columns,
    knn_from_lists,
    neighbour_lists,
    ridge_path,
    split_inputs,
)

__all__ = ["TunedKnnQuality", "StackedQuality", "KNN_GRID", "BASES"]

#: The (k, power) pairs the kNN base is tuned over (power 0 is the plain mean).
KNN_GRID = tuple((k, p) for k in (10, 20, 40, 80, 160, 320) for p in (0.0, 4.0, 16.0))
_ALPHAS = (1.0, 10.0, 100.0)  # ridge on the embedding
_SIDE_ALPHA = 1.0  # ridge on the standardised length and number columns
_META_ALPHA = 1.0
_SMOOTHING = 20.0  # category encoding: prior weight in rows
_INNER_FOLDS = 5
#: The base routers of the stack, in the order of the meta-learner's coefficients.
BASES = ("knn", "ridge_embedding", "length_numbers", "category")


def _targets(Y: np.ndarray, pair: tuple[int, int] | None) -> np.ndarray:
    """Each model's score, then the strong-minus-weak gain when a pair is given."""
    if pair is None:
        return Y
    strong, weak = pair
    return np.column_stack([Y, Y[:, strong] - Y[:, weak]])


def _fill(pred: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(pred), fallback[None, :], pred)


def _tune_knn(
    emb: np.ndarray, T: np.ndarray, grid: tuple[tuple[int, float], ...]
) -> tuple[list[tuple[int, float]], np.ndarray]:
    """Per target column, the (k, power) with the least leave-one-out squared error on the
    training rows, and those leave-one-out predictions (n, t)."""
    k_max = max(k for k, _ in grid)
    idx, sims = neighbour_lists(emb, emb, k_max, exclude_self=True)
    means = column_means(T)
    best: list[tuple[int, float]] = [grid[0]] * T.shape[1]
    best_err = np.full(T.shape[1], np.inf)
    loo = np.zeros_like(T, dtype=float)
    for k, power in grid:
        pred = _fill(knn_from_lists(idx, sims, T, k, power), means)
        err = np.nanmean((pred - T) ** 2, axis=0)
        better = err < best_err - 1e-12
        for j in np.flatnonzero(better):
            best[j], best_err[j] = (k, power), err[j]
            loo[:, j] = pred[:, j]
    return best, loo


class TunedKnnQuality(QualityModel):
    """Similarity-weighted kNN quality, (k, power) tuned per model by leave-one-out error
    on the training rows only."""

    router: ClassVar[str] = "knn_tuned"

    def __init__(self, grid: tuple[tuple[int, float], ...] | None = None) -> None:
        self.grid = tuple((int(k), float(p)) for k, p in (grid or KNN_GRID))
        if not self.grid or any(k < 1 or p < 0 for k, p in self.grid):
            raise ConfigError(f"knn_tuned grid {grid!r} is invalid", hint="use k >= 1, power >= 0")
        self.chosen: list[tuple[int, float]] = []
        #: Leave-one-out predictions (n, targets) on the training rows at the chosen
        #: (k, power): out-of-sample scores the stacked router's meta-learner fits on.
        self.loo: np.ndarray | None = None
        self._X: np.ndarray | None = None
        self._T: np.ndarray | None = None
        self._pair: tuple[int, int] | None = None

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> TunedKnnQuality:
        X, Y = check_training_data(X, Y)
        emb = _embedding_part(X)
        T = _targets(Y, pair)
        self.chosen, self.loo = _tune_knn(emb, T, self.grid)
        self._X, self._T, self._pair = emb, T, pair
        return self

    def _predict_targets(self, X: np.ndarray) -> np.ndarray:
        train, T = self._fitted()
        emb = _embedding_part(np.asarray(X, dtype=np.float32))
        k_max = max(k for k, _ in self.chosen)
        idx, sims = neighbour_lists(emb, train, k_max)
        out = np.empty((len(emb), T.shape[1]))
        for j, (k, power) in enumerate(self.chosen):
            out[:, j] = knn_from_lists(idx, sims, T[:, j : j + 1], k, power)[:, 0]
        return _fill(out, column_means(T))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_targets(X)[:, : self._columns()]

    def strong_score(self, X: np.ndarray, strong: int, weak: int) -> np.ndarray:
        pred = self._predict_targets(X)
        if self._pair == (strong, weak):
            return pred[:, -1]
        return pred[:, strong] - pred[:, weak]

    def _columns(self) -> int:
        _, T = self._fitted()
        return T.shape[1] - (1 if self._pair is not None else 0)

    def params(self) -> dict[str, Any]:
        return {
            "grid": [list(g) for g in self.grid],
            "chosen": [list(c) for c in self.chosen],
            "pair": list(self._pair) if self._pair else None,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        train, T = self._fitted()
        return {"X": train, "T": T}

    @classmethod
    def from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> TunedKnnQuality:
        model = cls(tuple(tuple(g) for g in params.get("grid") or KNN_GRID))
        model.chosen = [(int(k), float(p)) for k, p in params["chosen"]]
        pair = params.get("pair")
        model._pair = (int(pair[0]), int(pair[1])) if pair else None
        model._X = np.ascontiguousarray(arrays["X"], dtype=np.float32)
        model._T = np.asarray(arrays["T"], dtype=float)
        return model

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._X is None or self._T is None:
            raise ConfigError("this knn_tuned router is not fitted", hint="call fit(X, Y)")
        return self._X, self._T


def _embedding_part(X: np.ndarray) -> np.ndarray:
    """The embedding of plain embeddings or of input rows (side columns dropped)."""
    return X[:, :-SIDE_WIDTH] if has_side_columns(X) else X


class StackedQuality(QualityModel):
    """A ridge meta-learner over four cheap base routers' out-of-sample predictions (see
    the module docstring). Reads input rows (`aigw_lab.policy.learned.router_inputs`)."""

    router: ClassVar[str] = "stacked"
    #: `train_router` builds input rows (embedding + side columns) for this router.
    side_features: ClassVar[bool] = True

    def __init__(self, seed: int = 0, *, grid: tuple[tuple[int, float], ...] | None = None):
        self.seed = int(seed)
        self.knn = TunedKnnQuality(grid)
        self.alphas: list[float] = []
        self._state: dict[str, np.ndarray] = {}
        self._pair: tuple[int, int] | None = None
        self.oof: np.ndarray | None = None

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> StackedQuality:
        X, Y = check_training_data(X, Y)
        emb, side = split_inputs(X, router=self.router)
        T = _targets(Y, pair)
        means = column_means(T)
        self.knn.fit(emb, Y, pair=pair)
        knn_oof = self.knn.loo
        folds = np.random.default_rng(self.seed).permutation(len(X)) % _INNER_FOLDS
        self.alphas = self._tune_alphas(emb, T, folds)
        oof = np.zeros((len(X), len(BASES), T.shape[1]))
        oof[:, 0] = knn_oof
        for f in range(_INNER_FOLDS):
            held = folds == f
            bases = self._fit_bases(emb[~held], side[~held], T[~held])
            oof[held, 1:] = self._base_predictions(bases, emb[held], side[held])
        oof = np.where(np.isnan(oof), means[None, None, :], oof)
        #: What the meta-learner was fitted on: each training row's base predictions from
        #: bases that did not see it (n, len(BASES), targets); kept for inspection only.
        self.oof = oof
        meta_coef = np.zeros((T.shape[1], len(BASES)))
        meta_icpt = np.zeros(T.shape[1])
        for j in range(T.shape[1]):
            meta_coef[j], meta_icpt[j] = fit_ridge(oof[:, :, j], T[:, j], _META_ALPHA)
        self._state = {
            **self._fit_bases(emb, side, T),
            "meta_coef": meta_coef,
            "meta_intercept": meta_icpt,
            "means": means,
        }
        self._pair = pair
        return self

    def _tune_alphas(self, emb: np.ndarray, T: np.ndarray, folds: np.ndarray) -> list[float]:
        """Per target, the ridge alpha with the least inner-fold squared error."""
        errors = np.zeros((len(_ALPHAS), T.shape[1]))
        for f in range(_INNER_FOLDS):
            held = folds == f
            for a, (coef, icpt) in enumerate(ridge_path(emb[~held], T[~held], _ALPHAS)):
                pred = emb[held].astype(float) @ coef.T + icpt
                errors[a] += np.nansum((pred - T[held]) ** 2, axis=0)
        return [_ALPHAS[int(i)] for i in np.argmin(errors, axis=0)]

    def _fit_bases(self, emb: np.ndarray, side: np.ndarray, T: np.ndarray) -> dict[str, Any]:
        numeric, codes = side[:, :-1].astype(float), side[:, -1].astype(float)
        center, scale = numeric.mean(axis=0), numeric.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = (numeric - center) / scale
        path = dict(zip(_ALPHAS, ridge_path(emb, T, _ALPHAS), strict=True))
        ridge = [(path[a][0][j], path[a][1][j]) for j, a in enumerate(self.alphas)]
        side_ridge = [fit_ridge(z, T[:, j], _SIDE_ALPHA) for j in range(T.shape[1])]
        keys = np.unique(codes[codes >= 0])
        encodings = [
            fit_category_encoding(codes, T[:, j], smoothing=_SMOOTHING, keys=keys)
            for j in range(T.shape[1])
        ]
        return {
            "ridge_coef": np.array([c for c, _ in ridge]),
            "ridge_intercept": np.array([i for _, i in ridge]),
            "side_center": center,
            "side_scale": scale,
            "side_coef": np.array([c for c, _ in side_ridge]),
            "side_intercept": np.array([i for _, i in side_ridge]),
            "category_keys": keys,
            "category_values": np.array([v for _, v, _ in encodings]).reshape(len(encodings), -1),
            "category_means": np.array([m for _, _, m in encodings]),
        }

    @staticmethod
    def _base_predictions(
        state: Mapping[str, Any], emb: np.ndarray, side: np.ndarray
    ) -> np.ndarray:
        """(n, 3, t): ridge on the embedding, ridge on length/numbers, category encoding."""
        numeric, codes = side[:, :-1].astype(float), side[:, -1].astype(float)
        z = (numeric - state["side_center"]) / state["side_scale"]
        ridge = emb.astype(float) @ state["ridge_coef"].T + state["ridge_intercept"]
        side_pred = z @ state["side_coef"].T + state["side_intercept"]
        keys = state["category_keys"]
        category = np.column_stack(
            [
                apply_category_encoding(codes, keys, values, float(mean))
                for values, mean in zip(
                    state["category_values"], state["category_means"], strict=True
                )
            ]
        )
        return np.stack([ridge, side_pred, category], axis=1)

    def base_scores(self, X: np.ndarray) -> np.ndarray:
        """(n, len(BASES), t) base predictions of each target for input rows ``X``."""
        if not self._state:
            raise ConfigError("this stacked router is not fitted", hint="call fit(X, Y) first")
        emb, side = split_inputs(X, router=self.router)
        knn = self.knn._predict_targets(emb)
        rest = self._base_predictions(self._state, emb, side)
        out = np.concatenate([knn[:, None, :], rest], axis=1)
        means = self._state["means"]
        return np.where(np.isnan(out), means[None, None, :], out)

    def _predict_targets(self, X: np.ndarray) -> np.ndarray:
        Z = self.base_scores(X)
        coef, icpt = self._state["meta_coef"], self._state["meta_intercept"]
        return np.einsum("nbt,tb->nt", Z, coef) + icpt[None, :]

    def predict(self, X: np.ndarray) -> np.ndarray:
        pred = self._predict_targets(X)
        return pred[:, : pred.shape[1] - (1 if self._pair is not None else 0)]

    def strong_score(self, X: np.ndarray, strong: int, weak: int) -> np.ndarray:
        pred = self._predict_targets(X)
        if self._pair == (strong, weak):
            return pred[:, -1]
        return pred[:, strong] - pred[:, weak]

    def params(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "alphas": list(self.alphas),
            "knn": self.knn.params(),
            "pair": list(self._pair) if self._pair else None,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        if not self._state:
            raise ConfigError("this stacked router is not fitted", hint="call fit(X, Y) first")
        knn = {f"knn_{key}": value for key, value in self.knn.arrays().items()}
        return {**knn, **{key: np.asarray(value) for key, value in self._state.items()}}

    @classmethod
    def from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> StackedQuality:
        model = cls(int(params.get("seed", 0)))
        model.knn = TunedKnnQuality.from_state(
            params["knn"], {"X": arrays["knn_X"], "T": arrays["knn_T"]}
        )
        model.alphas = [float(a) for a in params.get("alphas") or []]
        pair = params.get("pair")
        model._pair = (int(pair[0]), int(pair[1])) if pair else None
        model._state = {
            key: np.asarray(value) for key, value in arrays.items() if not key.startswith("knn_")
        }
        return model
