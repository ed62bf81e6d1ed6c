"""The suite-wide ``new_log_path`` fixture gives each test its own empty, migrated,
owner-only call log, so sharing one template never leaks rows between tests."""

from __future__ import annotations

import stat

import duckdb

from aigw_lab.store import CallLog
from aigw_lab.store.schema import SCHEMA_VERSION, schema_version

from .conftest import make_record


def test_the_copy_is_an_empty_migrated_owner_only_log(new_log_path, tmp_path):
    assert new_log_path == tmp_path / "calls.duckdb"
    assert stat.S_IMODE(new_log_path.stat().st_mode) == 0o600
    conn = duckdb.connect(str(new_log_path), read_only=True)
    assert schema_version(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM calls").fetchone() == (0,)
    conn.close()


def test_rows_written_to_one_copy_stay_out_of_the_template(new_log_path, empty_log_template):
    with CallLog(new_log_path) as log:
        log.append(make_record())
    with CallLog(new_log_path) as log:
        assert log.query("SELECT count(*) AS n FROM calls")["n"].iloc[0] == 1
    conn = duckdb.connect(str(empty_log_template), read_only=True)
    assert conn.execute("SELECT count(*) FROM calls").fetchone() == (0,)
    conn.close()
