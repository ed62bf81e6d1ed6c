"""Migrations: append-only, applied on open, transactional, and refusing newer databases."""

from __future__ import annotations

import duckdb
import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store import CALL_COLUMNS, CallLog
from aigw_lab.store.schema import (
    COLUMN_TYPES,
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    apply_migrations,
    schema_version,
)

# Released migrations, pinned. Editing a released migration breaks databases that already
# ran it: add a new migration instead, and append its line here once it is released.
# fmt: off
RELEASED = [
    (1, "create_calls", "e3252b667aebeeca1f202b36fc31126695dfd9e36ab69c9fd9e50d503ba88a52"),
    (2, "create_calls_ok_view", "d4043ee500ad14eaec98bb46592b69885157663e5e547ed073832d8130cf1266"),
    (3, "create_scores", "9c3a83617b70e43932f2b325407c22348cd647d5b8b74254fc71d0cc0b754a75"),
    (4, "create_experiments", "38e915e10ceb844994ec16505e2f7c54d85dc27834f0018f656c73e50ded89ed"),
    (5, "add_experiment_columns", "856c91844f15aca001d7b9af4be47e832ac016a202c3bdc868588fe9f2723973"),
    (6, "add_flags_and_dead_letter", "b0b42cf7737c97a0187e0b713053d139576299a69a04c3df89f1e19acb5af52b"),
    (7, "add_bodies_column", "35bf3f92a12b4a2aac317569ca7c58bc354cde68665bfa01d4b2e308b38dbbeb"),
    (8, "add_budget_usd", "eeb135f3f69acc1554089f7e15506a569ca11c07d2b4a14988e7c69f6bad0d39"),
    (9, "add_route_columns", "acddae0f617ced2e048a6d5c9880ff4be6dc7994be3a5cc5814bef1c13ee30c3"),
    (10, "create_rollups", "5caf6bc16aac91cdff903d0d5f506bd087dc4058dcaa67ea80f1be5161326404"),
]
# fmt: on


def test_released_migrations_are_never_edited_or_reordered():
    current = [(m.version, m.name, m.checksum()) for m in MIGRATIONS]
    assert current[: len(RELEASED)] == RELEASED


def test_the_migrated_table_matches_the_call_record():
    conn = duckdb.connect(":memory:")
    apply_migrations(conn)
    described = conn.execute("SELECT column_name, column_type FROM (DESCRIBE calls)").fetchall()
    spelled = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    assert [name for name, _ in described] == list(CALL_COLUMNS) == list(COLUMN_TYPES)
    assert [spelled.get(kind, kind) for _, kind in described] == list(COLUMN_TYPES.values())
    assert schema_version(conn) == SCHEMA_VERSION == MIGRATIONS[-1].version


def test_opening_an_old_database_upgrades_it_and_keeps_its_rows(tmp_path, record):
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    assert apply_migrations(old, MIGRATIONS[:1]) == [1]  # a database from release 1
    old.execute("INSERT INTO calls (call_id, status) VALUES ('old-ok', 'ok'), ('old-err', 'error')")
    old.close()

    with CallLog(path) as log:
        log.append(record(1))
        assert log.execute("SELECT version, name FROM schema_migrations ORDER BY version") == [
            (m.version, m.name) for m in MIGRATIONS
        ]
        ok = log.execute("SELECT call_id FROM calls_ok ORDER BY call_id DESC")  # migration 2
    assert ok == [("old-ok",), (record(1).call_id,)]  # "old-ok" sorts after "call-..."


def test_reopening_applies_nothing(tmp_path):
    path = tmp_path / "c.duckdb"
    CallLog(path).close()
    conn = duckdb.connect(str(path))
    assert apply_migrations(conn) == []
    [(count, first_applied)] = conn.execute(
        "SELECT count(*), min(applied_at) FROM schema_migrations"
    ).fetchall()
    assert count == len(MIGRATIONS) and first_applied is not None
    conn.close()


def test_a_database_from_newer_code_is_refused(tmp_path):
    path = tmp_path / "future.duckdb"
    future = [*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "future_change", "CREATE TABLE x (a INT)")]
    conn = duckdb.connect(str(path))
    apply_migrations(conn, future)
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer") as caught:
        CallLog(path)
    assert "upgrade aigw_lab" in str(caught.value)


def test_a_failing_migration_changes_nothing(tmp_path):
    path = tmp_path / "c.duckdb"
    broken = [
        *MIGRATIONS,
        Migration(SCHEMA_VERSION + 1, "half_done", "CREATE TABLE extra (a INT); SELEC oops"),
    ]
    conn = duckdb.connect(str(path))
    apply_migrations(conn, MIGRATIONS[:1])
    with pytest.raises(StoreError, match=r"migration \d+ \(half_done\) .* nothing was changed"):
        apply_migrations(conn, broken)
    assert schema_version(conn) == 1  # migration 2 was rolled back with the broken one
    tables = {name for (name,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "extra" not in tables
    conn.close()


def test_callable_migrations_run_inside_the_transaction():
    seen = []

    def backfill(conn: duckdb.DuckDBPyConnection) -> None:
        seen.append(conn.execute("SELECT count(*) FROM calls").fetchone()[0])
        conn.execute("ALTER TABLE calls ADD COLUMN region VARCHAR")

    conn = duckdb.connect(":memory:")
    applied = apply_migrations(
        conn, [*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "region", backfill)]
    )
    assert applied == [m.version for m in MIGRATIONS] + [SCHEMA_VERSION + 1] and seen == [0]
    assert "region" in {c for (c, *_) in conn.execute("DESCRIBE calls").fetchall()}
    assert len(Migration(9, "region", backfill).checksum()) == 64


def test_a_log_keeps_working_after_a_column_is_added(tmp_path, record):
    # Inserts go BY NAME, so a migration adding a column does not break the writer.
    extra = Migration(
        SCHEMA_VERSION + 1, "add_region", "ALTER TABLE calls ADD COLUMN region VARCHAR"
    )
    with CallLog(tmp_path / "c.duckdb", migrations=[*MIGRATIONS, extra]) as log:
        log.append(record(1))
        assert log.execute("SELECT call_id, region FROM calls") == [(record(1).call_id, None)]


def test_migration_versions_must_be_consecutive():
    conn = duckdb.connect(":memory:")
    with pytest.raises(ValueError, match="1, 2, 3"):
        apply_migrations(conn, [MIGRATIONS[0], Migration(3, "gap", "SELECT 1")])
