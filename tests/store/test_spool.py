"""The call log's spool: what a killed process leaves is replayed, once, into rows.

A "crash" here is a real one where it matters: a subprocess appends rows to a `CallLog` whose
writer never gets to insert them (an hour's flush interval), spools starts, and ends with
``os._exit`` (no flush, no finalizer, like SIGKILL). Its spool directory is then replayed by
opening the log in this process.
"""

from __future__ import annotations

import marshal
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from datetime import UTC, datetime

import pytest

from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.store import CallLog, CallLogWarning
from aigw_lab.store.spool import (
    INTERRUPTED_MESSAGE,
    START_FIELDS,
    Spool,
    read_segment,
    spool_dir,
)

from .conftest import make_record

CRASH = textwrap.dedent(
    """
    import os, sys
    from datetime import UTC, datetime, timedelta
    from aigw_lab.store import CallLog, CallRecord

    db, ends, starts, durability = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    log = CallLog(db, flush_interval=3600, batch_size=10**6, durability=durability)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(ends):
        log.append(CallRecord(call_id=f"end-{i}", trace_id=f"t-{i}", provider_name="p",
                              request_model="m", timestamp=base + timedelta(seconds=i),
                              input_tokens=i, cost_usd=0.001 * i, response_text="a\\nb"))
    for i in range(starts):
        log.spool.start((f"start-{i}", f"ts-{i}", 1767225600.0 + i, "p", "m", "openai",
                         bool(i % 2), "miss", 1, None, "user-1", "tenant-1", "exp-1",
                         '{"team":"x"}', None, False, "run-1", f"item-{i}", "p/m", 0))
    os._exit(0)  # no flush, no finalizer: the rows exist only in the spool
    """
)


def crash(tmp_path, db, *, ends: int, starts: int, durability: str = "os") -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(script), str(db), str(ends), str(starts), durability]
    subprocess.run(args, env=env, check=True, timeout=60)


def rows(db) -> list[tuple]:
    with CallLog(db, durability="none") as log:
        return log.execute(
            "SELECT call_id, status, error_type, cost_usd, input_tokens, response_text "
            "FROM calls ORDER BY call_id"
        )


def segments(db) -> list:
    return sorted(spool_dir(db).glob("*.spool"))


# --- replay -------------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_rows_a_killed_process_never_inserted_are_replayed(tmp_path, durability):
    db = tmp_path / "calls.duckdb"
    crash(tmp_path, db, ends=50, starts=3, durability=durability)
    assert segments(db)  # the crash left the spool behind

    with CallLog(db) as log:
        assert log.recovered == 53
        found = log.execute("SELECT status, count(*) FROM calls GROUP BY ALL ORDER BY 1")
        assert found == [("interrupted", 3), ("ok", 50)]
        row = log.execute(
            "SELECT input_tokens, cost_usd, response_text, timestamp FROM calls "
            "WHERE call_id = 'end-7'"
        )
        assert row == [(7, 0.007, "a\nb", datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC))]
    assert not spool_dir(db).exists()  # replayed, then removed; this log closed cleanly


def test_replay_is_idempotent(tmp_path):
    db = tmp_path / "calls.duckdb"
    crash(tmp_path, db, ends=20, starts=2)
    saved = tmp_path / "saved"
    shutil.copytree(spool_dir(db), saved)
    with CallLog(db) as log:  # replays
        first = log.execute("SELECT call_id, status FROM calls ORDER BY call_id")
    shutil.copytree(saved, spool_dir(db))  # as if the replay had crashed before deleting
    with CallLog(db) as log:
        assert log.recovered == 0
        again = log.execute("SELECT call_id, status FROM calls ORDER BY call_id")
    assert again == first and len(first) == 22


def test_a_start_without_an_end_becomes_an_interrupted_row(tmp_path):
    db = tmp_path / "calls.duckdb"
    crash(tmp_path, db, ends=0, starts=2)
    with CallLog(db) as log:
        found = log.query("SELECT * FROM calls ORDER BY call_id")
    first = found.iloc[0]
    assert list(found.call_id) == ["start-0", "start-1"]
    assert (found.status == "interrupted").all() and (found.error_type == "interrupted").all()
    assert first.error_message == INTERRUPTED_MESSAGE
    assert found.cost_usd.isna().all()  # the outcome, so the price, is unknown
    assert first.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    assert (first.trace_id, first.provider_name, first.request_model) == ("ts-0", "p", "m")
    assert (first.user_id, first.tenant_id, first.experiment_id) == ("user-1", "tenant-1", "exp-1")
    assert (first.run_id, first.item_id, first.target, first.repetition) == (
        "run-1",
        "item-0",
        "p/m",
        0,
    )
    assert first.tags_json == '{"team":"x"}' and first.cache_status == "miss"
    assert list(found.stream) == [False, True]


def used_bytes(data: bytes) -> int:
    """Where the frames of a segment end (the rest is the zeroed space left)."""
    offset = 0
    while offset < len(data) and data[offset] != 0:
        offset += 9 + struct.unpack_from("<I", data, offset + 1)[0]
    return offset


def test_a_torn_last_frame_is_skipped_quietly(tmp_path, recwarn):
    db = tmp_path / "calls.duckdb"
    crash(tmp_path, db, ends=10, starts=0)
    (segment,) = segments(db)
    data = bytearray(segment.read_bytes())
    used = used_bytes(data)
    data[used - 7 : used] = bytes(7)  # the process died copying its last frame
    segment.write_bytes(bytes(data))
    with CallLog(db) as log:
        assert log.recovered == 9
    assert not [w for w in recwarn if issubclass(w.category, CallLogWarning)]


def test_a_corrupt_frame_is_skipped_with_a_warning_and_the_segment_kept(tmp_path):
    db = tmp_path / "calls.duckdb"
    crash(tmp_path, db, ends=10, starts=0)
    (segment,) = segments(db)
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF  # inside the first frame's payload
    segment.write_bytes(bytes(data))
    with pytest.warns(CallLogWarning, match="checksum mismatch"), CallLog(db) as log:
        assert log.recovered == 9
    assert [p.name for p in spool_dir(db).iterdir()] == [segment.name + ".bad"]


def end_values(record) -> tuple:
    """An end frame's payload, as the spool writes it."""
    return (1767225600.0, record[:2], record[3:])


def hostile_frame(values) -> bytes:
    payload = marshal.dumps(values)
    return struct.pack("<cII", b"E", len(payload), zlib.crc32(payload)) + payload


@pytest.mark.parametrize(
    "values",
    [
        ("x",) * 3,  # too few fields
        (["not", "a", "string"],) + (None,) * 43,  # a list where call_id goes
        end_values(make_record(1)._replace(input_tokens="12")),  # wrong type
        end_values(make_record(1)._replace(call_id="")),  # no call id
        (1e20, *end_values(make_record(1))[1:]),  # a timestamp no datetime can hold
        (1767225600.0, ("a",), make_record(1)[3:]),  # fields missing
        compile("1", "x", "eval"),  # a code object: loaded, never run, refused
    ],
)
def test_frames_with_valid_checksums_but_bad_values_are_refused(tmp_path, values):
    db = tmp_path / "calls.duckdb"
    crash(tmp_path, db, ends=2, starts=0)
    (segment,) = segments(db)
    data = bytearray(segment.read_bytes())
    used = used_bytes(data)
    # A good frame after it: a bad frame followed by nothing is taken for a torn one.
    frames = hostile_frame(values) + hostile_frame(end_values(make_record(99)))
    data[used : used + len(frames)] = frames
    segment.write_bytes(bytes(data))
    with pytest.warns(CallLogWarning, match="unreadable frames"), CallLog(db) as log:
        assert log.recovered == 3
        assert log.execute("SELECT count(*) FROM calls") == [(3,)]


def test_a_live_logs_segment_is_not_replayed_by_another_log_on_the_same_file(tmp_path):
    db = tmp_path / "calls.duckdb"
    first = CallLog(db)
    try:
        first.spool.start(("live-1", "t", 0, "p", "m") + (None,) * 15)
        with CallLog(db) as second:  # same process, same file: DuckDB allows it
            assert second.recovered == 0
            assert second.execute("SELECT count(*) FROM calls") == [(0,)]
    finally:
        first.close()


# --- the running log's spool --------------------------------------------------------------


def test_close_removes_the_spool_and_in_memory_or_none_has_none(tmp_path):
    db = tmp_path / "calls.duckdb"
    with CallLog(db) as log:
        log.append(make_record(1))
        assert log.spool is not None and segments(db)
    assert not spool_dir(db).exists()
    with CallLog(tmp_path / "none.duckdb", durability="none") as log:
        log.append(make_record(1))
        assert log.spool is None
    assert not spool_dir(tmp_path / "none.duckdb").exists()
    with CallLog(":memory:") as log:
        assert log.spool is None


def test_every_appended_row_is_spooled_before_it_is_queued(tmp_path):
    db = tmp_path / "calls.duckdb"
    with CallLog(db, flush_interval=3600, batch_size=10**6) as log:
        for i in range(5):
            log.append(make_record(i))
        assert log.pending_rows == 5  # nothing inserted yet...
        (segment,) = segments(db)
        ends = [values for kind, values in read_segment(segment) if kind == "end"]
        assert [v[0] for v in ends] == [f"call-{i:07d}" for i in range(5)]  # ...all spooled


def test_rotated_segments_are_deleted_once_written_and_open_starts_carried_over(tmp_path):
    committed = [0]
    spool = Spool(tmp_path / "s.spool", committed=lambda: committed[0], segment_bytes=1_000)
    start = ("in-flight", "t", 0, "p", "m") + (None,) * 15
    spool.start(start)
    for i in range(40):
        with spool.lock:
            spool.write_end(make_record(i))
            spool.ends += 1
    files = sorted((tmp_path / "s.spool").iterdir())
    assert len(files) >= 3  # rotated, nothing deleted: the writer has committed nothing
    committed[0] = 40  # the writer caught up
    with spool.lock:
        spool.write_end(make_record(99))
        spool.ends += 1
    # One segment in use, and one written one kept, emptied, for the next rotation.
    kept = [read_segment(path) for path in sorted((tmp_path / "s.spool").iterdir())]
    assert sorted(len(frames) for frames in kept) == [0, 2]
    kinds = [(kind, values[0]) for frames in kept for kind, values in frames]
    assert ("start", "in-flight") in kinds  # the call still in flight survives the rotation
    assert ("end", make_record(99).call_id) in kinds
    spool.close(delete=True)
    assert not (tmp_path / "s.spool").exists()


def test_durability_is_checked(tmp_path):
    with pytest.raises(StoreError, match="durability"):
        CallLog(tmp_path / "x.duckdb", durability="paranoid")
    with pytest.raises(StoreError, match="fsync_interval"):
        CallLog(tmp_path / "x.duckdb", fsync_interval=-1)


def test_fsync_after_every_write(tmp_path):
    db = tmp_path / "calls.duckdb"
    with CallLog(db, durability="fsync", fsync_interval=0) as log:
        log.append(make_record(1))
        assert log.spool is not None and log.spool.durability == "fsync"
    assert rows(db)[0][0] == "call-0000001"


# --- config -------------------------------------------------------------------------------


def test_log_durability_from_config(tmp_path):
    from aigw_lab.config import load_config
    from aigw_lab.gateway import Gateway

    path = tmp_path / "gw.toml"
    base = '[gateway]\ndb = "calls.duckdb"\n[providers.sim]\nkind = "simulated"\n'
    path.write_text(base + '[log]\ndurability = "fsync"\nfsync_interval = 0.01\n')
    assert dict(load_config(path).log_options) == {"durability": "fsync", "fsync_interval": 0.01}
    with Gateway.from_config(path) as gateway:
        assert gateway.log.spool.durability == "fsync"
    path.write_text(base + '[log]\ndurability = "none"\n')
    with Gateway.from_config(path) as gateway:
        assert gateway.log.spool is None
    for bad, message in [
        ('durability = "always"', "not a durability level"),
        ("fsync_interval = -1", "fsync_interval"),
        ("fsync_interval = true", "fsync_interval"),
        ("durabilty = 'os'", "durabilty"),
    ]:
        path.write_text(base + f"[log]\n{bad}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_start_fields_are_call_columns():
    from aigw_lab.store.records import CALL_COLUMNS

    assert set(START_FIELDS) <= set(CALL_COLUMNS)


def test_a_rotated_segment_outlives_every_row_in_it_the_writer_has_not_written(tmp_path):
    # Rows are written in append order, so "committed = c" means the first c rows are in the
    # database. Whatever c is, every later row must still be in some segment.
    committed = [0]
    spool = Spool(tmp_path / "s.spool", committed=lambda: committed[0], segment_bytes=600)
    written: list[str] = []
    for i in range(120):
        committed[0] = max(0, i - 7)  # the writer trails the appends by 7 rows
        record = make_record(i)
        with spool.lock:
            spool.write_end(record)
            spool.ends += 1
        written.append(record.call_id)
        on_file = {
            values[0]
            for path in (tmp_path / "s.spool").iterdir()
            for kind, values in read_segment(path)
            if kind == "end"
        }
        assert set(written[committed[0] :]) <= on_file, i
    assert len(list((tmp_path / "s.spool").iterdir())) <= 4  # and old segments do go
    spool.close(delete=True)


def test_threads_starting_and_ending_calls_across_rotations_lose_no_frame(tmp_path):
    import threading

    spool = Spool(tmp_path / "s.spool", committed=lambda: 0, segment_bytes=4_000)
    threads, per_thread = 8, 300

    def work(t: int) -> None:
        for i in range(per_thread):
            call_id = f"call-{t}-{i}"
            spool.start((call_id, "t", 1767225600.0, "p", "m") + (None,) * 15)
            with spool.lock:
                spool.write_end(make_record(0, call_id=call_id))
                spool.ends += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    frames = [f for path in (tmp_path / "s.spool").iterdir() for f in read_segment(path)]
    ends = [values[0] for kind, values in frames if kind == "end"]
    starts = {values[0] for kind, values in frames if kind == "start"}
    expected = {f"call-{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert sorted(ends) == sorted(expected)  # every end once (nothing committed: all kept)
    assert starts == expected
    assert len(list((tmp_path / "s.spool").iterdir())) > 10  # it did rotate, many times
    spool.close(delete=True)


def test_rows_a_failing_close_could_not_write_are_replayed_at_the_next_open(tmp_path, gate):
    db = tmp_path / "calls.duckdb"
    log = CallLog(db, before_insert=gate)
    gate.fail_with = OSError(5, "Input/output error")
    log.append_many(make_record(i) for i in range(3))
    with pytest.warns(CallLogWarning), pytest.raises(StoreError, match="not written"):
        log.close()
    assert segments(db)  # kept: the rows are nowhere else but the spill file
    with CallLog(db) as reopened:
        assert reopened.recovered == 3
        assert reopened.execute("SELECT count(*) FROM calls") == [(3,)]


def test_a_spool_that_cannot_grow_warns_and_the_calls_go_on(tmp_path, monkeypatch):
    import errno

    from aigw_lab.store import spool as spool_module

    spool = Spool(tmp_path / "s.spool", committed=lambda: 0, segment_bytes=600)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module._Segment, "__init__", disk_full)
    with pytest.warns(CallLogWarning, match="cannot grow"):
        for i in range(20):  # enough to need a second segment
            with spool.lock:
                spool.write_end(make_record(i))
                spool.ends += 1
    assert isinstance(spool.failed, OSError)
    spool.start(("after", "t", 0.0, "p", "m") + (None,) * 15)  # a no-op now, not an error
    monkeypatch.undo()
    spool.close(delete=False)
    (kept,) = (tmp_path / "s.spool").iterdir()
    kept_ids = [values[0] for _, values in read_segment(kept)]
    assert 0 < len(kept_ids) < 20  # what fitted before the disk filled is still there
    assert kept_ids == [make_record(i).call_id for i in range(len(kept_ids))]
