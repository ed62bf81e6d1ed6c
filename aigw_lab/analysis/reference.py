"""Today's analysis SQL, over every call row, kept as the reference the rollups are checked
against (tests/analysis/test_rollups.py) and for measuring them (bench/bench_analysis_scale.py).

Each function returns exactly the frame of its public namesake (`target_summary`,
`paired_comparison`, `cost_over_time`) without reading or writing the rollups: the unit SQL
(`aigw_lab.analysis._source.units_cte`) runs over the whole log on every call. Their
bootstrap intervals are drawn as every earlier version drew them (``bootstrap="indices"``);
``bootstrap="auto"`` draws them as the public functions now do, for exact comparisons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from aigw_lab.analysis._source import calls_filter, default_scorer, open_source, units_cte
from aigw_lab.analysis.comparison import paired_frame, summary_frame
from aigw_lab.errors import StoreError
from aigw_lab.store.records import CALL_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.analysis._source import LogSource
    from aigw_lab.analysis.stats import BootstrapMethod

__all__ = ["reference_target_summary", "reference_paired_comparison", "reference_cost_over_time"]

# Per-target and per-item aggregates in one statement over the materialised units, so the
# (expensive) trace and unit aggregation runs once. Latency and TTFT percentiles are over
# units that ended ok: a failure's duration describes the timeout, not the target.
_SUMMARY_SQL = """
SELECT
    'target' AS grain,
    target,
    count(*) AS units,
    count(*) FILTER (WHERE status = 'error') AS errors,
    count(*) FILTER (WHERE fell_back) AS fallbacks,
    count(*) FILTER (WHERE cache_status = 'hit') AS cache_hits,
    avg(attempts) AS attempts_per_unit,
    quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE status = 'ok') AS latency_q,
    quantile_cont(ttft_ms, [0.5, 0.95]) FILTER (WHERE status = 'ok') AS ttft_q,
    sum(spent_usd) AS total_cost,
    count(quality) AS scored,
    avg(quality) AS quality_mean,
    sum(quality) AS quality_sum,
    bool_and(quality IN (0.0, 1.0)) FILTER (WHERE quality IS NOT NULL) AS binary_quality,
    coalesce(bool_or(simulated), false) AS simulated
FROM units
GROUP BY target
UNION ALL BY NAME
SELECT 'item' AS grain, target, experiment_id, item_id, avg(quality) AS item_quality
FROM units
WHERE quality IS NOT NULL
GROUP BY target, experiment_id, item_id
"""


def reference_target_summary(
    source: LogSource,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    bootstrap: BootstrapMethod = "indices",
) -> pd.DataFrame:
    """`target_summary` from every call row (exact percentiles)."""
    with open_source(source) as read:
        if scorer is None:
            scorer = default_scorer(read, experiment_id)
        cte, params = units_cte(experiment_id, scorer)
        raw = read(cte + _SUMMARY_SQL, params)
    return summary_frame(
        raw[raw["grain"] == "target"],
        raw[raw["grain"] == "item"],
        experiment_id=experiment_id,
        scorer=scorer,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        bootstrap=bootstrap,
    )


def reference_paired_comparison(
    source: LogSource,
    target_a: str,
    target_b: str,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    bootstrap: BootstrapMethod = "indices",
) -> pd.DataFrame:
    """`paired_comparison` from every call row."""
    with open_source(source) as read:
        if scorer is None:
            scorer = default_scorer(read, experiment_id)
        cte, params = units_cte(experiment_id, scorer, targets=(target_a, target_b))
        per_item = read(
            cte
            + """
            SELECT target, experiment_id, item_id,
                   avg(quality) AS quality,
                   avg(latency_ms) FILTER (WHERE status = 'ok') AS latency_ms,
                   avg(spent_usd) AS cost_usd
            FROM units
            WHERE target IN (?, ?)
            GROUP BY target, experiment_id, item_id
            """,
            [*params, target_a, target_b],
        )
    return paired_frame(
        per_item,
        target_a,
        target_b,
        experiment_id=experiment_id,
        scorer=scorer,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        bootstrap=bootstrap,
    )


def reference_cost_over_time(
    source: LogSource,
    *,
    freq: Literal["second", "minute", "hour", "day"] = "hour",
    by: str = "target",
    experiment_id: str | None = None,
) -> pd.DataFrame:
    """`cost_over_time` from every call row (also what it runs for ``by`` other than
    ``"target"``, which the rollup does not keep)."""
    if freq not in ("second", "minute", "hour", "day"):
        raise ValueError(f"freq must be 'second', 'minute', 'hour' or 'day', got {freq!r}")
    if by == "target":
        group = "coalesce(target, provider_name || '/' || request_model)"
    elif by in CALL_COLUMNS:
        group = f'"{by}"'
    else:
        raise StoreError(
            f"cost_over_time: cannot group by {by!r}",
            hint=f"use 'target' or a column of the calls table: {', '.join(CALL_COLUMNS)}",
        )
    where, params = calls_filter(experiment_id)
    with open_source(source) as read:
        frame = read(
            f"""
            WITH buckets AS (
                SELECT
                    date_trunc('{freq}', "timestamp" AT TIME ZONE 'UTC') AS bucket,
                    {group} AS "group",
                    sum(cost_usd) AS cost_usd,
                    count(*) AS calls
                FROM calls
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
    frame = frame.rename(columns={"group": by})
    frame.attrs.update({"freq": freq, "by": by, "experiment_id": experiment_id})
    return frame
