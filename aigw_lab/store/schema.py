"""The call log's DuckDB schema: column types and the append-only list of migrations.

A database records which migrations it has had in ``schema_migrations``; opening one applies
the missing migrations, all in one transaction. Released migrations are never edited, only
appended to (``tests/store/test_schema.py`` pins their checksums): a new `CallRecord` field
means a new ``ALTER TABLE calls ADD COLUMN`` migration, never a change to version 1.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aigw_lab.errors import StoreError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = [
    "COLUMN_TYPES",
    "MIGRATIONS",
    "Migration",
    "SCHEMA_VERSION",
    "apply_migrations",
    "arrow_schema",
    "schema_version",
]

#: DuckDB type of every ``calls`` column, in `CALL_COLUMNS` order. The migrations below are
#: what actually creates the table; a test checks that the two agree.
COLUMN_TYPES: dict[str, str] = {
    "call_id": "VARCHAR",
    "trace_id": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "provider_name": "VARCHAR",
    "request_model": "VARCHAR",
    "operation_name": "VARCHAR",
    "response_model": "VARCHAR",
    "response_id": "VARCHAR",
    "api_format": "VARCHAR",
    "request_json": "JSON",
    "response_text": "VARCHAR",
    "finish_reason": "VARCHAR",
    "tool_calls_json": "JSON",
    "status": "VARCHAR",
    "error_type": "VARCHAR",
    "error_message": "VARCHAR",
    "http_status_code": "INTEGER",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "cache_read_input_tokens": "BIGINT",
    "cache_creation_input_tokens": "BIGINT",
    "reasoning_tokens": "BIGINT",
    "cost_usd": "DOUBLE",
    "latency_ms": "DOUBLE",
    "ttfb_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "upstream_ms": "DOUBLE",
    "overhead_ms": "DOUBLE",
    "stream": "BOOLEAN",
    "cache_status": "VARCHAR",
    "cache_similarity": "DOUBLE",
    "attempt": "INTEGER",
    "fallback_from": "VARCHAR",
    "user_id": "VARCHAR",
    "tenant_id": "VARCHAR",
    "experiment_id": "VARCHAR",
    "tags_json": "JSON",
    "metadata_json": "JSON",
    "simulated": "BOOLEAN",
    "run_id": "VARCHAR",
    "item_id": "VARCHAR",
    "target": "VARCHAR",
    "repetition": "INTEGER",
    "flags": "VARCHAR[]",
    "bodies": "VARCHAR",
    "budget_usd": "DOUBLE",
    "route_policy": "VARCHAR",
    "propensity": "DOUBLE",
    "shadow_of": "VARCHAR",
}


def arrow_schema(columns: Mapping[str, str] | None = None) -> pa.Schema:
    """The Arrow schema the writer builds batches with (JSON columns travel as strings):
    of the calls table, or of ``columns`` (name -> SQL type) for another table."""
    # lazy: pyarrow loads in ~0.1-0.2 s; only building or reading a batch needs it
    import pyarrow as pa

    arrow_types = {
        "VARCHAR": pa.string(),
        "JSON": pa.string(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "VARCHAR[]": pa.list_(pa.string()),
    }
    columns = COLUMN_TYPES if columns is None else columns
    return pa.schema([(name, arrow_types[sql]) for name, sql in columns.items()])


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: ``apply`` is SQL text (may hold several statements) or a callable
    that receives the DuckDB connection, already inside the migration transaction."""

    version: int
    name: str
    apply: str | Callable[[duckdb.DuckDBPyConnection], None]

    def checksum(self) -> str:
        """SHA-256 of the migration's name and body (the callable's source code)."""
        body = self.apply if isinstance(self.apply, str) else inspect.getsource(self.apply)
        return hashlib.sha256(f"{self.version}:{self.name}\n{body}".encode()).hexdigest()


# --- released migrations: append only, never edit ------------------------------------------

# No PRIMARY KEY or NOT NULL: a constraint would make one bad row fail its whole batch, and
# an ART index slows bulk inserts several-fold. DuckDB's per-block min/max (zone maps) already
# make the usual time-range and equality filters cheap.
_CREATE_CALLS = """
CREATE TABLE calls (
    call_id VARCHAR,
    trace_id VARCHAR,
    "timestamp" TIMESTAMPTZ,
    provider_name VARCHAR,
    request_model VARCHAR,
    operation_name VARCHAR,
    response_model VARCHAR,
    response_id VARCHAR,
    api_format VARCHAR,
    request_json JSON,
    response_text VARCHAR,
    finish_reason VARCHAR,
    tool_calls_json JSON,
    status VARCHAR,
    error_type VARCHAR,
    error_message VARCHAR,
    http_status_code INTEGER,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cache_read_input_tokens BIGINT,
    cache_creation_input_tokens BIGINT,
    reasoning_tokens BIGINT,
    cost_usd DOUBLE,
    latency_ms DOUBLE,
    ttfb_ms DOUBLE,
    ttft_ms DOUBLE,
    upstream_ms DOUBLE,
    overhead_ms DOUBLE,
    stream BOOLEAN,
    cache_status VARCHAR,
    cache_similarity DOUBLE,
    attempt INTEGER,
    fallback_from VARCHAR,
    user_id VARCHAR,
    tenant_id VARCHAR,
    experiment_id VARCHAR,
    tags_json JSON,
    metadata_json JSON,
    simulated BOOLEAN
)
"""

_CREATE_CALLS_OK = """
CREATE VIEW calls_ok AS SELECT * FROM calls WHERE status = 'ok'
"""

# Quality scores and feedback, linked to calls by call_id (and to a logical call by trace_id).
# `kind` says where a score came from: "scorer" (computed by an aigw_lab scorer), "judge"
# (an LLM judge, whose own calls are logged under judge_trace_id), "recorded" (a label that
# came with a recorded dataset) or "feedback" (a human or program, after the fact).
_CREATE_SCORES = """
CREATE TABLE scores (
    score_id VARCHAR,
    call_id VARCHAR,
    trace_id VARCHAR,
    experiment_id VARCHAR,
    run_id VARCHAR,
    item_id VARCHAR,
    target VARCHAR,
    scorer VARCHAR,
    kind VARCHAR,
    value DOUBLE,
    label VARCHAR,
    comment VARCHAR,
    details_json JSON,
    judge_trace_id VARCHAR,
    user_id VARCHAR,
    created_at TIMESTAMPTZ
)
"""

# An experiment is a definition (dataset x targets x repetitions); each execution of it,
# first run or resume, is one row of experiment_runs. Their calls carry the experiment_id
# column and {"aigw_experiment": {run_id, item_id, target, repetition}} in metadata_json.
_CREATE_EXPERIMENTS = """
CREATE TABLE experiments (
    experiment_id VARCHAR,
    name VARCHAR,
    config_json JSON,
    dataset_name VARCHAR,
    dataset_fingerprint VARCHAR,
    targets_json JSON,
    repetitions INTEGER,
    code_version VARCHAR,
    created_at TIMESTAMPTZ
);
CREATE TABLE experiment_runs (
    run_id VARCHAR,
    experiment_id VARCHAR,
    started_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    status VARCHAR,
    planned INTEGER,
    skipped INTEGER,
    completed INTEGER,
    failed INTEGER,
    estimated_cost_usd DOUBLE,
    cost_usd DOUBLE,
    code_version VARCHAR,
    message VARCHAR
)
"""

# Experiment coordinates as real columns, not JSON to extract: the comparison queries group
# millions of rows by them.
_ADD_EXPERIMENT_COLUMNS = """
ALTER TABLE calls ADD COLUMN run_id VARCHAR;
ALTER TABLE calls ADD COLUMN item_id VARCHAR;
ALTER TABLE calls ADD COLUMN target VARCHAR;
ALTER TABLE calls ADD COLUMN repetition INTEGER;
CREATE OR REPLACE VIEW calls_ok AS SELECT * FROM calls WHERE status = 'ok'
"""

# What the log did to a row to make it storable (`aigw_lab.store.sanitize`), and where rows
# go that the database still refuses: the same file, so nothing paid for is ever missing.
# The dead letter keeps the columns budget seeding and cost reports filter on as real
# columns, and the whole row as JSON so it can be fixed and re-inserted into `calls`.
_ADD_FLAGS_AND_DEAD_LETTER = """
ALTER TABLE calls ADD COLUMN flags VARCHAR[];
CREATE OR REPLACE VIEW calls_ok AS SELECT * FROM calls WHERE status = 'ok';
CREATE TABLE calls_dead_letter (
    call_id VARCHAR,
    trace_id VARCHAR,
    "timestamp" TIMESTAMPTZ,
    provider_name VARCHAR,
    request_model VARCHAR,
    status VARCHAR,
    tenant_id VARCHAR,
    user_id VARCHAR,
    experiment_id VARCHAR,
    cost_usd DOUBLE,
    error VARCHAR,
    row_json JSON,
    dead_lettered_at TIMESTAMPTZ
)
"""

# What each row keeps of its bodies ([log] bodies). Rows written before this migration were
# written whole, so they read as "full".
_ADD_BODIES_COLUMN = """
ALTER TABLE calls ADD COLUMN bodies VARCHAR DEFAULT 'full';
CREATE OR REPLACE VIEW calls_ok AS SELECT * FROM calls WHERE status = 'ok'
"""

# What each row counts against budgets (migration 8): its cost when known; when the usage
# is unknown (a stream cut off after it began answering, a provider that reports no usage),
# the estimate the call was admitted with, as the live budget charges it; NULL when no
# budget estimated it. Budget seeding reads coalesce(budget_usd, cost_usd), so a restart
# counts what the running gateway counted, never an unknown cost as zero.
_ADD_BUDGET_USD = """
ALTER TABLE calls ADD COLUMN budget_usd DOUBLE;
ALTER TABLE calls_dead_letter ADD COLUMN budget_usd DOUBLE;
CREATE OR REPLACE VIEW calls_ok AS SELECT * FROM calls WHERE status = 'ok'
"""

# How the target was chosen, for learning from production (migration 9): ``route_policy``
# names the policy that chose it, ``propensity`` is the probability with which it chose this
# target given the request (1.0 for a deterministic choice; NULL when no policy chose), so
# off-policy estimators can reweight logged calls; ``shadow_of`` is the call_id of the live
# call a shadow call duplicated (NULL for live calls), so the pairs can be scored.
_ADD_ROUTE_COLUMNS = """
ALTER TABLE calls ADD COLUMN route_policy VARCHAR;
ALTER TABLE calls ADD COLUMN propensity DOUBLE;
ALTER TABLE calls ADD COLUMN shadow_of VARCHAR;
CREATE OR REPLACE VIEW calls_ok AS SELECT * FROM calls WHERE status = 'ok'
"""

# Rollups for analytics over big logs (migration 10; maintained by
# `aigw_lab.analysis.rollups`, which reads them instead of aggregating every call row).
# rollup_state: how far the rollups have read (the highest calls and scores rowid merged;
# both tables are append-only). rollup_units: one row per experiment unit with its result
# trace's outcome, statuses as booleans and latency/TTFT as fixed log-bucket indices, so
# percentiles need no sort. rollup_scores: the latest score per (unit result call, scorer),
# carrying the unit's keys so quality aggregates need no join. rollup_costs: cost and
# attempts per (experiment, target, UTC second), partial sums added up at read time.
_CREATE_ROLLUPS = """
CREATE TABLE rollup_state (
    calls_rowid BIGINT,
    scores_rowid BIGINT,
    refreshed_at TIMESTAMPTZ
);
INSERT INTO rollup_state VALUES (-1, -1, NULL);
CREATE TABLE rollup_units (
    experiment_id VARCHAR,
    key_target VARCHAR,
    item_id VARCHAR,
    repetition INTEGER,
    target VARCHAR,
    call_id VARCHAR,
    ok BOOLEAN,
    failed BOOLEAN,
    cache_hit BOOLEAN,
    fell_back BOOLEAN,
    attempts BIGINT,
    latency_ms DOUBLE,
    ttft_ms DOUBLE,
    latency_bucket INTEGER,
    ttft_bucket INTEGER,
    spent_usd DOUBLE,
    simulated BOOLEAN,
    started_at TIMESTAMPTZ
);
CREATE TABLE rollup_scores (
    call_id VARCHAR,
    scorer VARCHAR,
    value DOUBLE,
    experiment_id VARCHAR,
    target VARCHAR,
    item_id VARCHAR
);
CREATE TABLE rollup_costs (
    experiment_id VARCHAR,
    target VARCHAR,
    second TIMESTAMP,
    cost_usd DOUBLE,
    calls BIGINT
)
"""

#: Every migration ever released, in order. Append new ones; never edit or reorder these.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create_calls", _CREATE_CALLS),
    Migration(2, "create_calls_ok_view", _CREATE_CALLS_OK),
    Migration(3, "create_scores", _CREATE_SCORES),
    Migration(4, "create_experiments", _CREATE_EXPERIMENTS),
    Migration(5, "add_experiment_columns", _ADD_EXPERIMENT_COLUMNS),
    Migration(6, "add_flags_and_dead_letter", _ADD_FLAGS_AND_DEAD_LETTER),
    Migration(7, "add_bodies_column", _ADD_BODIES_COLUMN),
    Migration(8, "add_budget_usd", _ADD_BUDGET_USD),
    Migration(9, "add_route_columns", _ADD_ROUTE_COLUMNS),
    Migration(10, "create_rollups", _CREATE_ROLLUPS),
)

#: The schema version this code writes: the last migration's version.
SCHEMA_VERSION: int = MIGRATIONS[-1].version

_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""


def schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The highest migration version applied to the database (0 for a fresh one)."""
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE table_name = 'schema_migrations' AND schema_name = current_schema() "
        # the log's own catalog: on a LogEngine, other logs' tables are listed too
        "AND database_name = current_database()"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def apply_migrations(
    conn: duckdb.DuckDBPyConnection,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    where: str = "the call log",
) -> list[int]:
    """Apply the migrations ``conn``'s database lacks, in one transaction; return their
    versions. ``where`` names the database in error messages.

    Raises `StoreError` when the database has a migration this code does not know (it was
    written by a newer aigw_lab) or when a migration fails (nothing is applied then).
    """
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    _check_sequence(migrations)
    try:
        # One round trip: a script's result is its last statement's.
        rows = conn.execute(
            f"{_CREATE_SCHEMA_MIGRATIONS};\nSELECT version FROM schema_migrations"
        ).fetchall()
        applied = {v for (v,) in rows}
    except duckdb.Error as exc:
        raise StoreError(
            f"cannot read the schema version of {where}: {exc}",
            hint="check that the file is an aigw_lab call log",
        ) from exc

    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        newest = max(known, default=0)
        raise StoreError(
            f"{where} has schema version {max(unknown)}, newer than this aigw_lab "
            f"understands (up to {newest})",
            hint="upgrade aigw_lab (pip install -U aigw-lab), or open a copy with "
            "CallLog.snapshot(path) for read-only analysis",
        )

    missing = [m for m in migrations if m.version not in applied]
    if not missing:
        return []
    if all(isinstance(m.apply, str) for m in missing):
        # A new database (every call log a test or a user creates) gets all of them as one
        # script: 3 round trips instead of 18, about 13% less CPU to create, migrate and
        # close a log (bench/bench_calllog_open.py). The script's error
        # does not say which migration failed, so a failure is rolled back and the
        # migrations run again one by one below, whose error names it.
        try:
            _apply_as_one_script(conn, missing)
            return [m.version for m in missing]
        except duckdb.Error:
            _rollback(conn)
        except BaseException:
            _rollback(conn)
            raise
    current: Migration | None = None
    try:
        conn.execute("BEGIN TRANSACTION")
        for current in missing:
            if isinstance(current.apply, str):
                conn.execute(current.apply)
            else:
                current.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())",
                [current.version, current.name],
            )
        conn.execute("COMMIT")
    except Exception as exc:
        _rollback(conn)
        label = f"{current.version} ({current.name})" if current else "?"
        raise StoreError(
            f"migration {label} of {where} failed, nothing was changed: {exc}",
            hint="report this as a bug with the error above; the database is untouched",
        ) from exc
    return [m.version for m in missing]


def _apply_as_one_script(conn: duckdb.DuckDBPyConnection, missing: Sequence[Migration]) -> None:
    """Run SQL-text migrations and record them, in one transaction and two round trips."""
    bodies = "\n;\n".join(str(m.apply) for m in missing)  # newline: a trailing -- comment ends
    rows = ", ".join("(?, ?, now())" for _ in missing)
    params: list[int | str] = []
    for m in missing:
        params += [m.version, m.name]
    # Parameters bind to the script's last statement, the insert.
    conn.execute(
        f"BEGIN TRANSACTION;\n{bodies}\n;\nINSERT INTO schema_migrations VALUES {rows}", params
    )
    conn.execute("COMMIT")


def _check_sequence(migrations: Sequence[Migration]) -> None:
    # A programming error, caught before anything touches the database.
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order, got {versions}")


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    try:
        conn.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction was open: the failure came before BEGIN took effect
