"""Spool frames across versions: segments a killed process of the previous version left
behind (kinds ``S``/``E``, CRC-32) still replay after an upgrade, beside the current kinds
(``s``/``e``, Adler-32)."""

from __future__ import annotations

import marshal
import struct
import zlib

from aigw_lab.store import CallLog
from aigw_lab.store.spool import read_segment, spool_dir

from .conftest import make_record

START = ("old-start", "t", 1767225600.0, "p", "m", "openai", False, "miss", 1) + (None,) * 6
START += (False, "run-1", "item-1", "p/m", 0)


def frame(kind: bytes, values, checksum) -> bytes:
    payload = marshal.dumps(values, 2)
    return struct.pack("<cII", kind, len(payload), checksum(payload)) + payload


def test_a_segment_left_by_the_previous_version_replays(tmp_path):
    db = tmp_path / "calls.duckdb"
    old_end = make_record(1, call_id="old-end", input_tokens=7)
    new_end = make_record(2, call_id="new-end", input_tokens=8)
    stamp = old_end.timestamp.timestamp()
    directory = spool_dir(db)
    directory.mkdir(mode=0o700)
    segment = directory / "1-00000000-000001.spool"
    segment.write_bytes(
        frame(b"S", START, zlib.crc32)
        + frame(b"E", (stamp, old_end[:2], old_end[3:]), zlib.crc32)
        + frame(b"e", (new_end.timestamp.timestamp(), new_end[:2], new_end[3:]), zlib.adler32)
    )
    segment.chmod(0o600)
    assert [kind for kind, _ in read_segment(segment)] == ["start", "end", "end"]
    with CallLog(db) as log:
        assert log.recovered == 3
        found = log.execute(
            "SELECT call_id, status, input_tokens, run_id FROM calls ORDER BY call_id"
        )
    assert found == [
        ("new-end", "ok", 8, None),
        ("old-end", "ok", 7, None),
        ("old-start", "interrupted", None, "run-1"),
    ]


def test_a_frame_with_the_other_kinds_checksum_is_refused(tmp_path, recwarn):
    # An Adler-32 frame labelled as a CRC-32 one: the kind decides the checksum.
    db = tmp_path / "calls.duckdb"
    record = make_record(1)
    good = make_record(2)
    directory = spool_dir(db)
    directory.mkdir(mode=0o700)
    segment = directory / "1-00000000-000001.spool"
    segment.write_bytes(
        frame(b"E", (record.timestamp.timestamp(), record[:2], record[3:]), zlib.adler32)
        + frame(b"e", (good.timestamp.timestamp(), good[:2], good[3:]), zlib.adler32)
    )
    with CallLog(db) as log:
        assert log.recovered == 1
    assert any("checksum mismatch" in str(w.message) for w in recwarn)


class Killed(BaseException):
    """Stands for the process dying at that instruction."""


def test_a_process_killed_between_a_frames_payload_and_header_leaves_a_clean_segment(
    tmp_path, monkeypatch
):
    from aigw_lab.store import spool as spool_module
    from aigw_lab.store.spool import Spool, read_leftovers

    directory = tmp_path / "s.spool"
    spool = Spool(directory, committed=lambda: 0)
    with spool.lock:
        spool.write_end(make_record(1))
        spool.ends += 1

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(spool_module, "_pack_header", die)
    try:
        spool.start(("in-flight", "t", 1767225600.0, "p", "m") + (None,) * 15)
    except Killed:
        pass
    monkeypatch.undo()
    (segment,) = directory.iterdir()
    data = segment.read_bytes()
    assert data.count(b"in-flight") == 1  # the payload was copied; its header never was
    assert [(kind, values[0]) for kind, values in read_segment(segment)] == [
        ("end", make_record(1).call_id)
    ]
    # What the dead process leaves: the segment as it is now (a clean close would truncate
    # the orphan payload away), in a directory no live spool holds.
    dead = tmp_path / "dead.spool"
    dead.mkdir(mode=0o700)
    (dead / segment.name).write_bytes(data)
    spool.close(delete=True)
    found = read_leftovers(dead)
    try:
        assert (found.torn, found.invalid) == (0, [])  # nothing taken for cut or corrupt
        assert [record.call_id for record in found.records] == [make_record(1).call_id]
    finally:
        found.release(delete=True)


def test_frames_from_before_budget_usd_replay_with_it_null(tmp_path):
    # Schema migration 8 added budget_usd as the last field of both frame kinds; a segment
    # a killed process of the version before left behind has one field fewer in each.
    db = tmp_path / "calls.duckdb"
    # (Fields added since, by migration 9, are cut off too: the first 45 are what it wrote.)
    before = make_record(1, call_id="end-before", input_tokens=7)[:45]
    assert len(START) == 20 and len(before) == 45
    current = START[:0] + ("start-now",) + START[1:] + (0.25,)
    directory = spool_dir(db)
    directory.mkdir(mode=0o700)
    segment = directory / "1-00000000-000001.spool"
    segment.write_bytes(
        frame(b"s", START, zlib.adler32)
        + frame(b"e", (before[2].timestamp(), before[:2], before[3:]), zlib.adler32)
        + frame(b"s", current, zlib.adler32)
        + frame(b"s", START[:-1], zlib.adler32)  # older still: refused, not guessed at
    )
    segment.chmod(0o600)
    with CallLog(db) as log:
        assert log.recovered == 3
        found = log.execute("SELECT call_id, status, budget_usd FROM calls ORDER BY call_id")
    assert found == [
        ("end-before", "ok", None),
        ("old-start", "interrupted", None),
        ("start-now", "interrupted", 0.25),
    ]
