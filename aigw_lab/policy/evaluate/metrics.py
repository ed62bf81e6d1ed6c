"""Router metrics from the literature, computed from recorded outcomes.

Two-model routing (RouteLLM, Ong et al. 2024, and its ``routellm/evals`` code):

- PGR, performance gap recovered: ``(q(router) - q(weak)) / (q(strong) - q(weak))``.
- The threshold sweep: the router scores each query (its strong-win score); the thresholds
  are the 11 edges of 10 equal-count quantile bins of those scores; at each threshold the
  queries scoring ``>=`` it go to the strong model (``>`` at the top edge, so the sweep
  reaches 0 % strong calls). Each threshold gives one (strong-call share, quality) point.
- APGR: the area under the quality-vs-strong-share curve (trapezoids), minus the weak
  model's area, over the strong-minus-weak area on the same share range; i.e. the mean
  PGR over the strong-call share. Random routing scores 0.5 in expectation.
- CPT(x): the smallest strong-call share at which the (linearly interpolated) curve
  recovers x of the gap. RouteLLM uses ``np.interp`` on the sweep, which is the same on a
  non-decreasing curve; on a bumpy curve we take the *first* crossing.
- The oracle curve (RouteLLM's ``get_optimal_accuracy``): given a share s of strong calls,
  spend them on the queries where strong beats weak by the most; RouteLLM evaluates it at
  s = 0, 10, ..., 100 %, which is where its oracle APGR (1.29 MMLU, 1.13 GSM8K) comes from.

Many-model routing (RouterBench, Hu et al. 2024, and ``withmartian/routerbench``):

- The non-decreasing convex hull (NDCH) of a router's (cost, quality) points: any two
  operating points can be mixed at random, so the upper convex hull is attainable; a point
  costlier than one of higher quality is never worth it, so the hull stops rising at its
  best point and stays flat after.
- AIQ, average improvement in quality: the area under the NDCH over a cost range
  ``[c_min, c_max]`` divided by its width. Below a router's cheapest point its quality is
  0 (unattainable), as RouterBench's code has it; comparisons use one shared range.
- The zero router is the NDCH of the single models' points (a random mix of models); the
  oracle picks, per query, the cheapest model with the best recorded score.

Bootstrap intervals resample the test *items* and recompute the whole metric (sweep
included) on each resample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ROUTELLM_BINS",
    "ORACLE_SHARES",
    "MetricCI",
    "SweepCurve",
    "pgr",
    "threshold_sweep",
    "sweep_choices",
    "apgr",
    "cpt",
    "oracle_curve",
    "random_scores",
    "nondecreasing_convex_hull",
    "aiq",
    "cost_at_quality",
    "bootstrap_metric",
]

#: RouteLLM's ``--num-results`` default: 10 quantile bins, so 11 thresholds.
ROUTELLM_BINS = 10
#: The strong-call shares RouteLLM evaluates its oracle ("optimal") curve at.
ORACLE_SHARES = tuple(i / 10 for i in range(11))


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricCI:
    """A metric's point estimate and its percentile bootstrap interval."""

    value: float
    low: float
    high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True, slots=True)
class SweepCurve:
    """Operating points of a two-model router: per threshold, the share of queries sent to
    the strong model (0..1) and the mean quality; sorted by share."""

    thresholds: np.ndarray
    strong_share: np.ndarray
    quality: np.ndarray


def pgr(quality: float, weak_quality: float, strong_quality: float) -> float:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong one's."""
    gap = strong_quality - weak_quality
    if gap == 0:
        return float("nan")
    return (quality - weak_quality) / gap


def threshold_sweep(
    scores: np.ndarray,
    strong: np.ndarray,
    weak: np.ndarray,
    *,
    bins: int = ROUTELLM_BINS,
    thresholds: np.ndarray | None = None,
) -> SweepCurve:
    """RouteLLM's sweep: route to strong where ``scores >= t`` (``> t`` at the largest
    threshold) for the ``bins + 1`` quantile edges of ``scores`` (or the given
    ``thresholds``); ``strong``/``weak`` are each query's recorded quality per model."""
    scores = np.asarray(scores, dtype=float)
    strong = np.asarray(strong, dtype=float)
    weak = np.asarray(weak, dtype=float)
    if not (scores.shape == strong.shape == weak.shape) or scores.ndim != 1 or not len(scores):
        raise ValueError("scores, strong and weak must be 1-d arrays of one non-zero length")
    if thresholds is None:
        thresholds = np.quantile(scores, np.linspace(0.0, 1.0, bins + 1))
    thresholds = np.asarray(thresholds, dtype=float)
    chosen = sweep_choices(scores, thresholds)
    share = chosen.mean(axis=1)
    quality = np.where(chosen, strong[None, :], weak[None, :]).mean(axis=1)
    order = np.argsort(share, kind="stable")
    return SweepCurve(thresholds[order], share[order], quality[order])


def sweep_choices(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(thresholds, queries) booleans, True = strong: ``scores >= t``, except ``> t`` for
    the (last) largest threshold, as in RouteLLM's sweep."""
    chosen = scores[None, :] >= thresholds[:, None]
    top = len(thresholds) - 1 - int(np.argmax(thresholds[::-1]))
    chosen[top] = scores > thresholds[top]
    return chosen


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def apgr(curve: SweepCurve, weak_quality: float, strong_quality: float) -> float:
    """Average PGR: (area under the curve - weak area) / (strong area - weak area), the
    areas taken over the curve's strong-share range, as RouteLLM's ``apgr_metric``."""
    x, y = curve.strong_share, curve.quality
    width = float(x[-1] - x[0])
    gap = strong_quality - weak_quality
    if width == 0 or gap == 0:
        return float("nan")
    return float((_trapezoid(y, x) - weak_quality * width) / (gap * width))


def cpt(curve: SweepCurve, weak_quality: float, strong_quality: float, target: float) -> float:
    """Call-performance threshold: the smallest strong-call share (0..1) at which the
    linearly interpolated curve reaches PGR ``target`` (for example 0.5 for CPT(50%));
    NaN when it never does."""
    x = curve.strong_share
    gains = np.array([pgr(q, weak_quality, strong_quality) for q in curve.quality])
    if gains[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if gains[i] >= target:
            rise = gains[i] - gains[i - 1]
            step = (target - gains[i - 1]) / rise if rise > 0 else 1.0
            return float(x[i - 1] + step * (x[i] - x[i - 1]))
    return float("nan")


def oracle_curve(
    strong: np.ndarray, weak: np.ndarray, shares: Sequence[float] = ORACLE_SHARES
) -> SweepCurve:
    """RouteLLM's optimal router: with a budget of ``share * n`` strong calls, call the
    strong model on the queries where it beats the weak one by the most (a fractional
    budget counts its fractional gain, as RouteLLM's ``min(strong_calls, gains)`` does)."""
    strong = np.asarray(strong, dtype=float)
    weak = np.asarray(weak, dtype=float)
    n = len(strong)
    gains = np.sort(np.clip(strong - weak, 0.0, None))[::-1]
    cumulative = np.concatenate([[0.0], np.cumsum(gains)])
    budget = np.asarray(shares, dtype=float) * n
    gained = np.interp(budget, np.arange(n + 1), cumulative)
    quality = (weak.sum() + gained) / n
    return SweepCurve(np.full(len(budget), np.nan), np.asarray(shares, dtype=float), quality)


def random_scores(n: int, *, seed: int = 0) -> np.ndarray:
    """RouteLLM's random router: a uniform strong-win score per query."""
    return np.random.default_rng(seed).uniform(size=n)


def nondecreasing_convex_hull(costs: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """RouterBench's NDCH of (cost, quality) points: the upper convex hull from the cheapest
    point to the best one, as an (m, 2) array sorted by cost (quality non-decreasing)."""
    points = np.column_stack([np.asarray(costs, float), np.asarray(qualities, float)])
    points = points[~np.isnan(points).any(axis=1)]
    if not len(points):
        raise ValueError("no (cost, quality) point without NaN")
    # By cost, and by quality descending within a cost: only the best of equal costs counts.
    points = points[np.lexsort((-points[:, 1], points[:, 0]))]
    best = points[np.argmax(points[:, 1])]
    points = points[points[:, 0] <= best[0]]
    hull: list[np.ndarray] = []
    for point in points:
        if hull and point[0] == hull[-1][0]:
            continue
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    out = np.array(hull)
    keep = np.concatenate([[True], np.diff(out[:, 1]) > 0])  # flat steps add nothing
    return out[keep]


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    # > 0: o -> a -> b turns left, so a lies under the segment o-b (not on the upper hull).
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def aiq(hull: np.ndarray, cost_range: tuple[float, float]) -> float:
    """Average improvement in quality: the area under the hull over ``cost_range``
    divided by its width. The hull is flat after its last point and 0 before its first."""
    low, high = cost_range
    if not high > low:
        raise ValueError(f"cost_range {cost_range} must have high > low")
    x, y = hull[:, 0], hull[:, 1]
    start = max(low, float(x[0]))
    if start >= high:
        return 0.0
    grid = np.unique(np.concatenate([[start, high], x[(x > start) & (x < high)]]))
    # np.interp holds the last quality flat beyond the hull's costliest point.
    return _trapezoid(np.interp(grid, x, y), grid) / (high - low)


def cost_at_quality(hull: np.ndarray, quality: float) -> float:
    """The smallest cost at which the hull reaches ``quality`` (linear between its points);
    NaN when it never does."""
    x, y = hull[:, 0], hull[:, 1]
    if y[0] >= quality:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= quality:
            return float(x[i - 1] + (quality - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1]))
    return float("nan")


def bootstrap_metric(
    metric: Callable[[np.ndarray], float],
    n: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricCI:
    """``metric(indices)`` on all ``n`` items and on ``n_boot`` resamples of them (with
    replacement); the percentile interval at ``confidence`` (NaN replicates dropped)."""
    rng = np.random.default_rng(seed)
    value = metric(np.arange(n))
    replicates = np.array([metric(rng.integers(0, n, size=n)) for _ in range(n_boot)])
    replicates = replicates[~np.isnan(replicates)]
    if not len(replicates):
        return MetricCI(value=value, low=float("nan"), high=float("nan"), confidence=confidence)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return MetricCI(value=float(value), low=float(low), high=float(high), confidence=confidence)
