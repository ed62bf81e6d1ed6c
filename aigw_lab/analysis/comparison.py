"""Comparing an experiment's targets: the per-target summary (reliability, latency, cost and
quality with a bootstrap interval) and the paired comparison of two targets on the same items.

Aggregation runs in DuckDB over the log's rollups (`aigw_lab.analysis.rollups`: one row per
unit, refreshed past a watermark before each read); only the per-item quality table, items x
targets rows however long the log, comes back to numpy for the bootstrap. The same frames
from every call row are `aigw_lab.analysis.reference`'s. Metric definitions are in
docs/analysis.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab.analysis._rolled import paired_items, summary_tables
from aigw_lab.analysis._source import default_scorer
from aigw_lab.analysis.rollups import fresh_rollups
from aigw_lab.analysis.stats import bootstrap_interval, bootstrap_mean_ci

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aigw_lab.analysis._source import LogSource
    from aigw_lab.analysis.stats import BootstrapMethod

__all__ = [
    "SUMMARY_COLUMNS",
    "target_summary",
    "paired_comparison",
    "summary_frame",
    "paired_frame",
]

#: The columns of `target_summary`, in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "target",
    "units",
    "errors",
    "error_rate",
    "fallback_rate",
    "cache_hit_rate",
    "attempts_per_unit",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "cost_per_call",
    "total_cost",
    "scored",
    "items",
    "quality_mean",
    "quality_ci_low",
    "quality_ci_high",
    "cost_per_correct",
    "simulated",
)


def target_summary(
    source: LogSource,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per target of the experiment (or of the whole log when ``experiment_id`` is
    None), sorted by target: units, failures, latency, cost and quality.

    ``scorer`` names the scorer whose scores are the quality; None picks the one with the
    most scores (``frame.attrs["scorer"]`` says which; quality columns are NaN when nothing
    is scored). ``quality_ci_low``/``high`` are a percentile bootstrap interval at
    ``confidence``, resampling items (repetitions of an item averaged first), seeded by
    ``seed``: items' means with few distinct values (a 0/1 scorer's) are resampled by
    counting picks per value (`aigw_lab.analysis.stats`, same distribution, cheap at any
    item count), and a target with at least 2,000 spread-out item means gets the quantiles
    of the bootstrap distribution computed, not drawn (`aigw_lab.analysis.saddlepoint`).
    ``cost_per_correct`` is only defined for a 0/1 scorer (NaN otherwise).
    """
    with fresh_rollups(source) as rollups:
        if scorer is None:
            scorer = default_scorer(rollups.read, experiment_id)
        per_target, items = summary_tables(rollups, experiment_id, scorer)
    return summary_frame(
        per_target,
        items,
        experiment_id=experiment_id,
        scorer=scorer,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
    )


def summary_frame(
    per_target: pd.DataFrame,
    items: pd.DataFrame,
    *,
    experiment_id: str | None,
    scorer: str | None,
    confidence: float,
    n_boot: int,
    seed: int,
    bootstrap: BootstrapMethod = "auto",
) -> pd.DataFrame:
    """`target_summary`'s frame from the per-target and per-item tables (read from the
    rollups, or by the reference SQL in `aigw_lab.analysis.reference`). ``bootstrap`` is
    `bootstrap_means`' ``method`` ("indices": the intervals every earlier version gave)."""
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
    import numpy as np
    import pandas as pd

    per_target = per_target.sort_values("target").reset_index(drop=True)
    # ``items`` is one row per item, or (from the rollups, when item means take few values)
    # one row per (target, mean) standing for ``items`` items: the counted bootstrap sees
    # the same sample either way, since it only needs how many items have each mean.
    weighted = "items" in items.columns
    # Sorted so the seeded resampling sees items in the same order every time (DuckDB
    # returns groups in whatever order its threads finish).
    items = items.sort_values(
        ["target", "item_quality"] if weighted else ["target", "experiment_id", "item_id"]
    )
    # The columns are built as numpy arrays and made into a frame once: a column assigned
    # to a frame with a string index at a time cost more than the bootstrap at 1M calls.
    targets = per_target["target"].astype(str)
    units = per_target["units"].to_numpy(dtype="int64")
    errors = per_target["errors"].to_numpy(dtype="int64")
    columns: dict[str, object] = {
        "target": targets.to_numpy(dtype=object),
        "units": units,
        "errors": errors,
        "error_rate": errors / units,
        "fallback_rate": per_target["fallbacks"].to_numpy(dtype="int64") / units,
        "cache_hit_rate": per_target["cache_hits"].to_numpy(dtype="int64") / units,
        "attempts_per_unit": per_target["attempts_per_unit"].to_numpy(dtype=float, na_value=np.nan),
    }
    for name, column, count in (("latency", "latency_q", 3), ("ttft", "ttft_q", 2)):
        quantiles = _quantile_columns(per_target[column], count)
        for label, values in zip(("p50", "p95", "p99"), quantiles, strict=False):
            columns[f"{name}_{label}_ms"] = np.asarray(values, dtype=float)
    total_cost = per_target["total_cost"].to_numpy(dtype=float, na_value=np.nan)
    columns["cost_per_call"] = total_cost / units
    columns["total_cost"] = total_cost
    columns["scored"] = per_target["scored"].to_numpy(dtype="int64")

    item_targets = items["target"].to_numpy(dtype=object)
    item_values = items["item_quality"].to_numpy(dtype=float, na_value=np.nan)
    weights = items["items"].to_numpy(dtype=np.int64) if weighted else None
    rng = np.random.default_rng(seed)
    item_counts, lows, highs = [], [], []
    for target in columns["target"]:  # type: ignore[attr-defined]
        rows = item_targets == target
        values = item_values[rows]
        if weights is not None:
            values = np.repeat(values, weights[rows])
        ci = bootstrap_mean_ci(
            values, confidence=confidence, n_boot=n_boot, rng=rng, method=bootstrap
        )
        item_counts.append(ci.n)
        lows.append(ci.low)
        highs.append(ci.high)
    columns["items"] = np.asarray(item_counts, dtype="int64")
    columns["quality_mean"] = per_target["quality_mean"].to_numpy(dtype=float, na_value=np.nan)
    columns["quality_ci_low"] = np.asarray(lows, dtype=float)
    columns["quality_ci_high"] = np.asarray(highs, dtype=float)

    # A 0/1 scorer is recognised by its values: every score seen is 0 or 1.
    flags = per_target["binary_quality"].dropna()
    binary = bool(len(flags)) and bool(flags.astype(bool).all())
    correct = per_target["quality_sum"].to_numpy(dtype=float, na_value=np.nan)
    if binary:
        columns["cost_per_correct"] = total_cost / np.where(correct > 0, correct, np.nan)
    else:
        columns["cost_per_correct"] = np.full(len(units), np.nan)
    columns["simulated"] = per_target["simulated"].to_numpy(dtype=bool)
    frame = pd.DataFrame(columns, columns=list(SUMMARY_COLUMNS))
    frame.attrs.update(
        {
            "experiment_id": experiment_id,
            "scorer": scorer,
            "confidence": confidence,
            "binary_scorer": binary,
        }
    )
    return frame


def paired_comparison(
    source: LogSource,
    target_a: str,
    target_b: str,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """``target_a`` against ``target_b`` on the items both answered: one row per metric
    (``quality``, ``latency_ms``, ``cost_usd``).

    Per item, each target's value is its mean over repetitions (quality: the scored units;
    latency: logical latency of the units that ended ok; cost: everything the unit spent).
    ``diff`` = mean(a - b) over the items with a value for both (``n_items``), with a paired
    percentile bootstrap interval (the same resampled items for both targets; differences
    with few distinct values are resampled by counting, and at least 2,000 spread-out ones
    get the bootstrap distribution's quantiles computed, as in `target_summary`). ``wins`` /
    ``ties`` / ``losses`` count items where a is better / equal / worse than b: higher is
    better for quality, lower for latency and cost.
    """
    with fresh_rollups(source) as rollups:
        if scorer is None:
            scorer = default_scorer(rollups.read, experiment_id)
        columns = paired_items(rollups, target_a, target_b, experiment_id, scorer)
    return _paired_columns_frame(
        columns,
        target_a,
        target_b,
        experiment_id=experiment_id,
        scorer=scorer,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        bootstrap="auto",
    )


_PAIRED_METRICS = (("quality", True), ("latency_ms", False), ("cost_usd", False))


def paired_frame(
    per_item: pd.DataFrame,
    target_a: str,
    target_b: str,
    *,
    experiment_id: str | None,
    scorer: str | None,
    confidence: float,
    n_boot: int,
    seed: int,
    bootstrap: BootstrapMethod = "auto",
) -> pd.DataFrame:
    """`paired_comparison`'s frame from the per-(target, item) table of the two targets;
    ``bootstrap`` as for `summary_frame`."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    key = ["experiment_id", "item_id"]
    a = per_item[per_item["target"] == target_a]
    b = per_item[per_item["target"] == target_b]
    # Sorted so the seeded resampling sees items in a fixed order.
    joined = a.merge(b, on=key, how="inner", suffixes=("_a", "_b")).sort_values(key)
    columns = {
        f"{metric}_{side}": joined[f"{metric}_{side}"].astype(float).to_numpy()
        for metric, _ in _PAIRED_METRICS
        for side in ("a", "b")
    }
    # Every joined item has units of both targets; a target with none has no item at all.
    columns["units_a"] = np.full(len(joined), 1.0)
    columns["units_b"] = np.full(len(joined), 1.0)
    present = set(per_item["target"].unique())  # not per row: arrow strings iterate slowly
    return _paired_columns_frame(
        columns,
        target_a,
        target_b,
        experiment_id=experiment_id,
        scorer=scorer,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        bootstrap=bootstrap,
        present=(target_a in present, target_b in present),
    )


def _paired_columns_frame(
    columns: dict[str, np.ndarray],
    target_a: str,
    target_b: str,
    *,
    experiment_id: str | None,
    scorer: str | None,
    confidence: float,
    n_boot: int,
    seed: int,
    bootstrap: BootstrapMethod,
    present: tuple[bool, bool] | None = None,
) -> pd.DataFrame:
    """The frame from per-item columns in a fixed item order (`_rolled.paired_items`):
    the items with units of both targets are compared, per metric those where both have a
    value. ``present`` says whether each target has units at all (default: from the unit
    counts)."""
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
    import numpy as np
    import pandas as pd

    units_a, units_b = columns["units_a"], columns["units_b"]
    if present is None:
        present = (bool((units_a > 0).any()), bool((units_b > 0).any()))
    missing = [t for t, there in zip((target_a, target_b), present, strict=True) if not there]
    if missing:
        raise ValueError(
            f"no units for target(s) {', '.join(map(repr, missing))}"
            + (f" in experiment {experiment_id!r}" if experiment_id else "")
            + "; list the targets with target_summary(...)['target']"
        )
    both = (units_a > 0) & (units_b > 0)
    rng = np.random.default_rng(seed)
    rows = []
    for metric, higher_is_better in _PAIRED_METRICS:
        a, b = columns[f"{metric}_a"][both], columns[f"{metric}_b"][both]
        keep = ~(np.isnan(a) | np.isnan(b))
        pair = np.column_stack((a[keep], b[keep]))
        rows.append(_paired_row(metric, pair, higher_is_better, confidence, n_boot, rng, bootstrap))
    frame = pd.DataFrame(rows)
    frame.insert(1, "target_a", target_a)
    frame.insert(2, "target_b", target_b)
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer, "confidence": confidence})
    return frame


def _paired_row(
    metric: str,
    pair: np.ndarray,
    higher_is_better: bool,
    confidence: float,
    n_boot: int,
    rng: np.random.Generator,
    bootstrap: BootstrapMethod = "indices",
) -> dict[str, object]:
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    values = np.asarray(pair, dtype=float).reshape(-1, 2)
    n = len(values)
    row: dict[str, object] = {"metric": metric, "n_items": n}
    if n == 0:
        nan = float("nan")
        return row | {
            "mean_a": nan,
            "mean_b": nan,
            "diff": nan,
            "ci_low": nan,
            "ci_high": nan,
            "wins": 0,
            "ties": 0,
            "losses": 0,
        }
    diffs = values[:, 0] - values[:, 1]
    if n == 1:
        low = high = float(diffs[0])
    else:
        low, high = bootstrap_interval(
            diffs, confidence=confidence, n_boot=n_boot, rng=rng, method=bootstrap
        )
    better = diffs > 0 if higher_is_better else diffs < 0
    worse = diffs < 0 if higher_is_better else diffs > 0
    return row | {
        "mean_a": float(values[:, 0].mean()),
        "mean_b": float(values[:, 1].mean()),
        "diff": float(diffs.mean()),
        "ci_low": low,
        "ci_high": high,
        "wins": int(better.sum()),
        "ties": int((diffs == 0).sum()),
        "losses": int(worse.sum()),
    }


def _quantile_columns(column: pd.Series, count: int) -> list[list[float]]:
    """Split a column of quantile lists (NULL, read as None/NaN/NA, where there were no
    values) into ``count`` float columns."""
    nan = float("nan")
    rows = [
        [nan if q is None else float(q) for q in value]
        if hasattr(value, "__len__") and not isinstance(value, str)
        else [nan] * count
        for value in column
    ]
    return [[row[i] for row in rows] for i in range(count)]
