"""Trivial routers that need no embeddings, the baselines a learned router must beat.

Each is a `Scorer`: given the indices of the training items, their recorded strong-minus-weak
gain, and the indices of the test items, it returns a strong-win score per test item. It is
fitted on the training items' gains alone (cross-fitting hands it nothing else), so it can
never see a test item's label:

- `length_scorer`: prompt length. The training items' lengths are cut into deciles (edges
  from the training items only); a test prompt scores the mean training gain of its decile,
  ties inside a decile broken by length in the direction that correlates with the gain in
  the training items. On GSM8K longer questions are harder, so length alone routes better
  than random.
- `category_scorer`: category or subject lookup (MMLU's 57 subjects, MT-Bench's 8
  categories). A test prompt scores the mean training gain of its category, shrunk toward
  the overall training mean by `CATEGORY_PRIOR` pseudo-items; a category no training item
  has gets the overall mean.

Both constants were fixed before any run and are not tuned on the results they report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aigw_lab.policy.evaluate.comparison_table import RowKind

__all__ = [
    "Scorer",
    "LENGTH_BINS",
    "CATEGORY_PRIOR",
    "length_scorer",
    "category_scorer",
    "usable_categories",
]

#: Length deciles of the training prompts.
LENGTH_BINS = 10
#: Pseudo-items of the overall mean gain added to each category's mean (light smoothing:
#: negligible for MMLU's 60-1,500 items per subject, a pull toward the mean for MT-Bench's 9).
CATEGORY_PRIOR = 5.0

#: ``fit_score(train, train_gain, test)`` -> one strong-win score per test item; ``train`` and
#: ``test`` are item indices, ``train_gain`` the training items' strong-minus-weak gain.
FitScore = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Scorer:
    """A router as cross-fitting sees it: a name, what it is (a row kind of the table) and
    how it is fitted on training items and scores test items."""

    name: str
    kind: RowKind
    fit_score: FitScore


def length_scorer(lengths: Sequence[float] | np.ndarray, *, bins: int = LENGTH_BINS) -> Scorer:
    """The prompt-length baseline over ``lengths`` (one per item, e.g. characters)."""
    values = np.log1p(np.asarray(lengths, dtype=float))

    def fit_score(train: np.ndarray, train_gain: np.ndarray, test: np.ndarray) -> np.ndarray:
        x = values[train]
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1))[1:-1])
        overall = float(np.mean(train_gain))
        means = np.array(
            [
                _shrunk_mean(train_gain[np.searchsorted(edges, x, side="right") == b], overall, 0)
                for b in range(len(edges) + 1)
            ]
        )
        direction = _direction(x, train_gain)
        spread = float(np.ptp(values)) or 1.0
        # The tie-break term stays below the smallest step between distinct decile means.
        steps = np.diff(np.unique(means))
        scale = (float(steps.min()) if len(steps) else 1.0) * 0.5 / spread
        x_test = values[test]
        return means[np.searchsorted(edges, x_test, side="right")] + direction * scale * x_test

    return Scorer("prompt length", "trivial", fit_score)


def category_scorer(
    categories: Sequence[str | None], *, prior: float = CATEGORY_PRIOR, name: str = "category"
) -> Scorer:
    """The category-lookup baseline over each item's category (None: no category)."""
    labels = np.array(["" if c is None else str(c) for c in categories], dtype=object)

    def fit_score(train: np.ndarray, train_gain: np.ndarray, test: np.ndarray) -> np.ndarray:
        overall = float(np.mean(train_gain))
        seen: dict[str, float] = {}
        train_labels = labels[train]
        for label in set(train_labels.tolist()):
            seen[label] = _shrunk_mean(train_gain[train_labels == label], overall, prior)
        return np.array([seen.get(label, overall) for label in labels[test]], dtype=float)

    return Scorer(f"{name} lookup", "trivial", fit_score)


def usable_categories(categories: Sequence[str | None]) -> bool:
    """True when categories can route: at least two of them, and fewer than half as many as
    items (an id-like field is not a category)."""
    distinct = {c for c in categories if c}
    return 2 <= len(distinct) < max(2, len(categories) / 2)


def _shrunk_mean(gains: np.ndarray, overall: float, prior: float) -> float:
    if not len(gains) and not prior:
        return overall
    return float((np.sum(gains) + prior * overall) / (len(gains) + prior))


def _direction(x: np.ndarray, gain: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(gain) == 0:
        return 0.0
    return float(np.sign(np.corrcoef(x, gain)[0, 1]))
