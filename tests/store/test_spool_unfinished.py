"""End frames holding unfinished rows (kind ``u``, `aigw_lab.store.spool_rows`).

A spooled log storing bodies in full now takes the gateway's success rows unfinished, as a log
without a spool does: the writer thread finishes them in batches, and the end frame written
before the call returns holds what the row is made from. These tests hold a replayed ``u``
frame to the row the writer stores (hostile text, oversize bodies, any common request), check
a real crash (``os._exit`` with every row still only in the spool, across rotations), that a
row no ``u`` frame can hold falls back to a finished ``e`` frame, and that segments of ``e``
frames (what every earlier version wrote, and what a log under a body policy still writes)
replay beside ``u`` ones.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab.gateway.records import success_record, success_values_later
from aigw_lab.store import CallLog
from aigw_lab.store.records import CallRecord
from aigw_lab.store.sanitize import sanitize_record
from aigw_lab.store.spool import Spool, read_segment, spool_dir
from aigw_lab.store.spool_replay import FRAME_HEADER
from aigw_lab.store.spool_rows import UNFINISHED_KIND, plain_item
from aigw_lab.store.unfinished import finish_batch, finish_row
from aigw_lab.types import ChatRequest
from tests.gateway.test_row_building import HOSTILE, REQUEST, SENDABLE, _context, _response


def _spool(tmp_path, name: str = "s", **options) -> Spool:  # noqa: ANN003
    return Spool(tmp_path / name, committed=lambda: 0, **options)


def _kinds(path) -> list[bytes]:  # noqa: ANN001
    """The kinds of the frames in one segment file, in order."""
    data, offset, kinds = path.read_bytes(), 0, []
    while offset < len(data) and data[offset] != 0:
        kind, length, _ = FRAME_HEADER.unpack_from(data, offset)
        kinds.append(kind)
        offset += FRAME_HEADER.size + length
    return kinds


def _item(values: tuple, max_body_chars: int) -> tuple:
    """The unfinished row as a spooled log queues and spools it: its request in plain
    fields (given so by the gateway, `success_values_later(plain=True)`, or put so here)."""
    if type(values[CallRecord._fields.index("request_json")]) is tuple:
        return values, max_body_chars
    return plain_item(values, max_body_chars)


def _replayed(spool: Spool, values: tuple, max_body_chars: int) -> tuple:
    """``values`` written as a ``u`` frame into ``spool``, read back."""
    with spool.lock:
        assert spool.write_unfinished(_item(values, max_body_chars))
        spool.ends += 1
    ends = [v for kind, v in read_segment(spool._segment.path) if kind == "end"]
    return ends[-1]


def _calling_thread_row(ctx, response, max_body_chars: int) -> tuple:  # noqa: ANN001
    """What the calling thread stored before: the finished row, sanitised."""
    row = success_record(ctx, response, api_format="openai")
    return tuple(sanitize_record(row, max_body_chars=max_body_chars))


@pytest.mark.parametrize("plain", [True, False], ids=["plain-request", "request-object"])
@pytest.mark.parametrize(
    ("body", "limit"),
    [(HOSTILE, 1_000_000), (HOSTILE * 400, 5_000), ("plain", 3)],
    ids=["hostile", "hostile-over-max_body_chars", "tiny-limit"],
)
def test_a_replayed_unfinished_frame_is_the_row_the_writer_stores(
    tmp_path, body, limit, plain
) -> None:
    request = ChatRequest.create(
        "prov-a/model-b", [{"role": "user", "content": body}], seed=10**30 % 2**62, stop="\x00"
    )
    ctx, response = _context(request), _response(text=body[::-1] + "\ud800")
    values = success_values_later(ctx, response, api_format="openai", plain=plain)
    assert values is not None
    spool = _spool(tmp_path)
    try:
        replayed = _replayed(spool, values, limit)
    finally:
        spool.close(delete=True)
    writer_row, problem = finish_row((values, limit), None)
    assert problem is None
    assert replayed == tuple(writer_row) == _calling_thread_row(ctx, response, limit)
    assert "invalid_text" in replayed[CallRecord._fields.index("flags")]


def test_the_labelled_request_of_the_row_tests_replays_with_every_column(tmp_path) -> None:
    ctx, response = _context(REQUEST), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    spool = _spool(tmp_path)
    try:
        replayed = _replayed(spool, values, 1_000_000)
    finally:
        spool.close(delete=True)
    assert replayed == _calling_thread_row(ctx, response, 1_000_000)


_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)


@settings(max_examples=100, deadline=None)
@given(
    prompts=st.lists(
        st.tuples(st.sampled_from(["user", "system", "assistant"]), _TEXT), min_size=1, max_size=3
    ),
    answer=_TEXT,
    temperature=st.none() | st.floats(0.0, 2.0),
    top_p=st.none() | st.floats(0.01, 1.0),
    max_tokens=st.none() | st.integers(1, 100_000),
    seed=st.none() | st.integers(-(2**70), 2**70),
    stop=st.none() | st.lists(_TEXT, min_size=1, max_size=2),
    tags=st.dictionaries(_TEXT, _TEXT, max_size=2),
    limit=st.sampled_from([5, 40, 1_000_000]),
)
def test_any_common_request_replays_as_the_calling_thread_built_it(
    tmp_path_factory, prompts, answer, temperature, top_p, max_tokens, seed, stop, tags, limit
) -> None:  # noqa: ANN001
    request = ChatRequest.create(
        "p/m",
        [{"role": role, "content": text} for role, text in prompts],
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed,
        stop=stop,
        tags=tags,
    )
    ctx, response = _context(request), _response(text=answer, tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai", plain=True)
    assert values is not None
    spool = _spool(tmp_path_factory.mktemp("spool"))
    try:
        replayed = _replayed(spool, values, limit)
    finally:
        spool.close(delete=True)
    # The writer's row from the plain fields, and the replayed one, are the calling thread's.
    assert replayed == tuple(finish_row((values, limit), None)[0])
    assert replayed == _calling_thread_row(ctx, response, limit)


class _Half(float):
    """A float subclass: marshal refuses it, so no frame can hold the row unfinished."""


def test_a_row_no_unfinished_frame_can_hold_is_finished_at_once_and_spooled(tmp_path) -> None:
    request = ChatRequest.create("p/m", "hi", temperature=_Half(0.5))
    ctx, response = _context(request), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    spool = _spool(tmp_path)
    try:
        with spool.lock:
            assert spool.write_unfinished(_item(values, 1_000)) is None
        assert read_segment(spool._segment.path) == []  # nothing written
    finally:
        spool.close(delete=True)
    with CallLog(tmp_path / "calls.duckdb") as log:
        log.append_later(values, 1_000)
        assert type(log._writer._buffer[-1]) is CallRecord  # finished here
        segment = next(spool_dir(log.path).glob("*.spool"))
        assert _kinds(segment) == [b"e"]
        log.flush()
        stored = log.execute("SELECT request_json FROM calls")
    assert stored == [(request.to_json(),)]


def test_a_spooled_log_keeps_no_container_alive_while_its_rows_wait(tmp_path) -> None:
    # Held as tuples (the item, its values, the plain request, its messages), a waiting row
    # outlived the young collections: at 100 calls/s with the 5 s batch age about three
    # tuples per row were promoted to the oldest generation, so full collections, which walk
    # every tracked object, came more often on the calling threads (docs/performance.md,
    # session 11). The writer is given the `u` frame's bytes, which the collector ignores.
    ctx, response = _context(REQUEST), _response()
    values = success_values_later(ctx, response, api_format="openai", plain=True)
    assert values is not None
    with CallLog(tmp_path / "calls.duckdb", flush_interval=3600.0) as log:
        for _ in range(3):
            log.append_later(values, 1_000_000)
        waiting = list(log._writer._buffer)
        assert len(waiting) == 3
        assert not any(gc.is_tracked(item) for item in waiting)
        # What the writer makes of each is the row it made of the tuples.
        finish_batch(waiting, None)
        expected = tuple(finish_row((values, 1_000_000), None)[0])
        assert [tuple(row) for row in waiting] == [expected] * 3
        log.flush()
        assert log.execute("SELECT count(*) FROM calls") == [(3,)]


# --- a real crash ----------------------------------------------------------------------------

CRASH = textwrap.dedent(
    """
    import os, sys
    from aigw_lab.gateway import Gateway
    from aigw_lab.providers.base import Price
    from aigw_lab.store import CallLog
    from aigw_lab.testing.fakes import FunctionProvider

    db, calls, finished = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "finished"
    answer = "back: lone \\ud800 surrogate, NUL \\x00, " + "x" * 3000
    provider = FunctionProvider(lambda request: answer, "up", models=("m",))
    log = CallLog(db, flush_interval=3600, batch_size=10**6)
    log._unfinished_ends = not finished
    gateway = Gateway([provider], log=log, prices={"up/m": Price(0.5, 1.5)}, max_body_chars=2000)
    for i in range(calls):
        gateway.chat("up/m", [{"role": "user", "content": f"question {i} \\x00 " + "y" * 2500}],
                     temperature=0.5, seed=i, tags={"i": str(i)})
    os._exit(0)  # no flush, no finalizer: every row exists only in the spool
    """
)


def _crash(tmp_path, db, calls: int, rows: str) -> None:  # noqa: ANN001
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(script), str(db), str(calls), rows]
    subprocess.run(args, env=env, check=True, timeout=120)


_COMPARED = (
    "SELECT request_json, response_text, flags, status, input_tokens, output_tokens, "
    "cost_usd, tags_json, bodies, provider_name, request_model FROM calls ORDER BY tags_json"
)


@pytest.mark.slow  # two subprocesses of 160 gateway calls: ~20 s at load 30
def test_a_killed_process_rows_replay_from_unfinished_frames_as_from_finished_ones(
    tmp_path,
) -> None:
    # 160 calls of ~6 kB: several 256 KiB segments, so rotations carry the frames over.
    results = {}
    for rows in ("later", "finished"):
        db = tmp_path / f"{rows}.duckdb"
        _crash(tmp_path, db, 160, rows)
        segments = sorted(spool_dir(db).glob("*.spool"))
        assert len(segments) >= 3
        kinds = {kind for path in segments for kind in _kinds(path)}
        assert kinds == ({b"s", UNFINISHED_KIND} if rows == "later" else {b"s", b"e"})
        with CallLog(db) as log:
            assert log.recovered == 160
            results[rows] = log.execute(_COMPARED)
            statuses = log.execute("SELECT DISTINCT status FROM calls")
        assert statuses == [("ok",)]  # every call ended: none interrupted
    assert results["later"] == results["finished"]
    request_json, response_text, flags = results["later"][0][:3]
    assert len(response_text) <= 2000 + 100 and "\ufffd surrogate" in response_text
    assert "\\u0000" in request_json and "truncated" in " ".join(flags)


def test_replay_of_unfinished_frames_is_idempotent(tmp_path) -> None:
    import shutil

    db = tmp_path / "calls.duckdb"
    _crash(tmp_path, db, 5, "later")
    saved = tmp_path / "saved"
    shutil.copytree(spool_dir(db), saved)
    with CallLog(db) as log:
        first = log.execute("SELECT call_id, request_json FROM calls ORDER BY call_id")
    shutil.copytree(saved, spool_dir(db))  # as if the replay had crashed before deleting
    with CallLog(db) as log:
        assert log.recovered == 0
        again = log.execute("SELECT call_id, request_json FROM calls ORDER BY call_id")
    assert again == first and len(first) == 5


def test_a_segment_mixing_finished_and_unfinished_ends_replays_both(tmp_path) -> None:
    # `e` frames are what every earlier version wrote and what a log under a body policy
    # (or a row no `u` frame holds) still writes: one segment can hold both kinds.
    ctx, response = _context(SENDABLE_REQUEST), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    finished = sanitize_record(success_record(ctx, response, api_format="openai")._replace(
        call_id="finished-1"), max_body_chars=1_000_000)  # fmt: skip
    spool = _spool(tmp_path)
    try:
        with spool.lock:
            spool.write_end(finished)
            assert spool.write_unfinished(_item(values, 1_000_000))
        path = spool._segment.path
        assert _kinds(path) == [b"e", UNFINISHED_KIND]
        ends = [v for kind, v in read_segment(path) if kind == "end"]
    finally:
        spool.close(delete=True)
    assert ends[0] == tuple(finished)
    assert ends[1] == _calling_thread_row(ctx, response, 1_000_000)
    assert ends[0][1:] == ends[1][1:]  # the same row but for its id


SENDABLE_REQUEST = ChatRequest.create("p/m", [{"role": "user", "content": SENDABLE}], seed=3)


@pytest.mark.parametrize("mode", ["full", "redacted", "hash", "none"])
def test_under_a_body_policy_no_raw_text_reaches_the_spool_file(tmp_path, mode: str) -> None:
    # Only a log storing bodies in full writes unfinished rows (raw text, as it stores it);
    # every other mode applies its policy on the calling thread, before the spool.
    from aigw_lab.store.redact import BodyPolicy
    from tests.gateway.test_row_building import _gateway

    db = tmp_path / "calls.duckdb"
    log = CallLog(db, bodies=BodyPolicy(mode=mode, hash_key=b"k" * 32))
    secret = "write to alice.secret@example.com please"
    with _gateway(tmp_path, log) as gw:
        gw.chat("up/m", [{"role": "user", "content": secret}], temperature=0.5)
        raw = b"".join(path.read_bytes() for path in spool_dir(db).glob("*.spool"))
        kinds = [kind for path in spool_dir(db).glob("*.spool") for kind in _kinds(path)]
    log.close()
    assert (b"alice.secret@example.com" in raw) is (mode == "full")
    assert kinds == ([b"s", UNFINISHED_KIND] if mode == "full" else [b"s", b"e"])


def test_threads_writing_unfinished_ends_across_rotations_lose_no_frame(tmp_path) -> None:
    import threading

    spool = Spool(tmp_path / "s.spool", committed=lambda: 0, segment_bytes=4_000)
    ctx, response = _context(SENDABLE_REQUEST), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    threads, per_thread = 6, 150

    def work(t: int) -> None:
        for i in range(per_thread):
            call_id = f"call-{t}-{i}"
            spool.start((call_id, "t", 1767225600.0, "p", "m") + (None,) * 15)
            with spool.lock:
                assert spool.write_unfinished(_item((call_id, *values[1:]), 1_000_000))
                spool.ends += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    paths = list((tmp_path / "s.spool").iterdir())
    frames = [f for path in paths for f in read_segment(path)]
    ends = [values[0] for kind, values in frames if kind == "end"]
    starts = {values[0] for kind, values in frames if kind == "start"}
    expected = {f"call-{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert sorted(ends) == sorted(expected)  # every end once (nothing committed: all kept)
    assert starts == expected
    assert len(paths) > 10  # it did rotate, many times
    assert {kind for path in paths for kind in _kinds(path)} == {b"s", UNFINISHED_KIND}
    spool.close(delete=True)


def test_a_named_message_is_stored_the_same_from_plain_fields(tmp_path) -> None:
    # The plain fields' fast encoder writes only unnamed messages; a name or a tool call id
    # rebuilds the request for its encoder, which must give the request's own text.
    request = ChatRequest.create(
        "p/m",
        [
            {"role": "user", "content": "hi", "name": "alice"},
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        temperature=0.5,
        stop=["\n"],
    )
    ctx, response = _context(request), _response(tool_calls=None)
    values = success_values_later(ctx, response, api_format="openai", plain=True)
    assert values is not None
    row, problem = finish_row((values, 1_000_000), None)
    assert problem is None
    assert row.request_json == request.to_json()
    spool = _spool(tmp_path)
    try:
        assert _replayed(spool, values, 1_000_000) == tuple(row)
    finally:
        spool.close(delete=True)
