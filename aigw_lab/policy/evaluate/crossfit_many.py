"""A many-model router's AIQ beside its baselines, cross-fitted over several fold seeds.

The many-model counterpart of `aigw_lab.policy.evaluate.crossfit` (which compares two-model
routers by APGR). Each row predicts, for every test item, a quality and an expected cost per
model, fitted on the other folds only; a lambda sweep of "predicted quality - lambda x
expected cost" routing gives its (cost, quality) operating points, scored with the recorded
outcomes, and its AIQ is the area under their non-decreasing convex hull over the cost range
of the single models (RouterBench). Rows:

- the learned router (`train_router` on the training items);
- the trivial baselines, fitted in-fold: prompt length (each model's mean training quality
  and cost per length decile) and category lookup where the items have categories (per
  category, shrunk toward the overall mean by `CATEGORY_PRIOR` pseudo-items);
- random routing: the zero router, RouterBench's random baseline (the hull of the single
  models: what mixing models at random, blind to the prompt, reaches);
- the oracle: the same lambda sweep on the recorded qualities and costs themselves (per
  item and lambda, the model with the best recorded quality minus lambda x cost).

Intervals, seed spread and gains are as in `crossfit`: one set of item resamples for every
row and seed, so each gain over random routing is a paired difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.baselines import zero_router_hull
from aigw_lab.policy.evaluate.comparison_table import BaselineComparison, BaselineRow
from aigw_lab.policy.evaluate.metrics import aiq, nondecreasing_convex_hull
from aigw_lab.policy.evaluate.offline import (
    assert_disjoint,
    kfold_assignment,
    lambda_grid,
    recorded_arrays,
)
from aigw_lab.policy.evaluate.trivial import CATEGORY_PRIOR, LENGTH_BINS, usable_categories
from aigw_lab.policy.learned.features import embed_prompts, make_embedder
from aigw_lab.policy.learned.router import choose_by_lambda, train_router

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset

__all__ = ["compare_many_models"]

#: ``predict(train, test)`` -> (predicted quality, expected cost), each (len(test), models).
Predict = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _group_lookup(
    groups: np.ndarray, quality: np.ndarray, cost: np.ndarray, prior: float
) -> Predict:
    """Each model's mean training quality and cost per group (shrunk toward the overall
    means by ``prior`` pseudo-items); an unseen group gets the overall means."""

    def predict(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q_all, c_all = quality[train].mean(axis=0), cost[train].mean(axis=0)
        out_q = np.tile(q_all, (len(test), 1))
        out_c = np.tile(c_all, (len(test), 1))
        for group in np.unique(groups[test]):
            members = train[groups[train] == group]
            k = len(members)
            if k == 0 and prior == 0:
                continue
            where = groups[test] == group
            q_sum = quality[members].sum(axis=0) if k else 0.0
            c_sum = cost[members].sum(axis=0) if k else 0.0
            out_q[where] = (q_sum + prior * q_all) / (k + prior)
            out_c[where] = (c_sum + prior * c_all) / (k + prior)
        return out_q, out_c

    return predict


def _length_lookup(lengths: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> Predict:
    values = np.log1p(lengths.astype(float))

    def predict(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edges = np.unique(np.quantile(values[train], np.linspace(0, 1, LENGTH_BINS + 1))[1:-1])
        deciles = np.searchsorted(edges, values, side="right")
        return _group_lookup(deciles, quality, cost, 0.0)(train, test)

    return predict


def _routed(
    predicted: np.ndarray, expected: np.ndarray, quality: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The recorded (quality, cost) of each item under each lambda: two (lambdas, n)."""
    rows = np.arange(len(quality))
    choices = np.stack(
        [choose_by_lambda(predicted, expected, lam) for lam in lambda_grid(predicted, expected)]
    )
    return quality[rows, choices], cost[rows, choices]


def _aiq(routed_q: np.ndarray, routed_c: np.ndarray, weights: np.ndarray, span: tuple) -> float:
    """AIQ of a lambda sweep's points on the items weighted by ``weights`` (how many times
    each was drawn, over their sum): a resample's means without gathering it."""
    hull = nondecreasing_convex_hull(routed_c @ weights, routed_q @ weights)
    return aiq(hull, span)


def compare_many_models(
    data: RecordedDataset,
    router: str = "knn",
    *,
    models: Sequence[str] | None = None,
    seeds: int = 5,
    folds: int = 5,
    embeddings: np.ndarray | None = None,
    embedder: Any = None,
    cache_dir: str | None = None,
    params: Any = None,
    n_boot: int = 1000,
    boot_seed: int = 0,
    notes: Sequence[str] = (),
) -> BaselineComparison:
    """A learned many-model router's AIQ on ``data`` beside random routing (the zero
    router), the oracle and the trivial baselines, cross-fitted over ``seeds`` fold seeds,
    with paired 95% item-bootstrap intervals and the seed spread. ``models`` default to the
    labelled models with prices; items missing a label of any of them are left out."""
    if seeds < 1 or folds < 2:
        raise ConfigError(
            f"seeds={seeds}, folds={folds} cannot cross-fit", hint="use seeds >= 1, folds >= 2"
        )
    wide = data.wide_scores()
    chosen = list(models or [m for m in data.models if wide[m].notna().any() and m in data.prices])
    if len(chosen) < 2:
        raise ConfigError(
            f"{data.name!r} has {len(chosen)} priced, labelled models",
            hint="AIQ compares two or more",
        )
    if embeddings is None:
        embeddings = embed_prompts(
            [item.prompt for item in data.items],
            embedder if embedder is not None else make_embedder(None),
            cache_dir=cache_dir,
        )
    quality, cost = recorded_arrays(data, chosen)
    complete = ~(np.isnan(quality).any(axis=1) | np.isnan(cost).any(axis=1))
    left_out = int((~complete).sum())
    if left_out:
        data = data.subset([i for i, ok in zip(data.ids, complete, strict=True) if ok])
        embeddings, quality, cost = embeddings[complete], quality[complete], cost[complete]
    n, ids = len(quality), data.ids
    per_model = cost.mean(axis=0)
    span = (float(per_model.min()), float(per_model.max()))
    prompts = [item.prompt for item in data.items]

    def learned(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fitted = train_router(
            data.subset([ids[i] for i in train]),
            router,
            models=chosen,
            embeddings=embeddings[train],
            params=params,
        )
        return fitted.model.predict(embeddings[test]), fitted.expected_costs(
            [prompts[i] for i in test]
        )

    predictors: dict[str, tuple[str, Predict]] = {router: ("router", learned)}
    predictors["prompt length"] = (
        "trivial",
        _length_lookup(np.array([len(p) for p in prompts]), quality, cost),
    )
    categories = [item.category for item in data.items]
    all_notes = list(notes)
    if usable_categories(categories):
        labels = np.array([c or "" for c in categories], dtype=object)
        predictors["category lookup"] = (
            "trivial",
            _group_lookup(labels, quality, cost, CATEGORY_PRIOR),
        )
    else:
        all_notes.append("No category baseline: these items have no usable category.")
    if left_out:
        all_notes.append(f"{left_out} items missing a label or cost of some model left out.")

    routed: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in predictors}
    for seed in range(seeds):
        assignment = kfold_assignment(ids, folds, seed)
        predicted = {name: np.full((n, len(chosen)), np.nan) for name in predictors}
        expected = {name: np.full((n, len(chosen)), np.nan) for name in predictors}
        for k in range(folds):
            test, train = np.flatnonzero(assignment == k), np.flatnonzero(assignment != k)
            assert_disjoint([ids[i] for i in train], [ids[i] for i in test])
            for name, (_, predict) in predictors.items():
                predicted[name][test], expected[name][test] = predict(train, test)
        for name in predictors:
            routed[name].append(_routed(predicted[name], expected[name], quality, cost))

    # The oracle's own lambda sweep: per item, the recorded quality minus lambda x cost.
    oracle_q, oracle_c = _routed(quality, cost, quality, cost)

    def zero(idx: np.ndarray) -> float:
        return aiq(zero_router_hull(quality[idx], cost[idx]), span)

    every = np.full(n, 1.0 / n)
    per_seed = {
        name: np.array([_aiq(q, c, every, span) for q, c in routed[name]]) for name in routed
    }
    per_seed["random"] = np.array([zero(np.arange(n))])
    per_seed["oracle"] = np.array([_aiq(oracle_q, oracle_c, every, span)])
    reps = {name: np.empty(n_boot) for name in per_seed}
    rng = np.random.default_rng(boot_seed)
    for b in range(n_boot):
        # One resample of the items for every row and seed: the differences are paired.
        idx = rng.integers(0, n, size=n)
        weights = np.bincount(idx, minlength=n) / n
        for name in routed:
            reps[name][b] = np.mean([_aiq(q, c, weights, span) for q, c in routed[name]])
        reps["random"][b] = zero(idx)
        reps["oracle"][b] = _aiq(oracle_q, oracle_c, weights, span)

    kinds = {name: kind for name, (kind, _) in predictors.items()}
    kinds |= {"random": "random", "oracle": "oracle"}
    table = [_row(name, kinds[name], per_seed, reps) for name in per_seed]
    order = {"router": 0, "trivial": 1, "random": 2, "oracle": 4}
    table.sort(key=lambda r: order[r.kind])
    main = table[0]
    significant = main.gain_ci_low is not None and main.gain_ci_low > 0
    return BaselineComparison(
        metric="aiq",
        router=router,
        rows=tuple(table),
        seeds=seeds,
        folds=folds,
        items=n,
        significant=significant,
        verdict=_verdict(main, table, reps, significant),
        notes=(
            "random = the zero router (random mixes of the single models, blind to the "
            f"prompt); AIQ over the single models' cost range ${span[0]:.6f}-${span[1]:.6f} "
            "per query.",
            *all_notes,
        ),
    )


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values[~np.isnan(values)], [2.5, 97.5])
    return float(low), float(high)


def _row(
    name: str, kind: str, per_seed: dict[str, np.ndarray], reps: dict[str, np.ndarray]
) -> BaselineRow:
    values = per_seed[name]
    low, high = _interval(reps[name])
    gain: dict[str, float] = {}
    if name != "random":
        g_low, g_high = _interval(reps[name] - reps["random"])
        gain = {
            "gain_vs_random": float(values.mean() - per_seed["random"].mean()),
            "gain_ci_low": g_low,
            "gain_ci_high": g_high,
        }
    return BaselineRow(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        value=float(values.mean()),
        ci_low=low,
        ci_high=high,
        seed_min=float(values.min()),
        seed_max=float(values.max()),
        **gain,
    )


def _verdict(
    main: BaselineRow,
    table: Sequence[BaselineRow],
    reps: dict[str, np.ndarray],
    significant: bool,
) -> str:
    gain = f"{main.gain_vs_random:+.4f} [{main.gain_ci_low:+.4f}, {main.gain_ci_high:+.4f}]"
    head = (
        f"{main.name} beats random routing (the zero router; AIQ gain {gain}, significant)"
        if significant
        else f"{main.name} does not beat random routing (the zero router) significantly "
        f"(AIQ gain {gain})"
    )
    trivial = [r for r in table if r.kind == "trivial"]
    if not trivial:
        return head + "."
    best = max(trivial, key=lambda r: r.value)
    low, high = _interval(reps[main.name] - reps[best.name])
    against = (
        "significantly better than"
        if low > 0
        else "significantly worse than"
        if high < 0
        else "not significantly different from"
    )
    return (
        f"{head}, and is {against} the best trivial baseline, {best.name} (AIQ "
        f"{best.value:.4f}; difference {main.value - best.value:+.4f} [{low:+.4f}, {high:+.4f}])."
    )
