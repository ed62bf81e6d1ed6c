"""The spool's memory-mapped segments against crashes: a process killed (``os._exit``) part
way through a preallocated segment, after rotations; a frame torn at the very end of the
mapped region; and a spool directory holding segments of every format written so far
(``os.write``-era files with CRC-32 frames and no zero tail, session 9's ``u`` frames,
today's) replayed together."""

from __future__ import annotations

import marshal
import os
import struct
import subprocess
import sys
import textwrap
import zlib

from aigw_lab.gateway.records import success_values_later
from aigw_lab.store import CallLog, CallLogWarning
from aigw_lab.store.records import CallRecord
from aigw_lab.store.spool import Spool, read_leftovers, read_segment, spool_dir
from aigw_lab.store.spool_rows import UNFINISHED_KIND, plain_item
from aigw_lab.store.unfinished import finish_row
from aigw_lab.types import ChatRequest
from tests.gateway.test_row_building import SENDABLE, _context, _response

from .conftest import make_record

CRASH = textwrap.dedent(
    """
    import os, sys
    from aigw_lab.gateway import Gateway
    from aigw_lab.providers.base import Price
    from aigw_lab.store import CallLog
    from aigw_lab.testing.fakes import FunctionProvider

    db, calls = sys.argv[1], int(sys.argv[2])
    provider = FunctionProvider(lambda request: "answer " + "z" * 3000, "up", models=("m",))
    log = CallLog(db, flush_interval=3600, batch_size=10**6)
    gateway = Gateway([provider], log=log, prices={"up/m": Price(0.5, 1.5)})
    for i in range(calls):
        gateway.chat("up/m", [{"role": "user", "content": f"q{i} " + "y" * 3000}], seed=i)
    # A call in flight at the kill: its start, no end.
    log.spool.start(("in-flight", "t", 1767225600.0, "up", "m") + (None,) * 16)
    os._exit(0)  # no flush, no finalizer, no truncation: the segments as mapped
    """
)

_REQUEST_JSON = CallRecord._fields.index("request_json")


def _frame(kind: bytes, values, checksum) -> bytes:  # noqa: ANN001
    payload = marshal.dumps(values, 2)
    return struct.pack("<cII", kind, len(payload), checksum(payload)) + payload


def _unfinished_payloads(data: bytes) -> list:
    """The decoded payloads of the ``u`` frames in one segment's bytes."""
    found, offset = [], 0
    while offset < len(data) and data[offset] != 0:
        kind, length, _ = struct.unpack_from("<cII", data, offset)
        if kind == UNFINISHED_KIND:
            found.append(marshal.loads(data[offset + 9 : offset + 9 + length]))
        offset += 9 + length
    return found


def _session_9_frame(values: tuple, max_body_chars: int) -> bytes:
    """A ``u`` frame as session 9 wrote it: ``(max_body_chars, head, plain request, tail)``."""
    (plain_values, _) = plain_item(values, max_body_chars)
    payload = (
        max_body_chars,
        plain_values[:_REQUEST_JSON],
        plain_values[_REQUEST_JSON],
        plain_values[_REQUEST_JSON + 1 :],
    )
    return _frame(UNFINISHED_KIND, payload, zlib.adler32)


def test_a_kill_mid_segment_replays_beside_segments_of_every_earlier_format(tmp_path) -> None:
    db = tmp_path / "calls.duckdb"
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # 60 calls of ~6.5 kB of frames: the first 256 KiB segment fills, rotation carries on.
    subprocess.run([sys.executable, str(script), str(db), "60"], env=env, check=True, timeout=120)
    directory = spool_dir(db)
    new_segments = sorted(directory.glob("*.spool"))
    assert len(new_segments) >= 2  # rotated
    last = new_segments[-1].read_bytes()
    assert len(last) == 256 << 10 and last.endswith(bytes(1024))  # killed mid-segment
    # The gateway's end frames hold the queued (values, max_body_chars) as they are, the
    # request in plain fields (session 10; session 9's held four items).
    shapes = {len(payload) for payload in _unfinished_payloads(new_segments[0].read_bytes())}
    assert shapes == {2}

    # What earlier versions left: an os.write-era segment (CRC-32 kinds, the file exactly
    # its frames) and a session 9 segment (`u` frames of four items, a zero-filled tail).
    old_end = make_record(1, call_id="old-end", input_tokens=7)
    start = ("old-start", "t", 1767225600.0, "p", "m", "openai", False, "miss", 1)
    start += (None,) * 6 + (False, None, None, None, None)
    (directory / "1-00000000-000001.spool").write_bytes(
        _frame(b"S", start, zlib.crc32)
        + _frame(b"E", (old_end.timestamp.timestamp(), old_end[:2], old_end[3:]), zlib.crc32)
    )
    request = ChatRequest.create("p/m", [{"role": "user", "content": SENDABLE}], seed=3)
    ctx, response = _context(request), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    values = ("s9-end", *values[1:])
    (directory / "2-00000000-000001.spool").write_bytes(
        _session_9_frame(values, 1_000_000).ljust(8192, b"\0")
    )
    for path in directory.iterdir():
        path.chmod(0o600)

    with CallLog(db) as log:
        assert log.recovered == 60 + 1 + 2 + 1
        statuses = log.execute("SELECT status, count(*) FROM calls GROUP BY ALL ORDER BY 1")
        assert statuses == [("interrupted", 2), ("ok", 62)]
        interrupted = log.execute(
            "SELECT call_id FROM calls WHERE status = 'interrupted' ORDER BY 1"
        )
        assert interrupted == [("in-flight",), ("old-start",)]
        s9 = log.execute("SELECT * FROM calls WHERE call_id = 's9-end'")
        fresh = log.execute(
            "SELECT request_json, length(response_text), input_tokens FROM calls "
            "WHERE request_json LIKE '%\"q7 %'"
        )
    writer_row, _ = finish_row((values, 1_000_000), None)
    assert tuple(s9[0][: len(writer_row)]) == tuple(writer_row)
    # The request as the gateway sent it (the provider's own model name), encoded by the
    # writer's finisher from the plain fields the frame held.
    sent = ChatRequest.create("m", [{"role": "user", "content": "q7 " + "y" * 3000}], seed=7)
    ((request_json, answer_chars, input_tokens),) = fresh
    assert (request_json, answer_chars) == (sent.to_json(), len("answer ") + 3000)
    assert input_tokens is not None and input_tokens > 0
    assert not directory.exists()  # every segment replayed, then removed


def _item(call_id: str) -> tuple:
    ctx, response = _context(ChatRequest.create("p/m", "hi", seed=1)), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai", plain=True)
    assert values is not None
    return (call_id, *values[1:]), 1_000


def test_a_frame_torn_at_the_very_end_of_the_mapped_region_is_skipped_quietly(
    tmp_path, recwarn
) -> None:
    first, second = _item("call-1"), _item("call-2")
    frame = 9 + len(marshal.dumps(first, 2))
    # A segment exactly two frames long: the second fills the mapping to its last byte.
    spool = Spool(tmp_path / "live.spool", committed=lambda: 0, segment_bytes=2 * frame)
    try:
        with spool.lock:
            assert spool.write_unfinished(first) and spool.write_unfinished(second)
        assert spool._used == len(spool._map) == 2 * frame  # no rotation: it fit exactly
        data = bytearray(spool._segment.path.read_bytes())  # the page cache, as mapped
    finally:
        spool.close(delete=True)
    variants = {
        # The last frame's end never reached the file (the machine died before write-back).
        "zeroed": bytes(data[:-40]) + bytes(40),
        # The file ends inside that frame (its header says more than there is).
        "cut": bytes(data[:-40]),
    }
    for name, content in variants.items():
        dead = tmp_path / f"dead-{name}.spool"
        dead.mkdir(mode=0o700)
        (dead / "1-00000000-000001.spool").write_bytes(content)
        found = read_leftovers(dead)
        try:
            assert (found.torn, found.invalid) == (1, []), name  # cut short, not corrupt
            assert [record.call_id for record in found.records] == ["call-1"], name
        finally:
            found.release(delete=True)
    assert not [w for w in recwarn if issubclass(w.category, CallLogWarning)]


def test_unfinished_frames_of_the_wrong_shape_are_refused_with_a_warning(tmp_path) -> None:
    values, max_body_chars = _item("good")
    bad = [
        ((values[:-1]), max_body_chars),  # a column short
        (values, "1000"),  # max_body_chars not an int
        (list(values), max_body_chars),  # not a tuple of values
        (values, max_body_chars, 0),  # three items: neither shape
    ]
    directory = tmp_path / "calls.duckdb.spool"
    directory.mkdir(mode=0o700)
    frames = b"".join(_frame(UNFINISHED_KIND, payload, zlib.adler32) for payload in bad)
    frames += _frame(UNFINISHED_KIND, (values, max_body_chars), zlib.adler32)
    (directory / "1-00000000-000001.spool").write_bytes(frames)
    found = read_leftovers(directory)
    try:
        assert [record.call_id for record in found.records] == ["good"]
        assert len(found.invalid) == 4
    finally:
        found.release(delete=False)
    assert [kind for kind, _ in read_segment(directory / "1-00000000-000001.spool")] == ["end"]
