"""Cheap prompt features for routers, and the fitting helpers the stacked router is built of.

A router that looks at more than the embedding (`aigw_lab.policy.learned.stacked`) reads
its *input rows*: the prompt embedding followed by `SIDE_WIDTH` side columns computed from
the text and the request's category (`router_inputs`):

- a marker column (`MARKER`, a value no unit-length embedding component reaches), so a
  model can tell input rows from plain embeddings and refuse the latter;
- log(1 + characters), log(1 + numbers in the prompt), whether it has any number,
  log(1 + number words such as "twice" or "dozen");
- the category (a 24-bit hash, exact in float32; -1 when unknown). Served requests carry it
  in ``tags["category"]`` (`aigw_lab.policy.rules.request_category`); recorded datasets in
  each item's ``category`` (MMLU's 57 subjects).

Everything here is fitted on training rows only, by the caller's choice of rows: the
target encoder (`fit_category_encoding`), the ridge regression (`fit_ridge`) and the kNN
neighbour lists (`neighbour_lists`), so a cross-fitted evaluation never sees its test fold.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from aigw_lab.errors import ConfigError

__all__ = [
    "MARKER",
    "SIDE_FEATURES",
    "SIDE_WIDTH",
    "category_code",
    "side_features",
    "router_inputs",
    "split_inputs",
    "fit_category_encoding",
    "apply_category_encoding",
    "fit_ridge",
    "ridge_path",
    "neighbour_lists",
    "knn_from_lists",
]

#: The side columns after the embedding, in order.
SIDE_FEATURES = (
    "marker",
    "log_chars",
    "log_numbers",
    "has_number",
    "log_number_words",
    "category",
)
SIDE_WIDTH = len(SIDE_FEATURES)
#: The marker column's value: a unit-length embedding has no component above 1.
MARKER = 8.0
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = re.compile(
    r"\b(?:half|twice|double|triple|dozens?|hundreds?|thousands?|millions?|percent|"
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|fifty|"
    r"third|quarter|fourth|fifth)\b",
    re.IGNORECASE,
)
_CATEGORY_BITS = 24  # float32 holds integers exactly up to 2**24


def category_code(category: str | None) -> float:
    """A category's code in the side columns: a 24-bit hash, or -1 for no category."""
    if category is None or category == "":
        return -1.0
    digest = hashlib.blake2b(str(category).encode("utf-8", "surrogatepass"), digest_size=4)
    return float(int.from_bytes(digest.digest(), "big") >> (32 - _CATEGORY_BITS))


def side_features(
    prompts: Sequence[str], categories: Sequence[str | None] | None = None
) -> np.ndarray:
    """(n, `SIDE_WIDTH`) side columns of ``prompts`` (see the module docstring)."""
    if categories is not None and len(categories) != len(prompts):
        raise ConfigError(
            f"{len(categories)} categories for {len(prompts)} prompts",
            hint="pass one category (or None) per prompt",
        )
    cats = categories if categories is not None else [None] * len(prompts)
    out = np.empty((len(prompts), SIDE_WIDTH), dtype=np.float32)
    for row, (text, category) in enumerate(zip(prompts, cats, strict=True)):
        numbers = len(_NUMBER.findall(text))
        out[row] = (
            MARKER,
            np.log1p(len(text)),
            np.log1p(numbers),
            float(numbers > 0),
            np.log1p(len(_NUMBER_WORDS.findall(text))),
            category_code(category),
        )
    return out


def router_inputs(
    embeddings: np.ndarray,
    prompts: Sequence[str],
    categories: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Input rows of a side-feature router: ``embeddings`` (one unit row per prompt)
    followed by the `side_features` of ``prompts``. Rows that already end in the side
    columns are returned as they are."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if has_side_columns(embeddings):
        return embeddings
    if len(embeddings) != len(prompts):
        raise ConfigError(
            f"{len(embeddings)} embeddings for {len(prompts)} prompts",
            hint="embed the prompts in order, one row each",
        )
    return np.hstack([embeddings, side_features(prompts, categories)])


def has_side_columns(X: np.ndarray) -> bool:
    """True when every row of ``X`` ends in the side columns (their marker is set)."""
    return (
        X.ndim == 2
        and X.shape[1] > SIDE_WIDTH
        and len(X) > 0
        and bool(np.all(X[:, -SIDE_WIDTH] == MARKER))
    )


def split_inputs(X: np.ndarray, *, router: str) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, side columns without the marker) of input rows; a `ConfigError` for
    plain embeddings, which lack what the ``router`` reads."""
    X = np.asarray(X, dtype=np.float32)
    if not has_side_columns(X):
        raise ConfigError(
            f"the {router} router reads prompt length, numbers and category besides the "
            "embedding, and got plain embeddings",
            hint="pass aigw_lab.policy.learned.router_inputs(embeddings, prompts, categories)"
            " or LearnedRouter.embed(prompts, categories=...)",
        )
    return X[:, :-SIDE_WIDTH], X[:, -SIDE_WIDTH + 1 :]


def fit_category_encoding(
    codes: np.ndarray,
    target: np.ndarray,
    *,
    smoothing: float = 20.0,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """A smoothed target encoding of categories, from training rows only: per category
    code, (sum + smoothing x mean) / (count + smoothing), shrunk towards the overall mean
    for small categories. Returns (keys, encodings, overall mean): ``keys`` are the given
    codes (default: the known codes among ``codes``), a key without a labelled row encoded
    as the mean; unknown codes (-1) get no encoding of their own."""
    codes = np.asarray(codes, dtype=float)
    if keys is None:
        keys = np.unique(codes[codes >= 0])
    labelled = ~np.isnan(target)
    codes, target = codes[labelled], target[labelled]
    mean = float(target.mean()) if len(target) else 0.0
    at = np.searchsorted(keys, codes)
    found = (at < len(keys)) & (keys[np.clip(at, 0, max(len(keys) - 1, 0))] == codes)
    found &= codes >= 0
    sums = np.bincount(at[found], weights=target[found], minlength=len(keys))
    counts = np.bincount(at[found], minlength=len(keys))
    return keys, (sums + smoothing * mean) / (counts + smoothing), mean


def apply_category_encoding(
    codes: np.ndarray, keys: np.ndarray, values: np.ndarray, mean: float
) -> np.ndarray:
    """Each code's encoding; the overall mean for a category not seen in training."""
    out = np.full(len(codes), mean, dtype=float)
    if len(keys):
        at = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
        found = keys[at] == codes
        out[found] = values[at[found]]
    return out


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """(coef, intercept) of a ridge regression of ``y`` on ``X`` (rows with NaN ``y``
    skipped), solved in closed form: no scikit-learn at fit or serve time."""
    labelled = ~np.isnan(y)
    X, y = np.asarray(X[labelled], dtype=float), y[labelled]
    if len(y) == 0:
        return np.zeros(X.shape[1]), 0.0
    mu_x, mu_y = X.mean(axis=0), float(y.mean())
    Xc = X - mu_x
    gram = Xc.T @ Xc + alpha * np.eye(X.shape[1])
    coef = np.linalg.solve(gram, Xc.T @ (y - mu_y))
    return coef, mu_y - float(mu_x @ coef)


def ridge_path(
    X: np.ndarray, Y: np.ndarray, alphas: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ridge regressions of every column of ``Y`` (n, t) on ``X`` for each of ``alphas``:
    per alpha, (coef (t, d), intercept (t,)). One eigendecomposition of the centred Gram
    matrix serves every alpha and column (the stacked router's tuning would otherwise
    recompute it per column and alpha); a column with missing labels is fitted alone
    (`fit_ridge`)."""
    X = np.asarray(X, dtype=float)
    complete = ~np.isnan(Y).any(axis=0)
    mu_x = X.mean(axis=0)
    Xc = X - mu_x
    eigvals, eigvecs = np.linalg.eigh(Xc.T @ Xc)
    Yc = Y[:, complete] - Y[:, complete].mean(axis=0)
    projected = eigvecs.T @ (Xc.T @ Yc)  # (d, complete columns)
    out = []
    for alpha in alphas:
        coef = np.zeros((Y.shape[1], X.shape[1]))
        coef[complete] = (eigvecs @ (projected / (eigvals + alpha)[:, None])).T
        intercept = Y.mean(axis=0) - coef @ mu_x
        for j in np.flatnonzero(~complete):
            coef[j], intercept[j] = fit_ridge(X, Y[:, j], alpha)
        out.append((coef, intercept))
    return out


def neighbour_lists(
    X: np.ndarray, train: np.ndarray, k: int, *, exclude_self: bool = False, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of each row's ``k`` most cosine-similar training rows,
    most similar first. ``exclude_self``: ``X`` is ``train`` and a row may not be its own
    neighbour (leave-one-out scores on the training set, for tuning and stacking)."""
    k = min(k, len(train) - (1 if exclude_self else 0))
    idx = np.empty((len(X), k), dtype=np.int64)
    sims = np.empty((len(X), k), dtype=np.float32)
    for start in range(0, len(X), chunk):
        block = X[start : start + chunk] @ train.T
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, start + rows] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        idx[start : start + chunk] = np.take_along_axis(top, order, axis=1)
        sims[start : start + chunk] = np.take_along_axis(top_sims, order, axis=1)
    return idx, sims


def knn_from_lists(
    idx: np.ndarray, sims: np.ndarray, labels: np.ndarray, k: int, power: float
) -> np.ndarray:
    """Similarity-weighted mean label (n, m) of the first ``k`` neighbours: weights
    max(similarity, 0) ** ``power`` (power 0 = the plain mean); a label missing for a
    neighbour is skipped; NaN where no neighbour is labelled."""
    idx, sims = idx[:, :k], sims[:, :k]
    weights = np.clip(sims, 1e-6, None).astype(float) ** power
    neighbours = labels[idx]  # (n, k, m)
    present = ~np.isnan(neighbours)
    w = weights[:, :, None] * present
    totals = w.sum(axis=1)
    sums = np.sum(np.where(present, neighbours, 0.0) * weights[:, :, None], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, sums / totals, np.nan)
