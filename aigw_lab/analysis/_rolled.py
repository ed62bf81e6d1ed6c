"""The per-target, per-item and per-time-bucket tables the analyses need, read from fresh
rollups (`aigw_lab.analysis.rollups`) in the shapes the reference SQL produces, so the
public functions build the same frames from either.

Percentiles: exact (``quantile_cont`` over the rolled-up units) when the units they are over
number at most ``exact_limit``; above it they are read from the fixed log buckets, within
`HISTOGRAM_RELATIVE_ERROR` of the exact value (docs/analysis.md, "At scale").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.rollups import bucket_value
from aigw_lab.analysis.stats import _counting_pays

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aigw_lab.analysis.rollups import Rollups

__all__ = ["EXACT_QUANTILE_LIMIT", "summary_tables", "paired_items", "cost_buckets"]

#: Up to this many ok units in a summary, percentiles are exact; above, from the buckets.
EXACT_QUANTILE_LIMIT = 200_000


def _filter(experiment_id: str | None, *more: str) -> tuple[str, list[Any]]:
    clauses = [*more]
    params: list[Any] = []
    if experiment_id is not None:
        clauses.append("experiment_id = ?")
        params.append(experiment_id)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def summary_tables(
    rollups: Rollups,
    experiment_id: str | None,
    scorer: str | None,
    *,
    exact_limit: int = EXACT_QUANTILE_LIMIT,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per target, per item) as the reference's summary SQL returns them, except that the
    per-item table may come as groups of items with the same mean (`_quality_tables`)."""
    read, s = rollups.read, rollups.schema
    where, params = _filter(experiment_id)
    per_target = read(
        f"""
        SELECT
            target,
            count(*) AS units,
            count(*) FILTER (WHERE failed) AS errors,
            count(*) FILTER (WHERE fell_back) AS fallbacks,
            count(*) FILTER (WHERE cache_hit) AS cache_hits,
            avg(attempts) AS attempts_per_unit,
            count(*) FILTER (WHERE ok) AS ok_units,
            sum(spent_usd) AS total_cost,
            coalesce(bool_or(simulated), false) AS simulated
        FROM {s}.rollup_units
        {where}
        GROUP BY target
        """,
        params,
    )
    targets = per_target["target"].tolist()
    ok_units = int(per_target["ok_units"].sum()) if len(per_target) else 0
    if ok_units <= exact_limit:
        where_ok, params_ok = _filter(experiment_id, "ok")
        exact = read(
            f"""
            SELECT target,
                   quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS latency_q,
                   quantile_cont(ttft_ms, [0.5, 0.95]) AS ttft_q
            FROM {s}.rollup_units {where_ok} GROUP BY target
            """,
            params_ok,
        )
        for column in ("latency_q", "ttft_q"):
            by_target = dict(zip(exact["target"].tolist(), exact[column].tolist(), strict=True))
            per_target[column] = [by_target.get(t) for t in targets]
    else:
        per_target["latency_q"] = _histogram_quantiles(
            rollups, experiment_id, "latency_bucket", targets, (0.5, 0.95, 0.99)
        )
        per_target["ttft_q"] = _histogram_quantiles(
            rollups, experiment_id, "ttft_bucket", targets, (0.5, 0.95)
        )
    quality, items = _quality_tables(rollups, experiment_id, scorer)
    nan = float("nan")
    for i, column in enumerate(("scored", "quality_sum", "quality_mean", "binary_quality")):
        fill = 0 if column == "scored" else None if column == "binary_quality" else nan
        per_target[column] = [quality.get(t, (0, nan, nan, None))[i] for t in targets]
        if column == "scored":
            per_target[column] = per_target[column].astype("int64")
        elif fill is not None:
            per_target[column] = per_target[column].astype(float)
    return per_target, items


def _quality_tables(
    rollups: Rollups, experiment_id: str | None, scorer: str | None
) -> tuple[dict[str, tuple[int, float, float, bool | None]], pd.DataFrame]:
    """(per target: scored, quality sum, quality mean, whether every score is 0 or 1;
    per-item quality) in one pass over the scores: each item's count, sum and mean, then
    grouped by (target, item mean) and by target alone. When every target's item means
    take few distinct values (a 0/1 or few-level scorer) the items come back as those
    groups, each row standing for ``items`` items (what the counted bootstrap needs; no
    per-item rows cross to pandas); otherwise the per-item rows are read as well."""
    # lazy: pandas loads in ~0.3 s; only building a frame needs it
    import pandas as pd

    read, s = rollups.read, rollups.schema
    where_s, params_s = _filter(experiment_id, "scorer = ?")
    # One experiment: its id is the same on every row, so (target, item) is the key.
    key = "target, item_id" if experiment_id is not None else "target, experiment_id, item_id"
    item_means = f"""
        SELECT {key},
               count(value) AS scored, sum(value) AS quality_sum,
               avg(value) AS item_quality,
               bool_and(value IN (0.0, 1.0)) FILTER (WHERE value IS NOT NULL) AS binary_quality
        FROM {s}.rollup_scores {where_s}
        GROUP BY {key}
    """
    groups = read(
        f"""
        SELECT target, item_quality, grouping(item_quality) = 1 AS whole_target,
               count(*) AS items, sum(scored) AS scored, sum(quality_sum) AS quality_sum,
               bool_and(binary_quality) AS binary_quality
        FROM ({item_means}) GROUP BY GROUPING SETS ((target, item_quality), (target))
        """,
        [scorer, *params_s],
    )
    whole = groups["whole_target"].to_numpy(dtype=bool)
    quality: dict[str, tuple[int, float, float, bool | None]] = {}
    totals = groups[whole]
    for target, scored, total, binary in zip(
        totals["target"].tolist(),
        totals["scored"].tolist(),
        totals["quality_sum"].tolist(),
        totals["binary_quality"].tolist(),
        strict=True,
    ):
        scored = int(scored)
        total = float("nan") if scored == 0 or _missing(total) else float(total)
        mean = total / scored if scored > 0 else float("nan")
        quality[target] = (scored, total, mean, None if _missing(binary) else bool(binary))
    per_mean = groups[~whole]
    scored_items = per_mean[per_mean["item_quality"].notna()]
    counts = scored_items.groupby("target", sort=False)["items"].agg(["sum", "size"])
    if len(counts) and all(map(_counting_pays, counts["sum"], counts["size"])):
        items = scored_items[["target", "item_quality", "items"]].reset_index(drop=True)
        return quality, items
    items = read(
        f"SELECT target, {'?' if experiment_id is not None else 'experiment_id'} AS "
        f"experiment_id, item_id, item_quality FROM ({item_means}) "
        "WHERE item_quality IS NOT NULL",
        [*([experiment_id] if experiment_id is not None else []), scorer, *params_s],
    )
    if items.empty:
        items = pd.DataFrame(columns=["target", "experiment_id", "item_id", "item_quality"])
    return quality, items


def _missing(value: object) -> bool:
    """Whether a value read back from SQL stands for NULL (None, NaN or pandas' NA)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float) and value != value


def _histogram_quantiles(
    rollups: Rollups,
    experiment_id: str | None,
    column: str,
    targets: list[str],
    quantiles: tuple[float, ...],
) -> list[list[float] | None]:
    """Per target (in ``targets``' order), ``quantile_cont``'s interpolation between the
    order statistics, each order statistic stood in for by its bucket's midpoint."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    where, params = _filter(experiment_id, "ok", f"{column} IS NOT NULL")
    counts = rollups.read(
        f"""
        SELECT target, {column} AS bucket, count(*) AS n
        FROM {rollups.schema}.rollup_units {where}
        GROUP BY target, {column}
        ORDER BY target, {column}
        """,
        params,
    )
    # Rows come sorted by target: each target's buckets are one slice.
    names = counts["target"].tolist()
    buckets = counts["bucket"].tolist()
    sizes = counts["n"].to_numpy(dtype=np.int64)
    slices: dict[str, tuple[int, int]] = {}
    for i, name in enumerate(names):
        first, _ = slices.get(name, (i, i))
        slices[name] = (first, i + 1)
    out: list[list[float] | None] = []
    for target in targets:
        if target not in slices:
            out.append(None)
            continue
        first, stop = slices[target]
        values = np.array([bucket_value(int(b)) for b in buckets[first:stop]])
        ends = np.cumsum(sizes[first:stop])  # order statistics < ends[i]
        n = int(ends[-1])
        result = []
        for q in quantiles:
            position = q * (n - 1)
            low, high = int(np.floor(position)), int(np.ceil(position))
            v_low = values[np.searchsorted(ends, low, side="right")]
            v_high = values[np.searchsorted(ends, high, side="right")]
            result.append(float(v_low + (position - low) * (v_high - v_low)))
        out.append(result)
    return out


def paired_items(
    rollups: Rollups, target_a: str, target_b: str, experiment_id: str | None, scorer: str | None
) -> dict[str, np.ndarray]:
    """Per item (experiment, item) that either target has units for, in (experiment, item)
    order: each target's unit count (``units_a``, ``units_b``), mean quality, mean latency
    of the ok units and mean spent (``quality_a``, ``latency_ms_a``, ``cost_usd_a``, and
    ``_b``), NaN where there is none: the reference's per-item table already joined on the
    item, as numeric columns only (no item ids cross to Python)."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    s = rollups.schema
    # One experiment: its id is the same on every row, so the item alone is the key.
    key = "item_id" if experiment_id is not None else "experiment_id, item_id"
    # $1, $2: the targets; $3: the scorer; $4: the experiment.
    where = "WHERE target IN ($1, $2)"
    params = [target_a, target_b, scorer]
    if experiment_id is not None:
        where += " AND experiment_id = $4"
        params.append(experiment_id)
    on = " AND ".join(
        f"u.{k} IS NOT DISTINCT FROM q.{k}" if k == "experiment_id" else f"u.{k} = q.{k}"
        for k in key.split(", ")
    )
    order = ", ".join(f"u.{k} NULLS LAST" for k in key.split(", "))
    frame = rollups.read(
        f"""
        WITH u AS (
            SELECT {key},
                   count(*) FILTER (WHERE target = $1) AS units_a,
                   count(*) FILTER (WHERE target = $2) AS units_b,
                   avg(latency_ms) FILTER (WHERE target = $1 AND ok) AS latency_ms_a,
                   avg(latency_ms) FILTER (WHERE target = $2 AND ok) AS latency_ms_b,
                   avg(spent_usd) FILTER (WHERE target = $1) AS cost_usd_a,
                   avg(spent_usd) FILTER (WHERE target = $2) AS cost_usd_b
            FROM {s}.rollup_units {where}
            GROUP BY {key}
        ),
        q AS (
            SELECT {key},
                   avg(value) FILTER (WHERE target = $1) AS quality_a,
                   avg(value) FILTER (WHERE target = $2) AS quality_b
            FROM {s}.rollup_scores {where} AND scorer = $3
            GROUP BY {key}
        )
        SELECT u.units_a, u.units_b, q.quality_a, q.quality_b, u.latency_ms_a,
               u.latency_ms_b, u.cost_usd_a, u.cost_usd_b
        FROM u LEFT JOIN q ON {on}
        ORDER BY {order}
        """,
        params,
    )
    return {name: frame[name].to_numpy(dtype=float, na_value=np.nan) for name in frame.columns}


def cost_buckets(rollups: Rollups, freq: str, experiment_id: str | None) -> pd.DataFrame:
    """`cost_over_time`'s frame by target, from the per-second cost rollup."""
    where, params = _filter(experiment_id)
    return rollups.read(
        f"""
        WITH buckets AS (
            SELECT
                date_trunc('{freq}', second) AS bucket,
                target AS "group",
                sum(cost_usd) AS cost_usd,
                sum(calls)::BIGINT AS calls
            FROM {rollups.schema}.rollup_costs
            {where}
            GROUP BY ALL
        )
        SELECT bucket, "group", coalesce(cost_usd, 0) AS cost_usd, calls,
               sum(coalesce(cost_usd, 0)) OVER (PARTITION BY "group" ORDER BY bucket)
                   AS cumulative_cost_usd
        FROM buckets
        ORDER BY bucket, "group"
        """,
        params,
    )
