"""Where the money went: cost reports over the call log, computed in SQL, as pandas DataFrames.

    from aigw_lab.store import cost_reports
    cost_reports.by_model(gateway.log, since=timedelta(days=7))
    cost_reports.by_tag(gateway.log, "team")
    cost_reports.by_day(gateway.log, experiment_id="exp-42")

Every report has the same figures per group: ``calls`` (rows, i.e. attempts, cache hits and
refusals included), ``cost_usd`` (the sum of known costs; NULL when none is known),
``cost_known_calls`` (rows with a known cost, so a partly unpriced group is visible rather
than looking cheap), ``input_tokens``, ``output_tokens`` and ``total_tokens``. Groups come
most expensive first, except `by_day`, which is in date order. A NULL key (calls without a
user, a tenant or the tag) is a group of its own.

Every function takes a `CallLog` (flushed first) or a DuckDB connection, such as the one
`CallLog.snapshot` returns, and the optional filters of `aigw_lab.store.queries`:
``experiment_id`` and ``since`` (a datetime, or a timedelta meaning "that long ago"; naive
datetimes are UTC).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aigw_lab.errors import StoreError
from aigw_lab.store.queries import _filters, _run

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from aigw_lab.store.calllog import CallLog

__all__ = ["by_provider", "by_model", "by_user", "by_tenant", "by_tag", "by_day"]

_FIGURES = """
    count(*) AS calls,
    sum(cost_usd) AS cost_usd,
    count(cost_usd) AS cost_known_calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS total_tokens
"""


def by_provider(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens per provider (``provider_name``)."""
    return _report(log, [("provider_name", "provider_name")], [], experiment_id, since)


def by_model(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens per provider and requested model."""
    keys = [("provider_name", "provider_name"), ("request_model", "request_model")]
    return _report(log, keys, [], experiment_id, since)


def by_user(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens per user (the request's ``user``, column ``user_id``)."""
    return _report(log, [("user_id", "user_id")], [], experiment_id, since)


def by_tenant(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens per tenant (the request's ``tenant``, column ``tenant_id``)."""
    return _report(log, [("tenant_id", "tenant_id")], [], experiment_id, since)


def by_tag(
    log: CallLog | duckdb.DuckDBPyConnection,
    key: str,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens per value of the tag ``key`` (from ``tags_json``); the group column
    is named after the tag, and calls without that tag form the NULL group."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"by_tag: tag key {key!r} is invalid", hint="pass a tag name, e.g. 'team'")
    # A quoted JSON path member, so keys with dots or spaces work; the path is a parameter.
    path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _report(
        log,
        [("json_extract_string(tags_json, ?)", key)],
        [path],
        experiment_id,
        since,
    )


def by_day(
    log: CallLog | duckdb.DuckDBPyConnection,
    *,
    experiment_id: str | None = None,
    since: datetime | timedelta | None = None,
) -> pd.DataFrame:
    """Cost and tokens per calendar day (UTC, whatever the session's time zone), in date
    order; ``day`` is the date (pandas shows it as a timestamp at midnight)."""
    return _report(
        log,
        [("CAST(timezone('UTC', \"timestamp\") AS DATE)", "day")],
        [],
        experiment_id,
        since,
        order_by_key=True,
    )


def _report(
    log: CallLog | duckdb.DuckDBPyConnection,
    keys: list[tuple[str, str]],
    key_params: list[str],
    experiment_id: str | None,
    since: datetime | timedelta | None,
    *,
    order_by_key: bool = False,
) -> pd.DataFrame:
    """Group ``calls`` by ``keys`` (SQL expression, column name) and compute the figures.

    ``key_params`` are the parameters of the key expressions; they appear in the SELECT
    list, before the WHERE clause's own parameters.
    """
    where, params = _filters(experiment_id, since)
    select = ", ".join(f'{expr} AS "{_quoted(name)}"' for expr, name in keys)
    positions = ", ".join(str(i) for i in range(1, len(keys) + 1))
    order = ", ".join(f"{i} NULLS LAST" for i in range(1, len(keys) + 1))
    if not order_by_key:
        order = f"cost_usd DESC NULLS LAST, {order}"
    sql = f"""
        SELECT {select}, {_FIGURES}
        FROM calls
        {where}
        GROUP BY {positions}
        ORDER BY {order}
    """
    return _run(log, sql, [*key_params, *params])


def _quoted(name: str) -> str:
    return name.replace('"', '""')
