"""Opening a log: bad paths, a file locked by another process, snapshots, flush at exit.

The lock and exit tests run real child processes (``python -c``), since that is what they
are about.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store import CallLog, open_readonly_snapshot, summary_by_model

# Appends `count` rows to the log at `path`; used by the child processes below.
_CHILD_PRELUDE = """
import sys
from datetime import UTC, datetime
from aigw_lab.store import CallLog, CallRecord

def rows(count):
    now = datetime.now(UTC)
    return [
        CallRecord(call_id=f"child-{i}", trace_id="t", timestamp=now,
                   provider_name="openai", request_model="gpt-4o-mini", latency_ms=float(i))
        for i in range(count)
    ]
"""


def _child(body: str, **kw) -> subprocess.Popen:
    code = _CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_a_directory_path_is_refused_with_a_fix(tmp_path):
    with pytest.raises(StoreError, match="is a directory") as caught:
        CallLog(tmp_path)
    assert str(tmp_path / "calls.duckdb") in str(caught.value)


def test_missing_directories_are_created(tmp_path, record):
    path = tmp_path / "a" / "b" / "calls.duckdb"
    with CallLog(path) as log:
        log.append(record(1))
    assert path.is_file()


def test_a_directory_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(StoreError, match="cannot create the directory") as caught:
        CallLog(blocker / "sub" / "calls.duckdb")
    assert str(blocker / "sub") in str(caught.value)
    assert "writable location" in str(caught.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_directory_gives_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            CallLog(locked / "calls.duckdb")
    finally:
        locked.chmod(0o700)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("just some text, long enough to look like a header? no." * 100)
    with pytest.raises(StoreError, match=f"cannot open the call log {path}"):
        CallLog(path)


def test_a_log_held_by_another_process_names_it_and_snapshots_still_work(tmp_path):
    path = tmp_path / "calls.duckdb"
    child = _child(
        f"""
        log = CallLog({str(path)!r})
        log.append_many(rows(3))
        log.flush()
        print("ready", flush=True)
        sys.stdin.readline()
        log.close()
        """,
        stdin=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        with pytest.raises(StoreError, match="in use by another process") as caught:
            CallLog(path)
        message = str(caught.value)
        assert f"(PID {child.pid})" in message
        assert "CallLog.snapshot(" in message

        snapshot = CallLog.snapshot(path)
        try:
            assert snapshot.execute("SELECT count(*) FROM calls").fetchall() == [(3,)]
            assert summary_by_model(snapshot)["calls"].tolist() == [3]
            with pytest.raises(Exception, match="read-only"):
                snapshot.execute("DELETE FROM calls")
        finally:
            snapshot.close()
        assert not list(tmp_path.glob("aigw-snapshot-*"))
    finally:
        child.communicate("\n", timeout=60)
    assert child.returncode == 0, child.stderr


def test_snapshot_of_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="no call log at"):
        open_readonly_snapshot(tmp_path / "missing.duckdb")


def test_snapshot_sees_committed_rows_of_a_log_open_in_this_process(tmp_path, record):
    path = tmp_path / "calls.duckdb"
    with CallLog(path) as log:
        log.append_many(record(i) for i in range(5))
        log.flush()
        snapshot = open_readonly_snapshot(path)
        log.append(record(99))  # after the copy: not in it
    try:
        assert snapshot.execute("SELECT count(*) FROM calls").fetchall() == [(5,)]
    finally:
        snapshot.close()


@pytest.mark.parametrize("ending", ["", "raise RuntimeError('the script crashed')"])
def test_pending_rows_are_flushed_at_interpreter_exit(tmp_path, ending):
    path = tmp_path / "calls.duckdb"
    child = _child(
        f"""
        log = CallLog({str(path)!r}, batch_size=100_000, flush_interval=3600)
        log.append_many(rows(1234))
        print(log.rows_written, flush=True)  # nothing written yet
        {ending}
        """
    )
    out, err = child.communicate(timeout=60)
    assert out.strip() == "0"
    assert "CallLogWarning" not in err
    with CallLog(path) as log:
        assert log.execute("SELECT count(*), count(DISTINCT call_id) FROM calls") == [(1234, 1234)]
