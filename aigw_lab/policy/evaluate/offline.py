"""Offline, counterfactual evaluation of routers from recorded outcomes.

Every model's answer to every test item was recorded, so any routing decision can be scored
after the fact: the routed quality is the chosen model's recorded score and the cost its
recorded (estimated) cost. Routers are only ever scored on items they were not trained on:

- `evaluate_router` takes a trained `LearnedRouter` and a test set and refuses (a
  `ConfigError`) when a test item is among the router's training items;
- `out_of_fold` scores *every* item of a dataset by k-fold cross-fitting: each item is
  scored by a router trained on the other folds only (asserted per fold). This is how we
  evaluate on all of MMLU/GSM8K, as RouteLLM does, without training on the test items
  (RouteLLM trained on Chatbot Arena data instead).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.baselines import (
    CostQualityPoint,
    oracle_point,
    single_model_points,
    zero_router_hull,
)
from aigw_lab.policy.evaluate.metrics import (
    ROUTELLM_BINS,
    MetricCI,
    SweepCurve,
    aiq,
    apgr,
    bootstrap_metric,
    cpt,
    nondecreasing_convex_hull,
    sweep_choices,
    threshold_sweep,
)
from aigw_lab.policy.learned.router import choose_by_lambda, train_router

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset
    from aigw_lab.policy.learned.router import LearnedRouter

__all__ = [
    "TwoModelResult",
    "CostQualityResult",
    "OutOfFold",
    "kfold_assignment",
    "out_of_fold",
    "evaluate_two_model",
    "evaluate_cost_quality",
    "evaluate_router",
    "lambda_grid",
    "assert_disjoint",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TwoModelResult:
    """RouteLLM's metrics for one router on one test set (shares are fractions 0..1)."""

    n: int
    strong_quality: float
    weak_quality: float
    apgr: MetricCI
    cpt50: MetricCI
    cpt80: MetricCI
    curve: SweepCurve
    aiq: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CostQualityResult:
    """RouterBench's view of a router: its operating points over a lambda sweep, their
    NDCH, the AIQ (with CI) over ``cost_range``, beside the zero router and the oracle."""

    n: int
    points: list[CostQualityPoint]
    hull: np.ndarray
    aiq: MetricCI
    zero_router_aiq: MetricCI
    cost_range: tuple[float, float]
    singles: list[CostQualityPoint] = field(default_factory=list)
    oracle: CostQualityPoint | None = None


def assert_disjoint(train_ids: Sequence[str], test_ids: Sequence[str]) -> None:
    """A `ConfigError` when any test item was a training item."""
    overlap = set(train_ids) & set(test_ids)
    if overlap:
        raise ConfigError(
            f"{len(overlap)} test item(s) were used to train the router "
            f"(for example {sorted(overlap)[0]!r})",
            hint="evaluate on held-out items only: use the split the router was trained with",
        )


def kfold_assignment(ids: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) of each item: ranked by a hash of (seed, id), dealt round
    robin, so folds are balanced and independent of the dataset's order."""
    if folds < 2:
        raise ConfigError(f"folds={folds} is too few", hint="use 2 or more folds")
    ranks = np.argsort(
        [hashlib.blake2b(f"{seed}\x1f{i}".encode(), digest_size=8).digest() for i in ids],
        kind="stable",
    )
    assignment = np.empty(len(ids), dtype=int)
    assignment[ranks] = np.arange(len(ids)) % folds
    return assignment


@dataclass(frozen=True, slots=True)
class OutOfFold:
    """Out-of-fold predictions for every item: ``quality`` (n, m) predicted per model,
    ``strong_score`` (n,) when a strong/weak pair was given, ``expected_cost`` (n, m) the
    routers' cost estimates (USD per query), ``fold`` (n,)."""

    ids: tuple[str, ...]
    models: tuple[str, ...]
    quality: np.ndarray
    strong_score: np.ndarray | None
    expected_cost: np.ndarray
    fold: np.ndarray


def out_of_fold(
    data: RecordedDataset,
    router: str,
    embeddings: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    models: Sequence[str] | None = None,
    strong: str | None = None,
    weak: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> OutOfFold:
    """Cross-fitted predictions of ``router`` for every item of ``data`` (``embeddings``:
    one row per item, in ``data.ids`` order)."""
    ids = data.ids
    if len(embeddings) != len(ids):
        raise ConfigError(
            f"{len(embeddings)} embeddings for {len(ids)} items",
            hint="embed data.items in order",
        )
    assignment = kfold_assignment(ids, folds, seed)
    quality: np.ndarray | None = None
    expected: np.ndarray | None = None
    prompts = [item.prompt for item in data.items]
    scores = np.full(len(ids), np.nan) if strong and weak else None
    chosen: tuple[str, ...] = ()
    for k in range(folds):
        held = assignment == k
        train_ids = [i for i, h in zip(ids, held, strict=True) if not h]
        test_ids = [i for i, h in zip(ids, held, strict=True) if h]
        assert_disjoint(train_ids, test_ids)
        fitted = train_router(
            data.subset(train_ids),
            router,
            models=models,
            strong=strong,
            weak=weak,
            embeddings=embeddings[~held],
            params=params,
        )
        chosen = tuple(fitted.train_info["models"])
        X = embeddings[held]
        predicted = fitted.model.predict(X)
        if quality is None or expected is None:
            quality = np.full((len(ids), predicted.shape[1]), np.nan)
            expected = np.full_like(quality, np.nan)
        quality[held] = predicted
        expected[held] = fitted.expected_costs([p for p, h in zip(prompts, held, strict=True) if h])
        if scores is not None:
            scores[held] = fitted.strong_scores_from(X)
    assert quality is not None and expected is not None
    return OutOfFold(ids, chosen, quality, scores, expected, assignment)


def evaluate_two_model(
    scores: np.ndarray,
    strong: np.ndarray,
    weak: np.ndarray,
    *,
    strong_cost: np.ndarray | None = None,
    weak_cost: np.ndarray | None = None,
    bins: int = ROUTELLM_BINS,
    n_boot: int = 1000,
    seed: int = 0,
) -> TwoModelResult:
    """APGR, CPT(50%), CPT(80%) (RouteLLM's sweep) with bootstrap CIs over the items; with
    costs, also the AIQ of the sweep's (cost, quality) points over [weak, strong] cost."""
    scores, strong, weak = (np.asarray(a, dtype=float) for a in (scores, strong, weak))

    def metric(kind: str):  # noqa: ANN202 - a closure per metric
        def compute(idx: np.ndarray) -> float:
            s, w = strong[idx], weak[idx]
            curve = threshold_sweep(scores[idx], s, w, bins=bins)
            if kind == "apgr":
                return apgr(curve, w.mean(), s.mean())
            return cpt(curve, w.mean(), s.mean(), 0.5 if kind == "cpt50" else 0.8)

        return compute

    n = len(scores)
    curve = threshold_sweep(scores, strong, weak, bins=bins)
    results = {
        kind: bootstrap_metric(metric(kind), n, n_boot=n_boot, seed=seed)
        for kind in ("apgr", "cpt50", "cpt80")
    }
    area = None
    if strong_cost is not None and weak_cost is not None:
        chosen = sweep_choices(scores, curve.thresholds)
        costs = np.where(chosen, strong_cost[None, :], weak_cost[None, :]).mean(axis=1)
        hull = nondecreasing_convex_hull(costs, curve.quality)
        area = aiq(hull, (float(weak_cost.mean()), float(strong_cost.mean())))
    return TwoModelResult(
        n=n,
        strong_quality=float(strong.mean()),
        weak_quality=float(weak.mean()),
        apgr=results["apgr"],
        cpt50=results["cpt50"],
        cpt80=results["cpt80"],
        curve=curve,
        aiq=area,
    )


def lambda_grid(quality: np.ndarray, costs: np.ndarray, size: int = 60) -> np.ndarray:
    """Lambdas spanning "quality only" (0) to "cheapest only": geometric, scaled by the
    spread of predicted quality over the spread of costs."""
    q_spread = float(np.nanstd(quality)) or 1.0
    c_spread = float(np.nanstd(costs)) or 1.0
    scale = q_spread / c_spread
    return np.concatenate([[0.0], np.geomspace(scale * 1e-3, scale * 1e4, size - 1)])


def evaluate_cost_quality(
    predicted: np.ndarray,
    expected_cost: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    models: Sequence[str],
    *,
    lambdas: np.ndarray | None = None,
    cost_range: tuple[float, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> CostQualityResult:
    """Sweep lambda over "predicted quality - lambda x expected cost" routing and score each
    operating point with the recorded ``quality``/``cost`` (n, m). AIQ over ``cost_range``
    (default: cheapest to costliest single model), with a bootstrap CI over items; the same
    for the zero router; the oracle's point."""
    lambdas = lambda_grid(predicted, expected_cost) if lambdas is None else lambdas
    choices = np.stack([choose_by_lambda(predicted, expected_cost, lam) for lam in lambdas])
    rows = np.arange(len(quality))
    routed_q, routed_c = quality[rows, choices], cost[rows, choices]  # (L, n)
    singles = single_model_points(quality, cost, list(models))
    if cost_range is None:
        per_model = cost.mean(axis=0)
        cost_range = (float(per_model.min()), float(per_model.max()))

    def router_aiq(idx: np.ndarray) -> float:
        costs, qualities = routed_c[:, idx].mean(axis=1), routed_q[:, idx].mean(axis=1)
        hull = nondecreasing_convex_hull(costs, qualities)
        return aiq(hull, cost_range)

    def zero_aiq(idx: np.ndarray) -> float:
        return aiq(zero_router_hull(quality[idx], cost[idx]), cost_range)

    points = [
        CostQualityPoint(f"lambda={lam:.3g}", float(c), float(q))
        for lam, c, q in zip(lambdas, routed_c.mean(axis=1), routed_q.mean(axis=1), strict=True)
    ]
    return CostQualityResult(
        n=len(quality),
        points=points,
        hull=nondecreasing_convex_hull(routed_c.mean(axis=1), routed_q.mean(axis=1)),
        aiq=bootstrap_metric(router_aiq, len(quality), n_boot=n_boot, seed=seed),
        zero_router_aiq=bootstrap_metric(zero_aiq, len(quality), n_boot=n_boot, seed=seed),
        cost_range=cost_range,
        singles=singles,
        oracle=oracle_point(quality, cost),
    )


def recorded_arrays(data: RecordedDataset, models: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, cost) arrays (n, m) of ``models`` on ``data``'s items, in ``data.ids``
    order."""
    quality = data.wide_scores()[list(models)].to_numpy(dtype=float)
    cost = (
        data.outcomes.pivot(index="item_id", columns="model", values="cost_usd")
        .reindex(index=list(data.ids), columns=list(models))
        .to_numpy(dtype=float)
    )
    return quality, cost


def evaluate_router(
    router: LearnedRouter,
    test: RecordedDataset,
    *,
    embeddings: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> TwoModelResult | CostQualityResult:
    """Score a trained router on held-out ``test`` items: RouteLLM's metrics for a
    threshold router, RouterBench's for a lambda router. Refuses test items the router
    was trained on (``router.train_ids``)."""
    if router.train_ids is not None:
        assert_disjoint(router.train_ids, test.ids)
    models = list(router.train_info.get("models") or [])
    if len(models) != len(router.targets()):
        raise ConfigError(
            f"policy {router.name!r} does not record which recorded models its targets are",
            hint="train it with aigw_lab.policy.learned.train_router",
        )
    quality, cost = recorded_arrays(test, models)
    X = embeddings if embeddings is not None else router.embed([i.prompt for i in test.items])
    if router.decision.mode == "threshold":
        s = models[router.targets().index(str(router.strong))]
        w = models[router.targets().index(str(router.weak))]
        js, jw = models.index(s), models.index(w)
        return evaluate_two_model(
            router.strong_scores_from(X),
            quality[:, js],
            quality[:, jw],
            strong_cost=cost[:, js],
            weak_cost=cost[:, jw],
            n_boot=n_boot,
            seed=seed,
        )
    prompts = [i.prompt for i in test.items]
    return evaluate_cost_quality(
        router.model.predict(X),
        router.expected_costs(prompts),
        quality,
        cost,
        models,
        n_boot=n_boot,
        seed=seed,
    )
