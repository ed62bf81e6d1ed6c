"""The call log as tidy frames for figures and widgets: one row per unit, latency and error
breakdowns per target, cost over time, and the experiments with their runs.

Like `aigw_lab.analysis.comparison`, everything is aggregated in DuckDB; what comes back is
small, except `unit_frame`, which is one row per unit by design.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from aigw_lab.analysis._rolled import cost_buckets
from aigw_lab.analysis._source import calls_filter, default_scorer, open_source, units_cte
from aigw_lab.analysis.reference import reference_cost_over_time
from aigw_lab.analysis.rollups import fresh_rollups

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.analysis._source import LogSource, Reader

__all__ = [
    "unit_frame",
    "latency_frame",
    "errors_by_target",
    "cost_over_time",
    "experiments_frame",
    "latest_experiment",
]

_UNIT_COLUMNS = (
    "experiment_id, target, item_id, repetition, trace_id, call_id, status, error_type, "
    "cache_status, latency_ms, ttft_ms, cost_usd, spent_usd, attempts, fell_back, traces, "
    "started_at, simulated, quality"
)


def unit_frame(
    source: LogSource,
    experiment_id: str | None = None,
    *,
    scorer: str | None = None,
    max_per_target: int | None = None,
) -> pd.DataFrame:
    """One row per experiment unit (per trace for calls outside an experiment): its result
    trace's status and error type, logical latency and TTFT (ms), cost (``cost_usd`` of the
    result trace, ``spent_usd`` of all its traces), attempts, whether it fell back, and its
    quality under ``scorer`` (default: the scorer with the most scores).

    ``max_per_target`` keeps at most that many units per target: a deterministic sample for
    plotting a huge log. Units are pre-selected by a hash of their key (so whole units, and
    a few times more than needed, are kept before any aggregation), then the first ones in
    (experiment, item, repetition) order are returned.
    """
    order = "experiment_id, item_id, repetition"
    with open_source(source) as read:
        if scorer is None:
            scorer = default_scorer(read, experiment_id)
        per_million = None
        if max_per_target is not None:
            per_million = _sample_rate(read, experiment_id, int(max_per_target))
        cte, params = units_cte(experiment_id, scorer, sample_per_million=per_million)
        sample = ""
        if max_per_target is not None:
            sample = f"QUALIFY row_number() OVER (PARTITION BY target ORDER BY {order}) <= ?"
            params = [*params, int(max_per_target)]
        frame = read(
            f"{cte} SELECT {_UNIT_COLUMNS} FROM units {sample} ORDER BY target, {order}",
            params,
        )
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer})
    return frame


def _sample_rate(read: Reader, experiment_id: str | None, wanted: int) -> int | None:
    """Per-million hash rate that keeps about three times ``wanted`` rows of the smallest
    target (None: keep everything, the log is small enough)."""
    where, params = calls_filter(experiment_id)
    counts = read(
        f"SELECT count(*) AS n FROM calls {where} "
        "GROUP BY coalesce(target, provider_name || '/' || request_model)",
        params,
    )
    if counts.empty:
        return None
    smallest = int(counts["n"].min())
    if smallest <= 3 * wanted:
        return None
    return min(1_000_000, math.ceil(3 * wanted * 1_000_000 / smallest))


def latency_frame(source: LogSource, *, experiment_id: str | None = None) -> pd.DataFrame:
    """Per target: logical latency of the units that ended ok (count, mean, p50/p90/p95/p99,
    max, in ms), TTFT p50/p95, and the mean attempts per unit."""
    with open_source(source) as read:
        cte, params = units_cte(experiment_id, None)
        return read(
            cte
            + """
            SELECT
                target,
                count(*) AS ok_units,
                avg(latency_ms) AS latency_mean_ms,
                quantile_cont(latency_ms, 0.50) AS latency_p50_ms,
                quantile_cont(latency_ms, 0.90) AS latency_p90_ms,
                quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
                quantile_cont(latency_ms, 0.99) AS latency_p99_ms,
                max(latency_ms) AS latency_max_ms,
                quantile_cont(ttft_ms, 0.50) AS ttft_p50_ms,
                quantile_cont(ttft_ms, 0.95) AS ttft_p95_ms,
                avg(attempts) AS attempts_per_unit
            FROM units
            WHERE status = 'ok'
            GROUP BY target
            ORDER BY target
            """,
            params,
        )


def errors_by_target(source: LogSource, *, experiment_id: str | None = None) -> pd.DataFrame:
    """Failures per target and error type: ``failed_attempts`` counts every failed attempt
    (including ones a retry or fallback recovered), ``failed_units`` the units whose result
    is that error, ``unit_share`` their share of the target's units."""
    with open_source(source) as read:
        cte, params = units_cte(experiment_id, None)
        where, attempt_params = calls_filter(experiment_id)
        failed = f"{where} AND status = 'error'" if where else "WHERE status = 'error'"
        return read(
            cte
            + f"""
            , per_unit AS (
                SELECT target, coalesce(error_type, 'unknown') AS error_type,
                       count(*) AS failed_units
                FROM units WHERE status = 'error' GROUP BY ALL
            ),
            unit_totals AS (SELECT target, count(*) AS units FROM units GROUP BY target),
            -- Every trace with a failed attempt, labelled like its unit (recovered and
            -- superseded traces included).
            failed_traces AS (
                SELECT trace_id,
                       coalesce(any_value(target),
                                arg_min(provider_name || '/' || request_model, attempt))
                           AS target
                FROM calls
                WHERE trace_id IN (SELECT trace_id FROM calls {failed})
                GROUP BY trace_id
            ),
            per_attempt AS (
                SELECT t.target, coalesce(c.error_type, 'unknown') AS error_type,
                       count(*) AS failed_attempts
                FROM calls c JOIN failed_traces t USING (trace_id)
                WHERE c.status = 'error'
                GROUP BY ALL
            )
            SELECT
                target,
                error_type,
                coalesce(a.failed_attempts, 0) AS failed_attempts,
                coalesce(u.failed_units, 0) AS failed_units,
                coalesce(u.failed_units, 0) / t.units AS unit_share
            FROM per_attempt a
            FULL OUTER JOIN per_unit u USING (target, error_type)
            JOIN unit_totals t USING (target)
            ORDER BY target, failed_attempts DESC, error_type
            """,
            [*params, *attempt_params],
        )


def cost_over_time(
    source: LogSource,
    *,
    freq: Literal["second", "minute", "hour", "day"] = "hour",
    by: str = "target",
    experiment_id: str | None = None,
) -> pd.DataFrame:
    """Money spent per time bucket (``freq``: ``"second"``, ``"minute"``, ``"hour"`` or
    ``"day"``, UTC) and per ``by``
    (``"target"``, or any ``calls`` column): ``cost_usd``, ``calls`` (attempts: each one may
    cost) and ``cumulative_cost_usd`` per group. Calls outside an experiment have the target
    ``provider/model``.

    ``by="target"`` reads the per-second cost rollup (`aigw_lab.analysis.rollups`); any
    other column aggregates every call row (`aigw_lab.analysis.reference`)."""
    if by != "target" or freq not in ("second", "minute", "hour", "day"):
        return reference_cost_over_time(source, freq=freq, by=by, experiment_id=experiment_id)
    with fresh_rollups(source) as rollups:
        frame = cost_buckets(rollups, freq, experiment_id)
    frame = frame.rename(columns={"group": by})
    frame.attrs.update({"freq": freq, "by": by, "experiment_id": experiment_id})
    return frame


def experiments_frame(source: LogSource) -> pd.DataFrame:
    """One row per experiment, newest first: its definition (name, dataset, repetitions,
    created_at), its runs (count, latest status, planned/completed/failed over all runs) and
    what the log holds for it (calls, targets, first and last call). Experiments that only
    appear in the calls (no ``experiments`` row) are listed too, with the definition NULL."""
    with open_source(source) as read:
        return read(
            """
            WITH logged AS (
                SELECT experiment_id, count(*) AS calls, count(DISTINCT target) AS targets,
                       min("timestamp") AS first_call, max("timestamp") AS last_call
                FROM calls WHERE experiment_id IS NOT NULL GROUP BY experiment_id
            ),
            runs AS (
                SELECT experiment_id, count(*) AS runs,
                       arg_max(status, started_at) AS last_run_status,
                       sum(planned) AS planned, sum(completed) AS completed,
                       sum(failed) AS failed, sum(cost_usd) AS run_cost_usd
                FROM experiment_runs GROUP BY experiment_id
            ),
            defined AS (
                SELECT experiment_id, arg_max(name, created_at) AS name,
                       arg_max(dataset_name, created_at) AS dataset_name,
                       arg_max(repetitions, created_at) AS repetitions,
                       max(created_at) AS created_at
                FROM experiments GROUP BY experiment_id
            )
            SELECT
                experiment_id, d.name, d.dataset_name, d.repetitions, d.created_at,
                coalesce(r.runs, 0) AS runs, r.last_run_status, r.planned, r.completed,
                r.failed, r.run_cost_usd,
                coalesce(l.calls, 0) AS calls, coalesce(l.targets, 0) AS targets,
                l.first_call, l.last_call
            FROM defined d
            FULL OUTER JOIN logged l USING (experiment_id)
            LEFT JOIN runs r USING (experiment_id)
            ORDER BY greatest(d.created_at, l.last_call) DESC NULLS LAST, experiment_id
            """
        )


def latest_experiment(source: LogSource) -> str | None:
    """The experiment with the newest definition or call, or None when the log has none."""
    frame = experiments_frame(source)
    return None if frame.empty else str(frame["experiment_id"].iloc[0])
