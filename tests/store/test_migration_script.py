"""A new database is migrated as one script (issue 10 §1: opening a fresh call log is the
test suite's most repeated cost), and the one-script path keeps every guarantee of the
one-by-one path: same schema, same recorded versions, a failure names its migration and
changes nothing."""

from __future__ import annotations

import duckdb
import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store.schema import MIGRATIONS, SCHEMA_VERSION, Migration, apply_migrations


class CountingConnection:
    """A DuckDB connection that counts the statements sent to it (round trips)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.sent: list[str] = []

    def execute(self, sql: str, params: object = None) -> duckdb.DuckDBPyConnection:
        self.sent.append(sql)
        return self.conn.execute(sql, params) if params is not None else self.conn.execute(sql)


def _schema(conn: duckdb.DuckDBPyConnection) -> list[tuple]:
    return conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "ORDER BY table_name, ordinal_position"
    ).fetchall()


def test_a_new_database_is_migrated_in_three_round_trips():
    # Before: two to read the version, then BEGIN, 7 migrations, 7 inserts and COMMIT (18).
    counting = CountingConnection(duckdb.connect(":memory:"))
    assert apply_migrations(counting, MIGRATIONS) == [m.version for m in MIGRATIONS]
    assert len(counting.sent) == 3


def test_the_script_gives_the_schema_and_versions_of_one_by_one(tmp_path):
    # A callable migration forces the one-by-one path: the reference for the script's result.
    def noop(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("SELECT 1")

    scripted = duckdb.connect(str(tmp_path / "a.duckdb"))
    apply_migrations(scripted, MIGRATIONS)
    stepped = duckdb.connect(str(tmp_path / "b.duckdb"))
    apply_migrations(stepped, [*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "noop", noop)])
    assert _schema(scripted) == _schema(stepped)
    versions = "SELECT version, name FROM schema_migrations ORDER BY version"
    assert scripted.execute(versions).fetchall() == stepped.execute(versions).fetchall()[:-1]
    scripted.close()
    stepped.close()


def test_a_trailing_comment_does_not_swallow_the_next_migration():
    migrations = [
        *MIGRATIONS,
        Migration(SCHEMA_VERSION + 1, "a", "CREATE TABLE a (x INT) -- the first"),
        Migration(SCHEMA_VERSION + 2, "b", "CREATE TABLE b (x INT);"),
    ]
    conn = duckdb.connect(":memory:")
    apply_migrations(conn, migrations)
    tables = {t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"a", "b", "calls"} <= tables


def test_a_failing_script_on_a_new_database_names_the_migration_and_leaves_it_empty(tmp_path):
    path = tmp_path / "c.duckdb"
    broken = [*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "typo", "CREATE TABLE t (a INT); SELEC")]
    conn = duckdb.connect(str(path))
    with pytest.raises(StoreError, match=r"migration \d+ \(typo\) .* nothing was changed"):
        apply_migrations(conn, broken)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
    tables = {t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"schema_migrations"}
    # and a later open with the right migrations still works
    assert apply_migrations(conn, MIGRATIONS) == [m.version for m in MIGRATIONS]
    conn.close()


def test_a_runtime_failure_mid_script_is_rolled_back(tmp_path):
    # Parses, fails only when run (after earlier statements of the script ran).
    bad = "CREATE TABLE u (a INT); INSERT INTO u VALUES ('not a number')"
    broken = [*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "bad_insert", bad)]
    conn = duckdb.connect(str(tmp_path / "d.duckdb"))
    with pytest.raises(StoreError, match=r"\(bad_insert\)"):
        apply_migrations(conn, broken)
    tables = {t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"schema_migrations"}
    conn.close()
