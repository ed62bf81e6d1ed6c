"""A call log's database checkpoints less often than DuckDB's default (issue 13 §1).

DuckDB checkpoints whenever its write-ahead log passes a threshold (16MB by default), and
each checkpoint compresses the table's unfinished row group again: a log written in small
batches paid for its rows several times over. `CallLog` raises the threshold for its own
database unless the caller's DuckDB config sets one (bench/bench_log_writer.py
``--checkpoints`` measures what it saves).
"""

from __future__ import annotations

import duckdb
import pytest

from aigw_lab.store import CallLog
from aigw_lab.store.encryption import Encryption
from aigw_lab.store.insert_path import CHECKPOINT_THRESHOLD

_QUERY = "SELECT current_setting('checkpoint_threshold')"


def _as_duckdb_shows(setting: str) -> str:
    probe = duckdb.connect()
    probe.execute(f"SET checkpoint_threshold = '{setting}'")
    return probe.execute(_QUERY).fetchone()[0]


def test_the_threshold_is_raised_above_duckdbs_default():
    default = duckdb.connect().execute(_QUERY).fetchone()[0]
    assert _as_duckdb_shows(CHECKPOINT_THRESHOLD) != default


@pytest.mark.parametrize("where", ["file", "memory"])
def test_a_call_log_sets_the_checkpoint_threshold(tmp_path, where):
    path = tmp_path / "calls.duckdb" if where == "file" else ":memory:"
    with CallLog(path) as log:
        assert log.execute(_QUERY) == [(_as_duckdb_shows(CHECKPOINT_THRESHOLD),)]


def test_an_encrypted_log_sets_it_too(tmp_path):
    key = Encryption("correct horse battery staple 0123456789", "AIGW_LOG_KEY", "builtin")
    with CallLog(tmp_path / "calls.duckdb", encryption=key) as log:
        assert log.execute(_QUERY) == [(_as_duckdb_shows(CHECKPOINT_THRESHOLD),)]


@pytest.mark.parametrize("key", ["checkpoint_threshold", "wal_autocheckpoint"])
def test_a_threshold_in_the_config_is_kept(tmp_path, key):
    with CallLog(tmp_path / "calls.duckdb", config={key: "8MiB"}) as log:
        assert log.execute(_QUERY) == [(_as_duckdb_shows("8MiB"),)]


def test_rows_survive_checkpoints_and_a_reopen(tmp_path, record):
    """Many small batches through automatic checkpoints (a tiny threshold forces them): a
    reader sees every row after each flush, and the file holds them all after close."""
    path = tmp_path / "calls.duckdb"
    with CallLog(path, config={"checkpoint_threshold": "32KiB"}) as log:
        for start in range(0, 600, 100):
            for i in range(start, start + 100):
                log.append(record(i), built=True)
            log.flush()
            assert log.execute("SELECT count(*) FROM calls") == [(start + 100,)]
        for i in range(600, 650):  # appended, never flushed: close writes them
            log.append(record(i), built=True)
    with CallLog(path) as log:
        rows = log.execute("SELECT count(*), count(DISTINCT call_id) FROM calls")
        assert rows == [(650, 650)]
