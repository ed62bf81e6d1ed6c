"""Failed writes: rows are kept and retried, and the failure is reported, never swallowed."""

from __future__ import annotations

import json

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store import CallLog, CallLogWarning


def test_a_failed_insert_is_retried_and_surfaced_on_flush(tmp_path, record, gate):
    log = CallLog(tmp_path / "c.duckdb", before_insert=gate)
    gate.fail_with = OSError(28, "No space left on device")
    log.append_many(record(i) for i in range(3))

    with pytest.warns(CallLogWarning, match="No space left"):
        with pytest.raises(StoreError, match="3 rows could not be written.*No space left"):
            log.flush()
    assert log.rows_written == 0 and log.pending_rows == 3

    with pytest.raises(StoreError, match="No space left"):  # each flush retries once more
        log.flush()
    attempts_while_failing = len(gate.attempts)

    gate.fail_with = None  # the disk has room again
    log.flush()
    assert log.rows_written == 3
    assert len(gate.attempts) == attempts_while_failing + 1
    assert log.execute("SELECT call_id FROM calls ORDER BY rowid") == [
        (record(i).call_id,) for i in range(3)
    ]
    log.close()


def test_close_saves_rows_it_cannot_write_and_says_where(tmp_path, record, gate):
    log = CallLog(tmp_path / "c.duckdb", before_insert=gate)
    gate.fail_with = OSError(5, "Input/output error")
    log.append_many(record(i, response_text="ünïcode") for i in range(2))
    with pytest.warns(CallLogWarning):
        with pytest.raises(StoreError, match="2 rows were not written") as caught:
            log.close()
    spilled = list(tmp_path.glob("calls.unwritten-*.jsonl"))
    assert len(spilled) == 1 and str(spilled[0]) in str(caught.value)
    saved = [json.loads(line) for line in spilled[0].read_text(encoding="utf-8").splitlines()]
    assert [row["call_id"] for row in saved] == [record(0).call_id, record(1).call_id]
    assert saved[0]["response_text"] == "ünïcode"
    assert log.closed


def test_unconvertible_rows_are_set_aside_and_the_rest_written(tmp_path, record):
    # Issue 9: a refused row goes to calls_dead_letter and is reported by health() and a
    # warning; flush() no longer raises for it (that error used to reach other callers).
    bad = record(2, input_tokens="many")  # type: ignore[arg-type]
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append_many([record(1), bad, record(3)])
        with pytest.warns(CallLogWarning, match="call-0000002.*input_tokens.*calls_dead_letter"):
            log.flush()
        assert log.rejected == [bad]
        assert log.rows_written == 2
        assert log.health().rows_dead_lettered == 1
        assert log.execute("SELECT call_id FROM calls ORDER BY rowid") == [
            ("call-0000001",),
            ("call-0000003",),
        ]
        [(call_id, error)] = log.execute("SELECT call_id, error FROM calls_dead_letter")
        assert call_id == "call-0000002" and "input_tokens" in error


def test_append_fails_loudly_when_the_queue_is_full_and_writes_keep_failing(tmp_path, record, gate):
    log = CallLog(tmp_path / "c.duckdb", batch_size=2, max_queue=4, before_insert=gate)
    gate.fail_with = OSError(28, "No space left on device")
    with pytest.warns(CallLogWarning):
        log.append_many(record(i) for i in range(4))
        with pytest.raises(StoreError, match="cannot take more rows.*not accepted"):
            log.append(record(4))
    gate.fail_with = None
    log.append(record(4))  # the retry it triggers succeeds: room again
    log.close()
    with CallLog(tmp_path / "c.duckdb") as reopened:
        assert reopened.execute("SELECT count(*) FROM calls") == [(5,)]


class _WriterBug(BaseException):
    """Not an Exception: escapes the insert's error handling like a bug would."""


def test_a_crashed_writer_refuses_rows_and_close_saves_the_waiting_ones(tmp_path, record, gate):
    log = CallLog(tmp_path / "c.duckdb", before_insert=gate)
    gate.fail_with = _WriterBug("bug in the writer")
    log.append(record(1))
    with pytest.warns(CallLogWarning, match="crashed"):
        with pytest.raises(StoreError, match="writer thread .* crashed"):
            log.flush()
    with pytest.raises(StoreError, match="crashed"):
        log.append(record(2))
    with pytest.raises(StoreError, match="1 rows were not written") as caught:
        log.close()
    [spilled] = tmp_path.glob("calls.unwritten-*.jsonl")
    assert str(spilled) in str(caught.value)
    assert json.loads(spilled.read_text(encoding="utf-8"))["call_id"] == record(1).call_id


@pytest.mark.parametrize("mode", ["redacted", "hash", "none"])
def test_a_row_set_aside_keeps_the_logs_body_policy(tmp_path, record, mode):
    """A closed log refuses the row; the caller sets aside the row as it built it, and the
    file must not hold what the log itself would never have stored."""
    from aigw_lab.store.redact import BodyPolicy

    secret = "mail jane.doe@example.org now"
    log = CallLog(tmp_path / "calls.duckdb", bodies=BodyPolicy(mode=mode, hash_key=b"k" * 32))
    log.close()
    row = record(0, response_text=secret)
    with pytest.raises(StoreError):
        log.append(row)
    with pytest.warns(CallLogWarning):
        path = log.set_aside([row], "closed")
    text = open(path, encoding="utf-8").read()
    assert "jane.doe@example.org" not in text
    saved = json.loads(text.splitlines()[0])
    assert saved["bodies"] == mode and saved["call_id"] == row.call_id
