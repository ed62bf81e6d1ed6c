"""A two-model router's APGR beside its baselines, cross-fitted over several fold seeds.

For each of ``seeds`` fold seeds the items are dealt into ``folds`` folds
(`kfold_assignment`); every scorer (the router, the trivial baselines) is fitted on the other
folds and scores the held-out one, so each item is scored out of fold once per seed. Beside
them, on the same items:

- random routing: a uniform score per item, drawn afresh for each fold seed;
- the zero router: a random mix of the two models blind to the prompt, whose curve is the
  straight line between them, so its APGR is 0.5 by construction;
- the oracle: RouteLLM's optimal router (`oracle_curve`), which no router can beat;
- the trivial baselines of `aigw_lab.policy.evaluate.trivial` (prompt length, and category
  lookup where the data has categories).

Each row's value is the mean over seeds of its APGR. Its interval is a 95% percentile
bootstrap over items: one set of item resamples shared by every row and seed, and on each
the mean over seeds recomputed, so a row's gain over random routing (or over another row) is
a paired difference with its own interval. The seed spread (min-max of the per-seed APGRs)
says how much the fold dealing alone moves a result; it is reported apart from the interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.comparison_table import BaselineComparison, BaselineRow
from aigw_lab.policy.evaluate.metrics import (
    ROUTELLM_BINS,
    MetricCI,
    apgr,
    oracle_curve,
    random_scores,
    threshold_sweep,
)
from aigw_lab.policy.evaluate.offline import assert_disjoint, kfold_assignment
from aigw_lab.policy.evaluate.trivial import (
    Scorer,
    category_scorer,
    length_scorer,
    usable_categories,
)
from aigw_lab.policy.learned.features import embed_prompts, make_embedder
from aigw_lab.policy.learned.router import inputs_for, train_router

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset

__all__ = [
    "SEEDS",
    "FOLDS",
    "CrossFit",
    "crossfit",
    "compare_scorers",
    "compare_many",
    "learned_scorer",
    "held_out_gain",
    "trivial_scorers",
    "compare_with_baselines",
]

SEEDS = 5
FOLDS = 5
_RANDOM_SEED_BASE = 7919  # random routing's draws, apart from the fold seeds


@dataclass(frozen=True, slots=True)
class CrossFit:
    """Out-of-fold scores per scorer: ``scores[name]`` is (seeds, items)."""

    scores: dict[str, np.ndarray]
    kinds: dict[str, str]
    seeds: tuple[int, ...]
    folds: int


def crossfit(
    scorers: Sequence[Scorer],
    ids: Sequence[str],
    gain: np.ndarray,
    *,
    folds: int = FOLDS,
    seeds: Sequence[int] = tuple(range(SEEDS)),
) -> CrossFit:
    """Every item scored out of fold by every scorer, once per fold seed. A scorer is handed
    the training items' gains only, and each fold's train and test items are checked
    disjoint."""
    gain = np.asarray(gain, dtype=float)
    if len(gain) != len(ids):
        raise ConfigError(f"{len(gain)} gains for {len(ids)} items", hint="one gain per item")
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise ConfigError(f"scorer names {names} repeat", hint="name each scorer once")
    scores = {s.name: np.full((len(seeds), len(ids)), np.nan) for s in scorers}
    for row, seed in enumerate(seeds):
        assignment = kfold_assignment(ids, folds, seed)
        for k in range(folds):
            test = np.flatnonzero(assignment == k)
            train = np.flatnonzero(assignment != k)
            assert_disjoint([ids[i] for i in train], [ids[i] for i in test])
            for scorer in scorers:
                predicted = np.asarray(scorer.fit_score(train, gain[train], test), dtype=float)
                if predicted.shape != test.shape:
                    raise ConfigError(
                        f"scorer {scorer.name!r} returned {predicted.shape} scores for "
                        f"{len(test)} test items",
                        hint="return one strong-win score per test item",
                    )
                scores[scorer.name][row, test] = predicted
    return CrossFit(scores, {s.name: s.kind for s in scorers}, tuple(seeds), folds)


def _apgr(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> float:
    return apgr(threshold_sweep(scores, strong, weak), weak.mean(), strong.mean())


class _Sorted:
    """One scorer's scores sorted once, so that the APGR of RouteLLM's threshold sweep on a
    resample of the items needs no sort: the resample is a count per sorted position.
    `resampled_apgr` equals ``apgr(threshold_sweep(scores[idx], ...))`` (tested)."""

    def __init__(self, scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> None:
        order = np.argsort(scores, kind="stable")
        self.rank = np.empty(len(order), dtype=np.int64)
        self.rank[order] = np.arange(len(order))
        self.values = scores[order]
        self.gain = (strong - weak)[order]
        n = len(scores)
        self.h = (n - 1) * np.linspace(0.0, 1.0, ROUTELLM_BINS + 1)
        self.below = np.floor(self.h)
        self.above = np.minimum(self.below + 1, n - 1)

    def resampled_apgr(self, idx: np.ndarray, strong_mean: float, weak_mean: float) -> float:
        n = len(idx)
        counts = np.bincount(self.rank[idx], minlength=len(self.rank))
        drawn = np.cumsum(counts)
        gained = np.cumsum(counts * self.gain)
        # np.quantile's thresholds: the resample's sorted value at position h = (n - 1) q.
        low = self.values[np.searchsorted(drawn, self.below, side="right")]
        high = self.values[np.searchsorted(drawn, self.above, side="right")]
        thresholds = _lerp(low, high, self.h - self.below)
        start = np.searchsorted(self.values, thresholds, side="left")
        # ">" at the largest (last) threshold, as in RouteLLM's sweep: it reaches 0 % strong.
        start[-1] = np.searchsorted(self.values, thresholds[-1], side="right")
        before = np.maximum(start - 1, 0)
        share = (n - np.where(start > 0, drawn[before], 0)) / n
        quality = weak_mean + (gained[-1] - np.where(start > 0, gained[before], 0.0)) / n
        by_share = np.argsort(share, kind="stable")
        x, y = share[by_share], quality[by_share]
        width, gap = float(x[-1] - x[0]), strong_mean - weak_mean
        if width == 0 or gap == 0:
            return float("nan")
        area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
        return (area - weak_mean * width) / (gap * width)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    # numpy's own quantile interpolation, so the thresholds equal np.quantile's to the bit.
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _oracle_apgr(strong: np.ndarray, weak: np.ndarray) -> float:
    return apgr(oracle_curve(strong, weak), weak.mean(), strong.mean())


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    kept = replicates[~np.isnan(replicates)]
    if not len(kept):
        return float("nan"), float("nan")
    low, high = np.percentile(kept, [2.5, 97.5])
    return float(low), float(high)


def compare_scorers(
    fitted: CrossFit,
    strong: np.ndarray,
    weak: np.ndarray,
    *,
    router: str,
    n_boot: int = 1000,
    boot_seed: int = 0,
    notes: Sequence[str] = (),
) -> BaselineComparison:
    """The cross-fitted scores ``fitted`` beside random routing, the zero router and the
    oracle, with paired item-bootstrap intervals and the seed spread; ``router`` names the
    row the verdict is about."""
    return compare_many(
        fitted, strong, weak, routers=[router], n_boot=n_boot, boot_seed=boot_seed, notes=notes
    )[router]


def compare_many(
    fitted: CrossFit,
    strong: np.ndarray,
    weak: np.ndarray,
    *,
    routers: Sequence[str],
    n_boot: int = 1000,
    boot_seed: int = 0,
    notes: Sequence[str] = (),
) -> dict[str, BaselineComparison]:
    """`compare_scorers` for several ``routers`` at once, one table (the same resamples)
    with a verdict for each."""
    strong, weak = np.asarray(strong, dtype=float), np.asarray(weak, dtype=float)
    n, seeds = len(strong), fitted.seeds
    for router in routers:
        if router not in fitted.scores:
            raise ConfigError(
                f"no scorer named {router!r}", hint=f"use one of {list(fitted.scores)}"
            )
    rows: dict[str, tuple[str, np.ndarray]] = {
        name: (fitted.kinds[name], scores) for name, scores in fitted.scores.items()
    }
    rows["random"] = (
        "random",
        np.stack([random_scores(n, seed=_RANDOM_SEED_BASE + s) for s in seeds]),
    )
    per_seed = {
        name: np.array([_apgr(scores, strong, weak) for scores in matrix])
        for name, (_, matrix) in rows.items()
    }
    replicates = {name: np.empty(n_boot) for name in rows}
    oracle_reps = np.empty(n_boot)
    sorted_rows = {
        name: [_Sorted(scores, strong, weak) for scores in matrix]
        for name, (_, matrix) in rows.items()
    }
    rng = np.random.default_rng(boot_seed)
    for b in range(n_boot):
        # One resample of the items for every row and seed: the differences are paired.
        idx = rng.integers(0, n, size=n)
        s, w = strong[idx], weak[idx]
        s_mean, w_mean = float(s.mean()), float(w.mean())
        for name, per_seed_sorted in sorted_rows.items():
            replicates[name][b] = np.mean(
                [one.resampled_apgr(idx, s_mean, w_mean) for one in per_seed_sorted]
            )
        oracle_reps[b] = _oracle_apgr(s, w)

    def row(name: str, kind: str, values: np.ndarray, reps: np.ndarray) -> BaselineRow:
        low, high = _interval(reps)
        gain: dict[str, Any] = {}
        if name != "random":
            diff = reps - replicates["random"]
            g_low, g_high = _interval(diff)
            gain = {
                "gain_vs_random": float(np.mean(values) - np.mean(per_seed["random"])),
                "gain_ci_low": g_low,
                "gain_ci_high": g_high,
            }
        return BaselineRow(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            value=float(np.mean(values)),
            ci_low=low,
            ci_high=high,
            seed_min=float(np.min(values)),
            seed_max=float(np.max(values)),
            **gain,
        )

    oracle_value = _oracle_apgr(strong, weak)
    zero = np.full(n_boot, 0.5)
    table = [row(name, kind, per_seed[name], replicates[name]) for name, (kind, _) in rows.items()]
    table.append(row("zero router", "zero", np.array([0.5]), zero))
    table.append(row("oracle", "oracle", np.array([oracle_value]), oracle_reps))
    order = {"router": 0, "trivial": 1, "random": 2, "zero": 3, "oracle": 4}
    table.sort(key=lambda r: order[r.kind])
    out = {}
    for router in routers:
        main = next(r for r in table if r.name == router)
        significant = main.gain_ci_low is not None and main.gain_ci_low > 0
        out[router] = BaselineComparison(
            metric="apgr",
            router=router,
            rows=tuple(table),
            seeds=len(seeds),
            folds=fitted.folds,
            items=n,
            significant=significant,
            verdict=_verdict(main, table, replicates, significant),
            notes=tuple(notes),
        )
    return out


def _verdict(
    main: BaselineRow,
    table: Sequence[BaselineRow],
    replicates: Mapping[str, np.ndarray],
    significant: bool,
) -> str:
    gain = (
        f"{main.gain_vs_random:+.3f} [{main.gain_ci_low:+.3f}, {main.gain_ci_high:+.3f}]"
        if main.gain_vs_random is not None
        else "n/a"
    )
    over_random = (
        f"beats random routing (APGR gain {gain}, significant)"
        if significant
        else f"does not beat random routing significantly (APGR gain {gain})"
    )
    trivial = [r for r in table if r.kind == "trivial"]
    if not trivial:
        return f"{main.name} {over_random}; no trivial baseline applies to these data."
    best = max(trivial, key=lambda r: r.value)
    low, high = _interval(replicates[main.name] - replicates[best.name])
    diff = main.value - best.value
    if low > 0:
        against = "significantly better than"
    elif high < 0:
        against = "significantly worse than"
    else:
        against = "not significantly different from"
    return (
        f"{main.name} {over_random}, and is {against} the best trivial baseline, "
        f"{best.name} (APGR {best.value:.3f}; difference {diff:+.3f} [{low:+.3f}, {high:+.3f}])."
    )


def held_out_gain(
    scores: np.ndarray,
    strong: np.ndarray,
    weak: np.ndarray,
    *,
    draws: int = SEEDS,
    n_boot: int = 1000,
    boot_seed: int = 0,
) -> tuple[MetricCI, MetricCI]:
    """On one held-out set: random routing's APGR (the mean of ``draws`` random routers) and
    the router's paired APGR gain over it, each with a 95% item-bootstrap interval. The
    router is ``scores``, its strong-win score per item."""
    scores, strong, weak = (np.asarray(a, dtype=float) for a in (scores, strong, weak))
    n = len(scores)
    coins = [random_scores(n, seed=_RANDOM_SEED_BASE + d) for d in range(draws)]
    router = _Sorted(scores, strong, weak)
    randoms = [_Sorted(c, strong, weak) for c in coins]
    random_value = float(np.mean([_apgr(c, strong, weak) for c in coins]))
    gain_value = _apgr(scores, strong, weak) - random_value
    rng = np.random.default_rng(boot_seed)
    random_reps, gain_reps = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        s_mean, w_mean = float(strong[idx].mean()), float(weak[idx].mean())
        random_reps[b] = np.mean([r.resampled_apgr(idx, s_mean, w_mean) for r in randoms])
        gain_reps[b] = router.resampled_apgr(idx, s_mean, w_mean) - random_reps[b]
    return (
        MetricCI(value=random_value, low=_interval(random_reps)[0], high=_interval(random_reps)[1]),
        MetricCI(value=gain_value, low=_interval(gain_reps)[0], high=_interval(gain_reps)[1]),
    )


def learned_scorer(
    data: RecordedDataset,
    router: str,
    embeddings: np.ndarray,
    *,
    strong: str,
    weak: str,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Scorer:
    """A learned router (a name of `aigw_lab.policy.learned.ROUTERS`) as a scorer: trained
    by `train_router` on the training items only (``data.subset`` of them, their rows of
    ``embeddings``), scoring the test items' embeddings."""
    ids = data.ids
    if len(embeddings) != len(ids):
        raise ConfigError(
            f"{len(embeddings)} embeddings for {len(ids)} items", hint="embed data.items in order"
        )
    # A side-feature router (stacked) also reads each item's length, numbers and category;
    # rows that already carry those columns pass through unchanged.
    embeddings = inputs_for(router, data, embeddings)

    def fit_score(train: np.ndarray, train_gain: np.ndarray, test: np.ndarray) -> np.ndarray:
        del train_gain  # the router reads its training items' labels from the subset
        fitted = train_router(
            data.subset([ids[i] for i in train]),
            router,
            models=[strong, weak],
            strong=strong,
            weak=weak,
            embeddings=embeddings[train],
            params=params,
        )
        return fitted.strong_scores_from(embeddings[test])

    return Scorer(name or router, "router", fit_score)


def trivial_scorers(data: RecordedDataset) -> tuple[list[Scorer], list[str]]:
    """The trivial baselines that apply to ``data`` and notes on those that do not."""
    items = data.items
    scorers = [length_scorer([len(item.prompt) for item in items])]
    notes = []
    categories = [item.category for item in items]
    if usable_categories(categories):
        label = "subject" if any("subject" in item.metadata for item in items) else "category"
        scorers.append(category_scorer(categories, name=label))
    else:
        notes.append("No category baseline: these items have no usable category.")
    return scorers, notes


def compare_with_baselines(
    data: RecordedDataset,
    router: str = "knn",
    *,
    seeds: int = SEEDS,
    folds: int = FOLDS,
    strong: str | None = None,
    weak: str | None = None,
    embeddings: np.ndarray | None = None,
    embedder: Any = None,
    cache_dir: str | None = None,
    params: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    boot_seed: int = 0,
    notes: Sequence[str] = (),
) -> BaselineComparison:
    """A learned two-model router on ``data`` beside random routing, the zero router, the
    oracle and the trivial baselines (prompt length; category or subject lookup where the
    items have one), each cross-fitted over ``seeds`` fold seeds of ``folds`` folds, with
    paired 95% item-bootstrap intervals and the seed spread.

    ``strong``/``weak`` default to the better and the worse of the two recorded models (the
    data must have exactly two unless both are given). ``embeddings`` (one row per item, in
    ``data.ids`` order) skip embedding; else ``embedder`` (default MiniLM) embeds the
    prompts through the on-disk cache in ``cache_dir``. Print it with
    `format_baseline_table`; ``notes`` are printed under the table."""
    if seeds < 1 or folds < 2:
        raise ConfigError(
            f"seeds={seeds}, folds={folds} cannot cross-fit", hint="use seeds >= 1, folds >= 2"
        )
    strong, weak = _pair(data, strong, weak)
    if embeddings is None:
        embeddings = embed_prompts(
            [item.prompt for item in data.items],
            embedder if embedder is not None else make_embedder(None),
            cache_dir=cache_dir,
        )
    wide = data.wide_scores()
    s, w = (wide[m].to_numpy(dtype=float) for m in (strong, weak))
    labelled = ~(np.isnan(s) | np.isnan(w))
    if not labelled.all():
        keep = [i for i, ok in zip(data.ids, labelled, strict=True) if ok]
        data, embeddings, s, w = data.subset(keep), embeddings[labelled], s[labelled], w[labelled]
    trivial, trivial_notes = trivial_scorers(data)
    scorers = [
        learned_scorer(data, router, embeddings, strong=strong, weak=weak, params=params),
        *trivial,
    ]
    fitted = crossfit(scorers, data.ids, s - w, folds=folds, seeds=tuple(range(seeds)))
    return compare_scorers(
        fitted,
        s,
        w,
        router=router,
        n_boot=n_boot,
        boot_seed=boot_seed,
        notes=[*notes, *trivial_notes],
    )


def _pair(data: RecordedDataset, strong: str | None, weak: str | None) -> tuple[str, str]:
    if strong and weak:
        for model in (strong, weak):
            if model not in data.models:
                raise ConfigError(
                    f"{data.name!r} has no recordings of {model!r}",
                    hint=f"use models among {', '.join(data.models)}",
                )
        return strong, weak
    wide = data.wide_scores()
    labelled = [m for m in data.models if wide[m].notna().any()]
    if len(labelled) != 2:
        raise ConfigError(
            f"{data.name!r} has {len(labelled)} labelled models; APGR compares two",
            hint="pass strong= and weak= to name the pair",
        )
    means = wide[labelled].mean()
    return str(means.idxmax()), str(means.idxmin())
