"""The team log's PostgreSQL schema, derived from the DuckDB call log's migrations.

The team log (`aigw_lab.store.team_log`) keeps the tables of a call log in PostgreSQL so
that many processes and machines write one log. It has no migrations of its own: its
columns are read from a DuckDB database built by `aigw_lab.store.schema.MIGRATIONS` (in
memory, when a team log is opened), mapped to PostgreSQL types, and added to PostgreSQL
with ``ADD COLUMN IF NOT EXISTS``. A future DuckDB migration that adds a column therefore
reaches PostgreSQL the next time any process of the new version opens the team log;
``tests/teamlog/test_schema.py`` checks that the two column sets match, so drift fails CI.
A migration that changes a column's type, or uses a type missing from `PG_TYPES`, makes
`ensure_schema` raise: that needs a decision, never a silent cast.

Every mirrored table has one extra column, ``_seq``: an identity (a PostgreSQL sequence)
that only grows. Writers take a transaction-scoped advisory lock (`WRITE_LOCK`) before they
insert, so rows commit in ``_seq`` order; a reader that has seen ``_seq = N`` has seen every
row below N that will ever commit, and syncs past that watermark
(`aigw_lab.store.team_mirror`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.schema import MIGRATIONS, apply_migrations

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MIRRORED_TABLES",
    "PG_TYPES",
    "REPLACED_BY_KEY",
    "SEQ_COLUMN",
    "WRITE_LOCK",
    "duckdb_columns",
    "ensure_schema",
    "pg_columns",
]

#: The call log's tables the team log holds: what rows are, not what is derived from them
#: (rollups and indexes are built by each reader's mirror).
MIRRORED_TABLES: tuple[str, ...] = (
    "calls",
    "scores",
    "experiments",
    "experiment_runs",
    "calls_dead_letter",
)

#: Tables whose rows change after they are written (an experiment's definition, a run's
#: counts and status): a writer replaces a key's rows (`aigw_lab.store.team_rows`), and a
#: mirror drops its copy of a key when a newer one arrives. The other tables only grow.
REPLACED_BY_KEY: dict[str, str] = {"experiments": "experiment_id", "experiment_runs": "run_id"}

#: The watermark column of every table in PostgreSQL (not in DuckDB).
SEQ_COLUMN = "_seq"

#: Advisory lock keys: one serialises writers' inserts (so ``_seq`` commits in order), one
#: serialises schema changes (two processes opening a new team log at once).
WRITE_LOCK = 0x41494757_01  # "AIGW" + 1
_SCHEMA_LOCK = 0x41494757_02

#: DuckDB column type (as information_schema reports it) -> PostgreSQL type, spelt as
#: ``format_type`` reports it (so existing columns compare equal). JSON is kept
#: as text, byte for byte what DuckDB holds: ``jsonb`` reorders keys, and ``json`` would
#: make one row DuckDB accepted fail a whole batch here.
PG_TYPES: dict[str, str] = {
    "VARCHAR": "text",
    "JSON": "text",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "BOOLEAN": "boolean",
    "VARCHAR[]": "text[]",
}


def duckdb_columns(migrations: Any = None) -> dict[str, list[tuple[str, str]]]:
    """``{table: [(column, duckdb_type), ...]}`` of the mirrored tables, in column order,
    as ``migrations`` (default: every released one) create them."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a team log needs it
    import duckdb

    conn = duckdb.connect(":memory:")
    try:
        apply_migrations(conn, MIGRATIONS if migrations is None else migrations)
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        conn.close()
    found: dict[str, list[tuple[str, str]]] = {table: [] for table in MIRRORED_TABLES}
    for table, column, kind in rows:
        if table in found:
            found[table].append((column, kind))
    return found


def pg_columns(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    """``{column: PostgreSQL type}`` of ``table`` in the team log (``_seq`` included)."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        [table],
    ).fetchall()
    return {name: kind for name, kind in rows}


def ensure_schema(conn: psycopg.Connection[Any], migrations: Any = None) -> dict[str, list[str]]:
    """Create the mirrored tables in PostgreSQL, or add the columns they lack; return
    ``{table: [column, ...]}`` as this version writes them (``_seq`` left out).

    Runs in one transaction under an advisory lock, so processes opening a new team log
    together do not race. Raises `StoreError` when a column exists with another type, or a
    DuckDB type has no PostgreSQL counterpart in `PG_TYPES`."""
    wanted = duckdb_columns(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
        for table, columns in wanted.items():
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" ('
                f"{SEQ_COLUMN} bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"
            )
            have = pg_columns(conn, table)
            for column, kind in columns:
                pg_type = _pg_type(table, column, kind)
                if column not in have:
                    conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {pg_type}')
                elif have[column] != pg_type:
                    raise StoreError(
                        f"the team log's {table}.{column} is {have[column]}, but this "
                        f"version writes {pg_type}",
                        hint="a DuckDB migration changed a column's type; migrate the "
                        "PostgreSQL table by hand (see docs/deployment.md, 'One call log "
                        "for a team')",
                    )
        # Replaying a dead process's spool skips call ids already here.
        conn.execute("CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id)")
    return {table: [c for c, _ in columns] for table, columns in wanted.items()}


def _pg_type(table: str, column: str, kind: str) -> str:
    try:
        return PG_TYPES[kind]
    except KeyError:
        raise StoreError(
            f"the call log's {table}.{column} has DuckDB type {kind}, which the team log "
            "cannot hold yet",
            hint="add the type to aigw_lab.store.team_log_schema.PG_TYPES",
        ) from None
