"""Analytics over the call log, computed in SQL, returned as pandas DataFrames.

Every function takes a `CallLog` (flushed first) or a DuckDB connection, such as the one
`CallLog.snapshot` returns, and the same optional filters: ``experiment_id`` and ``since``
(a datetime, or a timedelta meaning "that long ago"; naive datetimes are UTC).

Rows are attempts: a call retried twice counts three times, which is what latency, error
and cost figures should see (every attempt took time and may have cost money).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.calllog import CallLog
from aigw_lab.store.records import CALL_COLUMNS

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["summary_by_model", "errors_by_type", "cost_by"]


def summary_by_model(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """One row per provider and requested model: calls, errors, error rate, latency and
    time-to-first-token percentiles (ms), token totals and cost.

    Latency percentiles are over successful attempts (a timeout's duration says more about
    the timeout setting than about the model; errors have their own columns). Time to first
    token is over successful *streamed* attempts, the only ones where it is observed apart
    from the total; ``streamed_calls`` says how many that was.

    ``cost_usd`` sums the known costs only; ``cost_known_calls`` says how many rows had one,
    so a partly unpriced model is visible rather than looking cheap. ``simulated`` is true
    when any row of the group came from a simulated provider.
    """
    where, params = _filters(experiment_id, since)
    return _run(
        log,
        f"""
        SELECT
            provider_name,
            request_model,
            count(*) AS calls,
            count(*) FILTER (WHERE status = 'error') AS errors,
            count(*) FILTER (WHERE status = 'error') / count(*) AS error_rate,
            count(*) FILTER (WHERE cache_status = 'hit') AS cache_hits,
            quantile_cont(latency_ms, 0.50) FILTER (WHERE status = 'ok') AS latency_p50_ms,
            quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok') AS latency_p95_ms,
            quantile_cont(latency_ms, 0.99) FILTER (WHERE status = 'ok') AS latency_p99_ms,
            count(*) FILTER (WHERE status = 'ok' AND stream) AS streamed_calls,
            quantile_cont(ttft_ms, 0.50) FILTER (WHERE status = 'ok' AND stream) AS ttft_p50_ms,
            quantile_cont(ttft_ms, 0.95) FILTER (WHERE status = 'ok' AND stream) AS ttft_p95_ms,
            sum(input_tokens) AS input_tokens,
            sum(output_tokens) AS output_tokens,
            sum(cost_usd) AS cost_usd,
            count(cost_usd) AS cost_known_calls,
            coalesce(bool_or(simulated), false) AS simulated
        FROM calls
        {where}
        GROUP BY provider_name, request_model
        ORDER BY provider_name, request_model
        """,
        params,
    )


def errors_by_type(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Failed attempts grouped by error type, provider and model, most frequent first, with
    the HTTP statuses seen, first and last occurrence and the latest message."""
    where, params = _filters(experiment_id, since, "status = 'error'")
    return _run(
        log,
        f"""
        SELECT
            error_type,
            provider_name,
            request_model,
            count(*) AS errors,
            list_sort(
                coalesce(list(DISTINCT http_status_code) FILTER (http_status_code IS NOT NULL), [])
            ) AS http_status_codes,
            min("timestamp") AS first_seen,
            max("timestamp") AS last_seen,
            arg_max(error_message, "timestamp") AS last_message
        FROM calls
        {where}
        GROUP BY error_type, provider_name, request_model
        ORDER BY errors DESC, error_type, provider_name, request_model
        """,
        params,
    )


def cost_by(
    log: CallLog | duckdb.DuckDBPyConnection,
    by: Sequence[str] = ("provider_name", "request_model"),
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens grouped by any ``calls`` columns (``by``), most expensive first.

    ``cost_known_calls`` counts the rows whose cost is known; ``cost_per_call_usd`` averages
    over those rows only.
    """
    if isinstance(by, str):
        by = (by,)
    unknown = [column for column in by if column not in CALL_COLUMNS]
    if unknown or not by:
        raise StoreError(
            f"cost_by: cannot group by {unknown or 'nothing'}",
            hint=f"use one or more columns of the calls table: {', '.join(CALL_COLUMNS)}",
        )
    keys = ", ".join(f'"{column}"' for column in by)
    where, params = _filters(experiment_id, since)
    return _run(
        log,
        f"""
        SELECT
            {keys},
            count(*) AS calls,
            sum(cost_usd) AS cost_usd,
            count(cost_usd) AS cost_known_calls,
            avg(cost_usd) AS cost_per_call_usd,
            sum(input_tokens) AS input_tokens,
            sum(output_tokens) AS output_tokens
        FROM calls
        {where}
        GROUP BY {keys}
        ORDER BY cost_usd DESC NULLS LAST, {keys}
        """,
        params,
    )


def _filters(
    experiment_id: str | None, since: datetime | timedelta | None, *always: str
) -> tuple[str, list[Any]]:
    clauses = list(always)
    params: list[Any] = []
    if experiment_id is not None:
        clauses.append("experiment_id = ?")
        params.append(experiment_id)
    if since is not None:
        if isinstance(since, timedelta):
            since = datetime.now(UTC) - since
        elif since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        clauses.append('"timestamp" >= ?')
        params.append(since)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _run(source: Any, sql: str, params: list[Any]) -> pd.DataFrame:
    if isinstance(source, CallLog):
        return source.query(sql, params)
    return source.execute(sql, params).df()
