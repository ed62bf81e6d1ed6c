"""Where an analysis reads from: a `CallLog`, a DuckDB connection or a log file's path, all
behind one small reader, plus the SQL that turns call-log rows into experiment units.

The unit SQL is the one place the shared semantics live (docs/analysis.md): a *logical call*
is a trace, its outcome row is its highest attempt; an experiment *unit* is
(experiment_id, target, item_id, repetition) and its result is its latest ok trace, else its
latest trace. Calls made outside an experiment still analyse: their target is
``provider/model`` and each trace is its own unit (and its own "item").
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from aigw_lab.errors import StoreError
from aigw_lab.store.calllog import CallLog

__all__ = ["Reader", "open_source", "units_cte", "calls_filter", "default_scorer"]

if TYPE_CHECKING:
    from typing import TypeAlias

    import duckdb
    import pandas as pd

    #: What every analysis function accepts: a live `CallLog` (flushed first), an open
    #: DuckDB connection (e.g. `CallLog.snapshot`), or the path of a log file, which is
    #: opened as a read-only snapshot so another process may keep writing it.
    LogSource: TypeAlias = "CallLog | duckdb.DuckDBPyConnection | str | os.PathLike[str]"


class Reader(Protocol):
    """Runs one parameterised SQL query and returns its result as a DataFrame."""

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame: ...


@contextmanager
def open_source(source: Any) -> Iterator[Reader]:
    """A `Reader` over ``source`` for the duration of the block. A path is opened as a
    `CallLog.snapshot` and closed afterwards; a `CallLog` or connection is left open."""
    if isinstance(source, CallLog):
        yield source.query
        return
    if isinstance(source, str | os.PathLike):
        conn = CallLog.snapshot(source)
        try:
            yield _connection_reader(conn, where=f"call log {os.fspath(source)}")
        finally:
            conn.close()
        return
    if hasattr(source, "execute"):
        yield _connection_reader(source, where="the call log connection")
        return
    raise TypeError(
        f"cannot analyse a {type(source).__name__}: pass a CallLog, a DuckDB connection or "
        "the path of a call log file"
    )


def _connection_reader(conn: duckdb.DuckDBPyConnection, *, where: str) -> Reader:
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    def read(sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        try:
            return conn.execute(sql, list(params)).df()
        except duckdb.Error as exc:
            raise StoreError(
                f"query on {where} failed: {exc}",
                hint="check that it is an aigw_lab call log of schema version 5 or later "
                "(open it once with CallLog(path) to migrate it)",
            ) from exc

    return read


def calls_filter(experiment_id: str | None) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (and its parameters) selecting one experiment's rows, or all."""
    if experiment_id is None:
        return "", []
    return "WHERE experiment_id = ?", [experiment_id]


# The aggregates of one logical call (trace) over its rows. Every one is a plain value, not a
# struct: struct-valued aggregate states made the 10M-row benchmark several times slower.
# arg_max_null, not arg_max: a NULL error_type or ttft_ms on the outcome row must stay NULL
# rather than be replaced by an earlier attempt's value.
_TRACE_AGGREGATES = """
    arg_max_null(call_id, attempt) AS call_id,
    arg_max_null(status, attempt) AS status,
    arg_max_null(error_type, attempt) AS error_type,
    arg_max_null(cache_status, attempt) AS cache_status,
    arg_max_null(ttft_ms, attempt) AS ttft_ms,
    CASE WHEN count(*) = 1 THEN any_value(latency_ms)
         ELSE max(epoch_us("timestamp") / 1000.0 + latency_ms)
              - min(epoch_us("timestamp")) / 1000.0
    END AS latency_ms,
    sum(cost_usd) AS cost_usd,
    count(*) AS attempts,
    bool_or(fallback_from IS NOT NULL) AS fell_back,
    min("timestamp") AS started_at,
    coalesce(bool_or(simulated), false) AS simulated,
    arg_min(provider_name || '/' || request_model, attempt) FILTER (WHERE target IS NULL)
        AS first_model
"""


def _unit_key(alias: str = "") -> str:
    """A unit's key columns; outside experiments (no item_id) each trace is its own unit."""
    p = f"{alias}." if alias else ""
    return (
        f"{p}experiment_id, {p}target, coalesce({p}item_id, {p}trace_id), "
        f"coalesce({p}repetition, 0)"
    )


_RESULT_COLUMNS = (
    "trace_id",
    "call_id",
    "status",
    "error_type",
    "cache_status",
    "ttft_ms",
    "latency_ms",
    "cost_usd",
    "attempts",
    "fell_back",
    "started_at",
    "simulated",
    "first_model",
)


def units_cte(
    experiment_id: str | None,
    scorer: str | None,
    *,
    sample_per_million: int | None = None,
    targets: Sequence[str] | None = None,
    item_ids: Sequence[str] | None = None,
    calls: str = "calls",
    with_scores: bool = True,
) -> tuple[str, list[Any]]:
    """SQL text ``WITH ... units AS (...)`` (to be followed by a ``SELECT``) and its
    parameters: one row of ``units`` per experiment unit with its result trace's outcome.

    Columns: experiment_id, target, item_id, repetition, trace_id, call_id, status,
    error_type, cache_status, ttft_ms, latency_ms (logical), cost_usd (the result trace's
    logical cost), spent_usd (every trace of the unit), attempts, fell_back, started_at,
    simulated, traces, quality (the latest score by ``scorer`` of the outcome row; NULL when
    unscored or ``scorer`` is None).

    Nearly every unit has one trace, so units are first aggregated straight from the rows
    (one hash aggregation over the log); only the units that turn out to have several traces
    (retried by a resumed run) are aggregated again trace by trace, to pick their result.

    ``sample_per_million`` keeps only units whose key hashes below that many per million: a
    deterministic sample of whole units, taken before any aggregation. ``targets`` skips
    the rows of experiment units of other targets (calls outside experiments, whose target
    is only known after aggregation, are kept: filter ``units`` by target afterwards).
    ``item_ids`` keeps only the rows of those items (an item browser's page, not the log).
    ``calls`` names the relation the rows come from (the rollup refresh passes the rows of
    the units it recomputes); ``with_scores=False`` leaves scores out (``quality`` is NULL
    and ``scorer`` takes no parameter), so the text has no parameter when nothing filters.
    """
    params: list[Any] = []
    clauses: list[tuple[str, str]] = []  # (unqualified, qualified by the alias c)
    if experiment_id is not None:
        clauses.append(("experiment_id = ?", "c.experiment_id = ?"))
        params.append(experiment_id)
    if sample_per_million is not None:
        clauses.append(
            (f"hash({_unit_key()}) % 1000000 < ?", f"hash({_unit_key('c')}) % 1000000 < ?")
        )
        params.append(int(sample_per_million))
    if targets is not None:
        marks = ", ".join("?" for _ in targets)
        clauses.append(
            (
                f"(target IN ({marks}) OR target IS NULL)",
                f"(c.target IN ({marks}) OR c.target IS NULL)",
            )
        )
        params.extend(targets)
    if item_ids is not None:
        clauses.append(
            (
                "list_contains(?::VARCHAR[], coalesce(item_id, trace_id))",
                "list_contains(?::VARCHAR[], coalesce(c.item_id, c.trace_id))",
            )
        )
        params.append(list(item_ids))
    latest_scores = (
        """
        SELECT call_id, arg_max_null(value, coalesce(created_at, TIMESTAMPTZ 'epoch')) AS value
        FROM scores
        WHERE scorer = ?
        GROUP BY call_id
    """
        if with_scores
        else "SELECT NULL::VARCHAR AS call_id, NULL::DOUBLE AS value WHERE false"
    )
    where = ("WHERE " + " AND ".join(c for c, _ in clauses)) if clauses else ""
    where_c = ("WHERE " + " AND ".join(c for _, c in clauses)) if clauses else ""
    result = ", ".join(f"arg_max(t.{c}, t.rank) AS {c}" for c in _RESULT_COLUMNS)
    sql = f"""
    WITH by_unit AS (
        SELECT
            experiment_id, target,
            coalesce(item_id, trace_id) AS item_id,
            coalesce(repetition, 0) AS repetition,
            min(trace_id) AS trace_id,
            min(trace_id) <> max(trace_id) AS several_traces,
            {_TRACE_AGGREGATES}
        FROM {calls}
        {where}
        GROUP BY {_unit_key()}
    ),
    several AS (
        SELECT experiment_id, target, item_id, repetition
        FROM by_unit WHERE several_traces
    ),
    -- Only the rows of units with several traces are aggregated per trace.
    traces AS (
        SELECT
            trace_id,
            any_value(c.experiment_id) AS experiment_id,
            any_value(c.target) AS target,
            coalesce(any_value(c.item_id), trace_id) AS item_id,
            coalesce(any_value(c.repetition), 0) AS repetition,
            {_TRACE_AGGREGATES}
        FROM {calls} c
        SEMI JOIN several s
            ON c.experiment_id IS NOT DISTINCT FROM s.experiment_id
            AND c.target IS NOT DISTINCT FROM s.target
            AND coalesce(c.item_id, c.trace_id) = s.item_id
            AND coalesce(c.repetition, 0) = s.repetition
        {where_c}
        GROUP BY trace_id
    ),
    several_results AS (
        SELECT
            t.experiment_id, t.target, t.item_id, t.repetition,
            {result},
            sum(t.cost_usd) AS spent_usd,
            count(*) AS traces
        FROM (
            SELECT
                tr.*,
                -- The latest ok trace, else the latest: ok first, then by start time.
                ((tr.status = 'ok')::BIGINT * 4611686018427387904
                 + epoch_us(tr.started_at)) AS rank
            FROM traces tr
        ) t
        GROUP BY t.experiment_id, t.target, t.item_id, t.repetition
    ),
    unit_results AS (
        SELECT
            experiment_id, target, item_id, repetition,
            {", ".join(_RESULT_COLUMNS)},
            cost_usd AS spent_usd,
            1 AS traces
        FROM by_unit WHERE NOT several_traces
        UNION ALL BY NAME
        SELECT * FROM several_results
    ),
    latest_scores AS ({latest_scores}),
    units AS MATERIALIZED (
        SELECT
            u.experiment_id,
            coalesce(u.target, u.first_model) AS target,
            u.item_id, u.repetition, u.trace_id, u.call_id, u.status, u.error_type,
            u.cache_status, u.ttft_ms, u.latency_ms, u.cost_usd, u.spent_usd, u.attempts,
            u.fell_back, u.started_at, u.simulated, u.traces,
            s.value AS quality
        FROM unit_results u
        LEFT JOIN latest_scores s ON s.call_id = u.call_id
    )
    """
    return sql, [*params, *params, *([scorer] if with_scores else [])]


def default_scorer(read: Reader, experiment_id: str | None) -> str | None:
    """The scorer to use when none was named: the one with the most scores in the
    experiment (ties by name), or None when nothing is scored."""
    frame = read(
        """
        SELECT scorer, count(*) AS n FROM scores
        WHERE scorer IS NOT NULL AND (CAST(? AS VARCHAR) IS NULL OR experiment_id = ?)
        GROUP BY scorer ORDER BY n DESC, scorer LIMIT 1
        """,
        [experiment_id, experiment_id],
    )
    return None if frame.empty else str(frame["scorer"].iloc[0])
