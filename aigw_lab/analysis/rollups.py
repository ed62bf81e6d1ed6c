"""Rollups: what `target_summary`, `paired_comparison` and `cost_over_time` read instead of
every call row, kept up to date past a watermark.

The call log's ``rollup_*`` tables (schema migration 10) hold one row per experiment unit
(its result trace's outcome, statuses as booleans, latency and TTFT as fixed log-bucket
indices), the latest score per (unit result call, scorer), and cost per (experiment, target,
UTC second). ``rollup_state`` records the highest ``calls`` and ``scores`` rowid merged; both
tables are append-only, so the rows past it are exactly what is new.

A refresh recomputes only the units that new rows touch (a retry, a late row, a resumed
run's trace of a unit rolled up earlier), from all of their rows, with the same unit SQL as
the reference (`aigw_lab.analysis._source.units_cte`), then the latest scores of those units
and of the calls that got new scores. It runs in one transaction, as one script. Analyses
refresh before they read (`fresh_rollups`); `refresh_rollups` does it explicitly (after a
bulk import, say) so the first analysis does not pay for it. The first refresh of a log that
never had one builds everything, once: at 10M calls about three reference analyses' CPU
(bench/bench_analysis_scale.py).

A log file's path whose rollups are current is read in place, read-only, when no process
has it open for writing (nothing to merge, so no copy: a 10M-call log is about 1 GB).
Otherwise it is analysed in a private copy (as `CallLog.snapshot` does, so another process
may keep writing the log) opened for writing, so rollups that are behind are merged into
the copy's own tables. A read-only connection (a `CallLog.snapshot`) whose rollups are
behind gets them refreshed into temporary tables of that connection, which first copies
every rollup table (about 0.7 s CPU per 1M calls). Either is paid again by the next copy:
refresh the log itself (``refresh_rollups(path)`` while no process has it open, or
``refresh_rollups(call_log)``) to make it once.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis._source import _connection_reader, units_cte
from aigw_lab.errors import StoreError
from aigw_lab.store.calllog import CallLog
from aigw_lab.store.files import copy_database
from aigw_lab.store.schema import MIGRATIONS

if TYPE_CHECKING:
    import duckdb

    from aigw_lab.analysis._source import LogSource, Reader

__all__ = [
    "HISTOGRAM_GAMMA",
    "HISTOGRAM_RELATIVE_ERROR",
    "RollupRefresh",
    "Rollups",
    "bucket_value",
    "fresh_rollups",
    "refresh_rollups",
]

#: Ratio between consecutive latency buckets: bucket b holds values in [γ^b, γ^(b+1)).
HISTOGRAM_GAMMA = 1.01
#: The largest relative error of a percentile read from the buckets (each order statistic
#: is stood in for by its bucket's geometric midpoint, γ^(b+½)): √γ − 1, about 0.499%.
HISTOGRAM_RELATIVE_ERROR = math.sqrt(HISTOGRAM_GAMMA) - 1
# Bucket of an exact zero (its stand-in is 0, exact); NULL for NULL, NaN and infinities.
_ZERO_BUCKET = -(2**31)
_TABLES = ("rollup_state", "rollup_units", "rollup_scores", "rollup_costs")


@dataclass(frozen=True, slots=True)
class Rollups:
    """Fresh rollups to read: ``read`` runs a query, ``schema`` is where the tables are
    (``"main"`` in the log itself, ``"temp"`` when refreshed into a read-only connection),
    ``refreshed`` says whether this call had to merge new rows."""

    read: Reader
    schema: str
    refreshed: bool


@dataclass(frozen=True, slots=True)
class RollupRefresh:
    """What one refresh merged: call and score rows read past the watermark, and where the
    rollups are (``"main"`` in the log, ``"temp"`` in a read-only connection)."""

    calls: int
    scores: int
    schema: str


def bucket_sql(column: str) -> str:
    """SQL for the log-bucket index of ``column`` (NULL for NULL, NaN or infinite)."""
    return (
        f"CASE WHEN {column} IS NULL OR isnan({column}) OR isinf({column}) THEN NULL "
        f"WHEN {column} <= 0 THEN {_ZERO_BUCKET} "
        f"ELSE floor(ln({column}) / ln({HISTOGRAM_GAMMA}))::INTEGER END"
    )


def bucket_value(bucket: int) -> float:
    """The stand-in of a bucket: its geometric midpoint (0 for the zero bucket)."""
    if bucket == _ZERO_BUCKET:
        return 0.0
    return float(HISTOGRAM_GAMMA ** (bucket + 0.5))


def refresh_rollups(source: LogSource) -> RollupRefresh:
    """Merge the calls and scores logged since the last refresh into the rollups and return
    what was merged. ``source`` as for the analysis functions; a path is opened read-write
    (no other process may have it open), so the work is kept in the file."""
    if isinstance(source, str | os.PathLike):
        with CallLog(source) as log:  # opens read-write and migrates to migration 10
            return _refresh(log.execute, log.query, where=f"{log!r}")
    if isinstance(source, CallLog):
        return _refresh(source.execute, source.query, where=f"{source!r}")
    if hasattr(source, "execute"):
        return _refresh_connection(source)
    raise TypeError(
        f"cannot refresh the rollups of a {type(source).__name__}: pass a CallLog, a DuckDB "
        "connection or the path of a call log file"
    )


@contextmanager
def fresh_rollups(source: LogSource) -> Iterator[Rollups]:
    """Up-to-date rollups of ``source`` for the duration of the block."""
    if isinstance(source, CallLog):
        state = _refresh(source.execute, source.query, where=f"{source!r}")
        yield Rollups(read=source.query, schema=state.schema, refreshed=state.calls > 0)
        return
    if isinstance(source, str | os.PathLike):
        where = f"call log {os.fspath(source)}"
        current = _open_if_current(source)
        if current is not None:
            try:
                read = _connection_reader(current, where=where)
                yield Rollups(read=read, schema="main", refreshed=False)
            finally:
                current.close()
            return
        with _private_copy(source) as conn:
            state = _refresh_connection(conn)
            read = _connection_reader(conn, where=where)
            yield Rollups(read=read, schema=state.schema, refreshed=state.calls > 0)
        return
    if hasattr(source, "execute"):
        state = _refresh_connection(source)
        read = _connection_reader(source, where="the call log connection")
        yield Rollups(read=read, schema=state.schema, refreshed=state.calls > 0)
        return
    raise TypeError(
        f"cannot analyse a {type(source).__name__}: pass a CallLog, a DuckDB connection or "
        "the path of a call log file"
    )


def _open_if_current(path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection | None:
    """The log at ``path`` opened read-only in place when no process has it open for writing
    and its rollups are current (the watermark is at the last calls and scores rowid):
    nothing to merge, so nothing to copy (a copy of a 10M-call log is about 1 GB). None
    otherwise: held by a writer (DuckDB locks the file), encrypted, of a schema without
    rollups, or rollups behind, all of which `_private_copy` handles.

    While the analysis reads, this process holds DuckDB's shared lock on the file: a
    process opening the log for writing in that moment is refused (as it is by any other
    reader of the file), where a copy would not have stopped it."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    source = Path(path).expanduser()
    if not source.is_file():
        return None  # `_private_copy` says what is wrong
    try:
        conn = duckdb.connect(str(source), read_only=True)
    except duckdb.Error:  # locked by a writer, encrypted, open here already, not DuckDB
        return None
    try:
        rows = conn.execute(
            """
            SELECT r.calls_rowid = (SELECT coalesce(max(rowid), -1) FROM main.calls)
               AND r.scores_rowid = (SELECT coalesce(max(rowid), -1) FROM main.scores)
            FROM main.rollup_state r
            """
        ).fetchall()
    except duckdb.Error:  # no rollup tables yet (an older schema)
        rows = []
    if rows == [(True,)]:
        return conn
    conn.close()
    return None


@contextmanager
def _private_copy(path: str | os.PathLike[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to a copy of the log at ``path`` (with its write-ahead log) in
    a private temporary folder, removed afterwards: the rollups merge into the copy's own
    tables instead of first copying them all into temporary ones. An encrypted log (which
    needs its key) gets `CallLog.snapshot`'s read-only copy, rolled up in temporary tables."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    source = Path(path).expanduser()
    if not source.is_file():
        raise StoreError(
            f"no call log at {source}", hint="pass the path of an existing .duckdb file"
        )
    folder = Path(tempfile.mkdtemp(prefix="aigw-rollup-copy-"))  # 0700: only this user
    try:
        try:
            conn = duckdb.connect(str(copy_database(source, folder)))
        except (OSError, duckdb.Error):
            # Encrypted, or caught mid-checkpoint: the snapshot says what to do about it.
            conn = CallLog.snapshot(source)
        try:
            # The copy is thrown away: closing it need not write the merge into the file.
            if not _read_only(conn):
                conn.execute("PRAGMA disable_checkpoint_on_shutdown")
            yield conn
        finally:
            conn.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_only(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return bool(row and row[0])


def _refresh_connection(conn: duckdb.DuckDBPyConnection) -> RollupRefresh:
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    def run(sql: str) -> list[tuple[Any, ...]]:
        try:
            result = conn.execute(sql)
            return result.fetchall() if conn.description else []
        except duckdb.Error:
            try:  # a failed script leaves its transaction open on the caller's connection
                conn.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise

    return _refresh(run, _connection_reader(conn, where="the call log"), where="the call log")


def _refresh(
    run: Callable[[str], list[tuple[Any, ...]]], read: Reader, *, where: str
) -> RollupRefresh:
    """Refresh in the log (``main``) when it has the tables and can be written, else in
    temporary tables of this connection."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    # Temporary tables live in the database "temp"; the log's own in its file's database.
    found = read(
        "SELECT DISTINCT database_name = 'temp' AS temporary FROM duckdb_tables() "
        "WHERE table_name = 'rollup_state' AND schema_name = 'main' "
        # not another log's: on a LogEngine every attached log's tables are listed
        "AND database_name IN ('temp', current_database())"
    )["temporary"]
    schemas = {"temp" if bool(t) else "main" for t in found}
    if "temp" in schemas:
        return _refresh_in(run, read, "temp", where=where)
    if "main" in schemas:
        for attempt in range(3):
            try:
                return _refresh_in(run, read, "main", where=where)
            except (duckdb.Error, StoreError) as exc:
                text = str(exc)
                if "read-only" in text or "read only" in text:
                    break  # a snapshot: refresh a copy in temporary tables below
                moved = "rollup watermark moved" in text or "onflict" in text
                if attempt == 2 or not moved:  # not a concurrent refresh: a real failure
                    raise
    _create_temp(run, copy_main="main" in schemas)
    return _refresh_in(run, read, "temp", where=where)


def _create_temp(run: Callable[[str], list[tuple[Any, ...]]], *, copy_main: bool) -> None:
    if copy_main:
        run(";\n".join(f"CREATE TEMP TABLE {t} AS SELECT * FROM main.{t}" for t in _TABLES))
        return
    ddl = next(m.apply for m in MIGRATIONS if m.name == "create_rollups")
    assert isinstance(ddl, str)
    run(
        ddl.replace("CREATE TABLE ", "CREATE TEMP TABLE ").replace(
            "INSERT INTO rollup_state", "INSERT INTO temp.rollup_state"
        )
    )


def _refresh_in(
    run: Callable[[str], list[tuple[Any, ...]]], read: Reader, schema: str, *, where: str
) -> RollupRefresh:
    s = schema
    bounds = read(
        f"""
        SELECT r.calls_rowid AS c_from, r.scores_rowid AS s_from,
               (SELECT coalesce(max(rowid), -1) FROM main.calls) AS c_to,
               (SELECT coalesce(max(rowid), -1) FROM main.scores) AS s_to
        FROM {s}.rollup_state r
        """
    )
    if len(bounds) != 1:
        raise StoreError(
            f"the rollup state of {where} has {len(bounds)} rows, not one",
            hint="drop the rollup_* tables' rows and insert (-1, -1, NULL) into rollup_state",
        )
    c_from, s_from, c_to, s_to = (
        int(bounds[c].iloc[0]) for c in ("c_from", "s_from", "c_to", "s_to")
    )
    if c_from == c_to and s_from == s_to:
        return RollupRefresh(calls=0, scores=0, schema=schema)
    run(_refresh_script(s, c_from=c_from, c_to=c_to, s_from=s_from, s_to=s_to))
    return RollupRefresh(calls=c_to - c_from, scores=s_to - s_from, schema=schema)


def _refresh_script(s: str, *, c_from: int, c_to: int, s_from: int, s_to: int) -> str:
    """One transaction merging calls rowids (c_from, c_to] and scores rowids (s_from, s_to]
    into the rollups in schema ``s``. Every value is an integer literal: no parameters, so
    it runs as one script on any connection (a `CallLog` gives each statement its own)."""
    key = (
        "experiment_id, target, coalesce(item_id, trace_id) AS item_id, "
        "coalesce(repetition, 0) AS repetition"
    )
    new_calls = f"(SELECT * FROM main.calls WHERE rowid > {c_from} AND rowid <= {c_to})"
    if c_from < 0:
        rows = f"(SELECT * FROM main.calls WHERE rowid <= {c_to})"
        unit_rows = ""
    else:
        rows = "_rollup_rows"
        unit_rows = f"""
        CREATE OR REPLACE TEMP TABLE _rollup_keys AS SELECT DISTINCT {key} FROM {new_calls};
        CREATE OR REPLACE TEMP TABLE _rollup_old AS
            SELECT u.call_id, u.experiment_id, u.key_target, u.item_id, u.repetition
            FROM {s}.rollup_units u
            SEMI JOIN _rollup_keys k
                ON u.experiment_id IS NOT DISTINCT FROM k.experiment_id
                AND u.key_target IS NOT DISTINCT FROM k.target
                AND u.item_id = k.item_id AND u.repetition = k.repetition;
        -- A unit the rollup has not seen has only new rows (every unit with a row at or
        -- below the watermark was rolled up), so only units seen before read the old rows.
        CREATE OR REPLACE TEMP TABLE _rollup_rows AS
            SELECT c.* FROM {new_calls} c
            ANTI JOIN _rollup_old o ON c.experiment_id IS NOT DISTINCT FROM o.experiment_id
                AND c.target IS NOT DISTINCT FROM o.key_target
                AND coalesce(c.item_id, c.trace_id) = o.item_id
                AND coalesce(c.repetition, 0) = o.repetition
            UNION ALL
            SELECT c.* FROM main.calls c
            SEMI JOIN _rollup_old o ON c.experiment_id IS NOT DISTINCT FROM o.experiment_id
                AND c.target IS NOT DISTINCT FROM o.key_target
                AND coalesce(c.item_id, c.trace_id) = o.item_id
                AND coalesce(c.repetition, 0) = o.repetition
            WHERE c.rowid <= {c_to};
        DELETE FROM {s}.rollup_units u USING _rollup_keys k
            WHERE u.experiment_id IS NOT DISTINCT FROM k.experiment_id
                AND u.key_target IS NOT DISTINCT FROM k.target
                AND u.item_id = k.item_id AND u.repetition = k.repetition;
        """
    cte, params = units_cte(None, None, calls=rows, with_scores=False)
    assert not params, "the rollup's unit SQL must take no parameter"
    units = ""
    if c_to > c_from:
        units = f"""
        {unit_rows}
        INSERT INTO {s}.rollup_units
        {cte}
        SELECT
            experiment_id, target AS key_target, item_id, repetition,
            coalesce(target, first_model) AS target, call_id,
            coalesce(status = 'ok', false) AS ok,
            coalesce(status = 'error', false) AS failed,
            coalesce(cache_status = 'hit', false) AS cache_hit,
            fell_back, attempts, latency_ms, ttft_ms,
            {bucket_sql("latency_ms")} AS latency_bucket,
            {bucket_sql("ttft_ms")} AS ttft_bucket,
            spent_usd, simulated, started_at
        FROM unit_results;
        INSERT INTO {s}.rollup_costs
        SELECT experiment_id,
               coalesce(target, provider_name || '/' || request_model) AS target,
               date_trunc('second', "timestamp" AT TIME ZONE 'UTC') AS second,
               sum(cost_usd) AS cost_usd,
               count(*) AS calls
        FROM {new_calls}
        GROUP BY ALL;
        """
    # The latest score per (result call, scorer) of every unit just recomputed and of every
    # call that got a new score. The first refresh reads them all.
    if c_from < 0 and s_from < 0:
        affected_filter = ""
        forget = ""
    else:
        recomputed = (
            f"""SELECT u.call_id FROM {s}.rollup_units u SEMI JOIN _rollup_keys k
                ON u.experiment_id IS NOT DISTINCT FROM k.experiment_id
                AND u.key_target IS NOT DISTINCT FROM k.target
                AND u.item_id = k.item_id AND u.repetition = k.repetition"""
            if c_to > c_from and c_from >= 0
            else f"SELECT call_id FROM {s}.rollup_units"
            if c_to > c_from
            else ""
        )
        old = "SELECT call_id FROM _rollup_old" if c_to > c_from and c_from >= 0 else ""
        rescored = (
            f"SELECT call_id FROM main.scores WHERE rowid > {s_from} AND rowid <= {s_to}"
            if s_to > s_from
            else ""
        )
        # The old result calls are merged again too: another unit may have the same call
        # id as its result (call_id has no unique key; rows merged from another log keep
        # theirs), and the DELETE below, by call id, took that unit's scores as well.
        affected = " UNION ".join(q for q in (old, recomputed, rescored) if q) or (
            "SELECT NULL::VARCHAR AS call_id WHERE false"
        )
        affected_filter = "AND s.call_id IN (SELECT call_id FROM _rollup_calls)"
        forget = f"""
        CREATE OR REPLACE TEMP TABLE _rollup_calls AS {affected};
        DELETE FROM {s}.rollup_scores WHERE call_id IN (SELECT call_id FROM _rollup_calls);
        """
    scores = f"""
        {forget}
        INSERT INTO {s}.rollup_scores
        SELECT l.call_id, l.scorer, l.value, u.experiment_id, u.target, u.item_id
        FROM (
            SELECT s.call_id, s.scorer,
                   arg_max_null(s.value, coalesce(s.created_at, TIMESTAMPTZ 'epoch')) AS value
            FROM main.scores s
            WHERE s.rowid <= {s_to} AND s.scorer IS NOT NULL {affected_filter}
            GROUP BY s.call_id, s.scorer
        ) l
        JOIN {s}.rollup_units u ON u.call_id = l.call_id;
    """
    return f"""
    BEGIN TRANSACTION;
    SELECT CASE WHEN calls_rowid <> {c_from} OR scores_rowid <> {s_from}
                THEN error('rollup watermark moved') END
    FROM {s}.rollup_state;
    UPDATE {s}.rollup_state
        SET calls_rowid = {c_to}, scores_rowid = {s_to}, refreshed_at = now();
    {units}
    {scores}
    COMMIT;
    """
