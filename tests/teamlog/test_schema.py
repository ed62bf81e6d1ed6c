"""The team log's PostgreSQL schema follows the DuckDB call log's migrations: the same
tables and columns (so drift fails here), a new migration's column reaches PostgreSQL, and
what cannot be mapped is refused with a message."""

from __future__ import annotations

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store.records import CALL_COLUMNS
from aigw_lab.store.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from aigw_lab.store.team_log_schema import (
    MIRRORED_TABLES,
    PG_TYPES,
    SEQ_COLUMN,
    duckdb_columns,
    ensure_schema,
    pg_columns,
)

from .conftest import psycopg


def test_every_mirrored_table_has_the_duckdb_columns_with_mapped_types(team_url):
    with psycopg.connect(team_url, autocommit=True) as conn:
        ensure_schema(conn)
        for table, columns in duckdb_columns().items():
            have = pg_columns(conn, table)
            assert have.pop(SEQ_COLUMN) == "bigint"
            assert list(have) == [name for name, _ in columns], table
            assert list(have.values()) == [PG_TYPES[kind] for _, kind in columns], table


def test_the_calls_columns_are_the_call_records_fields():
    assert [name for name, _ in duckdb_columns()["calls"]] == list(CALL_COLUMNS)
    assert set(duckdb_columns()) == set(MIRRORED_TABLES)


def test_opening_twice_changes_nothing(team_url):
    with psycopg.connect(team_url, autocommit=True) as conn:
        first = ensure_schema(conn)
        before = {t: pg_columns(conn, t) for t in MIRRORED_TABLES}
        assert ensure_schema(conn) == first
        assert {t: pg_columns(conn, t) for t in MIRRORED_TABLES} == before


def test_a_new_duckdb_migration_reaches_postgres(team_url):
    newer = (
        *MIGRATIONS,
        Migration(SCHEMA_VERSION + 1, "add_team_test_column",
                  "ALTER TABLE calls ADD COLUMN team_test_column BIGINT"),
    )  # fmt: skip
    with psycopg.connect(team_url, autocommit=True) as conn:
        ensure_schema(conn)  # a team log of today's version
        assert "team_test_column" not in pg_columns(conn, "calls")
        columns = ensure_schema(conn, newer)
        assert columns["calls"][-1] == "team_test_column"
        assert pg_columns(conn, "calls")["team_test_column"] == "bigint"


def test_a_column_of_another_type_is_refused(team_url):
    with psycopg.connect(team_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE scores (_seq bigint PRIMARY KEY, value text)")
        with pytest.raises(StoreError, match=r"scores\.value is text.*double precision"):
            ensure_schema(conn)


def test_a_duckdb_type_without_a_postgres_type_is_refused(team_url):
    newer = (
        *MIGRATIONS,
        Migration(SCHEMA_VERSION + 1, "add_huge", "ALTER TABLE calls ADD COLUMN huge HUGEINT"),
    )
    with psycopg.connect(team_url, autocommit=True) as conn:
        with pytest.raises(StoreError, match="HUGEINT") as info:
            ensure_schema(conn, newer)
        assert "PG_TYPES" in (info.value.hint or "")
        assert pg_columns(conn, "calls") == {}  # one transaction: nothing was created
