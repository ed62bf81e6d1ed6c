"""Calibrate a learned router's decision: the threshold (two models) or lambda (many
models) that meets a target share of strong-model calls, a cost budget per query, or a
quality floor, with the uncertainty of what that choice achieves.

The choice is made on a *calibration* split and checked on *held-out* items: both are
bootstrapped together (resample the calibration items, re-choose; resample the held-out
items, measure), so the intervals of the achieved share, cost and quality include both the
noise of choosing and the noise of measuring. RouteLLM calibrates thresholds the same way
in spirit (a threshold from the score quantile matching a target strong share, on a
reference set of queries); this adds the budget and quality targets and the intervals.

    result = calibrate(router, cal, strong_share=0.5, held_out=test)
    router = router.with_decision(result.decision)
    result.achieved["strong_share"]     # MetricCI on the held-out items
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.metrics import MetricCI
from aigw_lab.policy.evaluate.offline import assert_disjoint, lambda_grid, recorded_arrays
from aigw_lab.policy.learned.router import Decision, choose_by_lambda

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset
    from aigw_lab.policy.learned.router import LearnedRouter

__all__ = ["Calibration", "calibrate", "choose_parameter"]

_CANDIDATES = 401  # thresholds (score quantiles) or lambdas tried


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """The calibrated ``decision``, the interval of its value over calibration resamples,
    the target it meets, and what it achieves (``strong_share`` when the router has a
    strong model, ``cost`` in USD per query, ``quality``) on the ``measured_on`` items
    ("held-out", or "calibration" when no held-out set was given: then optimistic)."""

    decision: Decision
    value_interval: tuple[float, float]
    target: str
    achieved: dict[str, MetricCI]
    measured_on: str
    n_calibration: int
    n_measured: int


def choose_parameter(
    share: np.ndarray,
    cost: np.ndarray,
    quality: np.ndarray,
    *,
    strong_share: float | None = None,
    budget: float | None = None,
    quality_floor: float | None = None,
) -> int | None:
    """Index of the candidate meeting the target, from each candidate's mean strong share,
    cost and quality: the most strong calls not above ``strong_share``; the best quality
    within ``budget``; the cheapest with quality at least ``quality_floor``. None when no
    candidate meets it."""
    if strong_share is not None:
        ok = share <= strong_share + 1e-12
        return int(np.argmax(np.where(ok, share, -np.inf))) if ok.any() else None
    if budget is not None:
        ok = cost <= budget
        return int(np.argmax(np.where(ok, quality, -np.inf))) if ok.any() else None
    ok = quality >= float(quality_floor) - 1e-12
    return int(np.argmin(np.where(ok, cost, np.inf))) if ok.any() else None


def calibrate(
    router: LearnedRouter,
    calibration: RecordedDataset,
    *,
    strong_share: float | None = None,
    budget: float | None = None,
    quality_floor: float | None = None,
    held_out: RecordedDataset | None = None,
    calibration_embeddings: np.ndarray | None = None,
    held_out_embeddings: np.ndarray | None = None,
    n_boot: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> Calibration:
    """Pick ``router``'s threshold (threshold routers) or lambda (lambda routers) for exactly
    one target: ``strong_share`` (0..1), ``budget`` (USD per query) or ``quality_floor``
    (on the dataset's score scale). Neither set may hold the router's training items."""
    given = [t for t in (strong_share, budget, quality_floor) if t is not None]
    if len(given) != 1:
        raise ConfigError(
            "calibrate needs exactly one target",
            hint="pass one of strong_share=, budget= or quality_floor=",
        )
    if strong_share is not None and not 0.0 <= strong_share <= 1.0:
        raise ConfigError(f"strong_share={strong_share} is not in [0, 1]", hint="use e.g. 0.5")
    if strong_share is not None and router.strong is None:
        raise ConfigError(
            f"policy {router.name!r} has no strong model, so no strong share",
            hint="use budget= or quality_floor=",
        )
    sets = [(calibration, calibration_embeddings)]
    if held_out is not None:
        sets.append((held_out, held_out_embeddings))
    models = list(router.train_info.get("models") or [])
    stats = []
    for data, X in sets:
        if router.train_ids is not None:
            assert_disjoint(router.train_ids, data.ids)
        X = X if X is not None else router.embed([i.prompt for i in data.items])
        quality, cost = recorded_arrays(data, models)
        stats.append(_candidate_stats(router, data, X, quality, cost))
    values = _candidate_values(router, stats[0])
    per_set = [_per_item(router, s, values) for s in stats]
    target = dict(strong_share=strong_share, budget=budget, quality_floor=quality_floor)

    def pick(share: np.ndarray, cost: np.ndarray, quality: np.ndarray) -> int:
        index = choose_parameter(share, cost, quality, **target)
        if index is None:
            raise ConfigError(
                f"no {router.decision.mode} meets {_describe(target)} on the calibration items "
                f"(cost {cost.min():.3g}..{cost.max():.3g} USD/query, quality "
                f"{quality.min():.3g}..{quality.max():.3g})",
                hint="relax the target to a value inside those ranges",
            )
        return index

    cal, measured = per_set[0], per_set[-1]
    best = pick(*(m.mean(axis=1) for m in cal))
    rng = np.random.default_rng(seed)
    picks, achieved = [], []
    for _ in range(n_boot):
        cal_idx = rng.integers(0, cal[0].shape[1], cal[0].shape[1])
        try:
            chosen = pick(*(m[:, cal_idx].mean(axis=1) for m in cal))
        except ConfigError:
            continue  # this resample cannot meet the target: it adds no replicate
        held_idx = rng.integers(0, measured[0].shape[1], measured[0].shape[1])
        picks.append(values[chosen])
        achieved.append([m[chosen, held_idx].mean() for m in measured])
    tail = (1 - confidence) / 2 * 100
    replicates = np.array(achieved) if achieved else np.full((1, 3), np.nan)
    lows, highs = np.percentile(replicates, [tail, 100 - tail], axis=0)
    names = ("strong_share", "cost", "quality")
    result = {
        name: MetricCI(
            value=float(measured[k][best].mean()),
            low=float(lows[k]),
            high=float(highs[k]),
            confidence=confidence,
        )
        for k, name in enumerate(names)
        if name != "strong_share" or router.strong is not None
    }
    v_low, v_high = np.percentile(picks, [tail, 100 - tail]) if picks else (np.nan, np.nan)
    return Calibration(
        decision=Decision(router.decision.mode, float(values[best])),
        value_interval=(float(v_low), float(v_high)),
        target=_describe(target),
        achieved=result,
        measured_on="held-out" if held_out is not None else "calibration",
        n_calibration=len(calibration),
        n_measured=len(sets[-1][0]),
    )


def _describe(target: dict[str, float | None]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in target.items() if v is not None)


def _candidate_stats(router, data, X, quality, cost):  # noqa: ANN001, ANN202 - private
    prompts = [i.prompt for i in data.items]
    if router.decision.mode == "threshold":
        return ("threshold", router.strong_scores_from(X), quality, cost)
    return ("lambda", (router.model.predict(X), router.expected_costs(prompts)), quality, cost)


def _candidate_values(router: LearnedRouter, stats: tuple) -> np.ndarray:
    mode, signal, _, _ = stats
    if mode == "threshold":
        quantiles = np.quantile(signal, np.linspace(0.0, 1.0, _CANDIDATES))
        return np.unique(np.concatenate([quantiles, [np.max(signal) + 1e-9]]))
    predicted, expected = signal
    return lambda_grid(predicted, expected, size=_CANDIDATES)


def _per_item(
    router: LearnedRouter, stats: tuple, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(strong, cost, quality) per candidate and item, each (candidates, items)."""
    mode, signal, quality, cost = stats
    index = router.targets().index
    if mode == "threshold":
        js = index(str(router.strong))
        jw = index(str(router.weak))
        strong = signal[None, :] >= values[:, None]
        choice = np.where(strong, js, jw)
    else:
        predicted, expected = signal
        choice = np.stack([choose_by_lambda(predicted, expected, lam) for lam in values])
        js = index(router.strong) if router.strong is not None else -1
        strong = choice == js
    rows = np.arange(quality.shape[0])[None, :]
    return strong.astype(float), cost[rows, choice], quality[rows, choice]
