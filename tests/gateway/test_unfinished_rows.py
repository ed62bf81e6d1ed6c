"""Success rows finished on the log's writer thread (issue 13 §1; `aigw_lab.store.unfinished`).

For a log without a spool or other sinks, the gateway hands the log a row's values with
``timestamp`` and ``request_json`` left unfinished, and the writer finishes them in a batch.
These tests hold the stored row to the one the calling thread would have built, byte for byte
(hostile text, oversize bodies, every body mode, encryption), check that nothing the caller
or a middleware changes after the call reaches the row, that a request that could still
change is built at once, and that a row whose request cannot be encoded is still written.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab.gateway.records import success_record, success_values_later
from aigw_lab.store import CallLog
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.store.redact import BodyPolicy
from aigw_lab.store.sanitize import sanitize_record
from aigw_lab.store.unfinished import finish_batch, finish_row, is_unfinished
from aigw_lab.store.writer import CallLogWarning
from aigw_lab.types import ChatRequest, Message
from tests.gateway.test_row_building import (
    HOSTILE,
    REQUEST,
    SENDABLE,
    _context,
    _gateway,
    _response,
)

MODES = ["full", "redacted", "hash", "none"]


def _policy(mode: str) -> BodyPolicy:
    return BodyPolicy(mode=mode, hash_key=b"k" * 32)


def _finished_now(ctx, response, mode: str, max_body_chars: int = 1_000_000) -> CallRecord:  # noqa: ANN001
    """What the calling thread stores today: the row, sanitised, then the body policy."""
    row = sanitize_record(
        success_record(ctx, response, api_format="openai"), max_body_chars=max_body_chars
    )
    return _policy(mode).apply(row)


def _finished_later(ctx, response, mode: str, max_body_chars: int = 1_000_000) -> CallRecord:  # noqa: ANN001
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    row, problem = finish_row((values, max_body_chars), _policy(mode))
    assert problem is None
    return row


# --- the finished row is the row of today --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_finished_row_is_the_calling_threads_row_with_every_column_distinct(mode: str) -> None:
    ctx, response = _context(REQUEST), _response()
    later = _finished_later(ctx, response, mode)
    assert type(later) is CallRecord
    assert tuple(later) == tuple(_finished_now(ctx, response, mode))
    assert later.timestamp == datetime.fromtimestamp(ctx.started_wall, UTC)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("body", [HOSTILE, HOSTILE * 40_000], ids=["short", "over-max_body_chars"])
def test_hostile_and_oversize_text_finishes_as_before(mode: str, body: str) -> None:
    request = ChatRequest.create("prov-a/model-b", [{"role": "user", "content": body}], seed=7)
    ctx, response = _context(request), _response(text=body[::-1])
    now = _finished_now(ctx, response, mode, max_body_chars=50_000)
    later = _finished_later(ctx, response, mode, max_body_chars=50_000)
    assert tuple(later) == tuple(now)
    if mode == "full":
        assert later.flags is not None and "invalid_text" in later.flags


_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60)


@settings(max_examples=120, deadline=None)
@given(
    prompts=st.lists(_TEXT, min_size=1, max_size=3),
    answer=_TEXT,
    temperature=st.none() | st.floats(0.0, 2.0),
    stop=st.none() | st.lists(_TEXT, min_size=1, max_size=2),
    tags=st.dictionaries(_TEXT, _TEXT, max_size=2),
    mode=st.sampled_from(MODES),
    limit=st.sampled_from([5, 40, 1_000_000]),
)
def test_any_common_request_finishes_as_the_calling_thread_builds_it(
    prompts: list[str],
    answer: str,
    temperature: float | None,
    stop: list[str] | None,
    tags: dict[str, str],
    mode: str,
    limit: int,
) -> None:
    request = ChatRequest.create(
        "p/m",
        [{"role": "user", "content": p} for p in prompts],
        temperature=temperature,
        stop=stop,
        tags=tags,
    )
    ctx, response = _context(request), _response(text=answer, tool_calls=None)
    assert tuple(_finished_later(ctx, response, mode, limit)) == tuple(
        _finished_now(ctx, response, mode, limit)
    )


# --- what may wait for the writer, and what is read at once --------------------------------


def test_context_changes_after_the_hand_off_do_not_reach_the_row() -> None:
    ctx, response = _context(REQUEST), _response()
    expected = tuple(_finished_now(ctx, response, "full"))
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    # A retry, a fallback or a middleware moves the context on after the row was handed over.
    ctx.attempt, ctx.cache_similarity, ctx.fallback_from = 9, 0.1, "other/model"
    ctx.route_policy, ctx.propensity, ctx.budget_estimate_usd = "later", 0.9, 99.0
    ctx.started_wall += 3600
    row, _ = finish_row((values, 1_000_000), None)
    assert tuple(row) == expected


@pytest.mark.parametrize(
    "request_",
    [
        # Built directly, not by create(): the messages are the caller's list.
        ChatRequest(model="p/m", messages=[Message("user", "hi")]),  # type: ignore[arg-type]
        ChatRequest(model="p/m", messages=(Message("user", "hi"),), stop=["x"]),  # type: ignore[arg-type]
        ChatRequest.create("p/m", "hi", tools=[{"type": "function", "function": {"name": "f"}}]),
        ChatRequest.create("p/m", "hi", extra={"top_k": 4}),
        ChatRequest.create("p/m", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
        ChatRequest.create("p/m", "hi", metadata={"aigw_experiment": {"run_id": ["r"]}}),
    ],
    ids=["messages-list", "stop-list", "tools", "extra", "parts", "mutable-coordinate"],
)
def test_a_request_that_could_still_change_is_not_left_for_later(request_: ChatRequest) -> None:
    assert success_values_later(_context(request_), _response(), api_format=None) is None


def test_finish_batch_finishes_unfinished_rows_in_place_and_keeps_the_order() -> None:
    ctx, response = _context(REQUEST), _response()
    values = success_values_later(ctx, response, api_format="openai")
    ready = sanitize_record(success_record(ctx, response, api_format="openai"))
    batch: list[Any] = [ready, (values, 1_000_000), ready]
    assert [is_unfinished(item) for item in batch] == [False, True, False]
    assert finish_batch(batch, None) == []
    assert batch[0] is ready and batch[2] is ready
    assert tuple(batch[1]) == tuple(ready) and type(batch[1]) is CallRecord


# --- through a real gateway and a real log -------------------------------------------------


def _log(tmp_path, kind: str, mode: str = "full") -> CallLog:  # noqa: ANN001
    bodies = _policy(mode)
    if kind == "memory":
        return CallLog(":memory:", bodies=bodies)
    if kind == "none":
        return CallLog(tmp_path / f"{kind}-{mode}.duckdb", durability="none", bodies=bodies)
    log = CallLog(tmp_path / f"{kind}-{mode}.duckdb", bodies=bodies)  # spooled
    # "os-finished": rows finished on the calling thread, end frames holding the finished
    # row (the spool before session 9; the log's private switch, for comparisons).
    log._unfinished_ends = kind != "os-finished"
    return log


def _stored(log: CallLog) -> list[dict[str, Any]]:
    log.flush()
    frame = log.query(
        "SELECT * EXCLUDE (call_id, trace_id, timestamp, latency_ms, ttft_ms, "
        "upstream_ms, overhead_ms, ttfb_ms) FROM calls ORDER BY request_json"
    )
    return json.loads(frame.to_json(orient="records"))


def _calls(gw) -> None:  # noqa: ANN001
    gw.chat("up/m", [{"role": "user", "content": SENDABLE}], temperature=0.5, tags={"t": "\x00"})
    gw.chat("up/m", "plain", seed=3, metadata={"aigw_experiment": {"run_id": "r", "item_id": "i"}})
    gw.chat("up/m", "with a tool", tools=[{"type": "function", "function": {"name": "f"}}])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["memory", "none", "os"])
def test_a_log_taking_rows_unfinished_stores_what_a_log_finishing_them_stores(
    tmp_path, kind: str, mode: str
) -> None:
    later_log, spooled = _log(tmp_path, kind, mode), _log(tmp_path, "os-finished", mode)
    with _gateway(tmp_path, later_log) as gw_later, _gateway(tmp_path, spooled) as gw_now:
        # A spooled log takes them unfinished only when it stores bodies in full.
        assert gw_later._recorder._later is (kind != "os" or mode == "full")
        assert gw_now._recorder._later is False
        _calls(gw_later)
        _calls(gw_now)
        assert _stored(later_log) == _stored(spooled)
        assert len(_stored(later_log)) == 3
    later_log.close()
    spooled.close()


def test_an_encrypted_log_takes_rows_unfinished_and_stores_them_as_before(tmp_path) -> None:
    from aigw_lab.store.encryption import Encryption

    key = Encryption("correct horse battery staple 0123456789", "AIGW_LOG_KEY", "builtin")
    sealed, spooled = CallLog(tmp_path / "sealed.duckdb", encryption=key), _log(tmp_path, "os")
    with _gateway(tmp_path, sealed) as gw_sealed, _gateway(tmp_path, spooled) as gw_now:
        assert gw_sealed._recorder._later is True
        _calls(gw_sealed)
        _calls(gw_now)
        assert _stored(sealed) == _stored(spooled)
    sealed.close()
    spooled.close()


def test_a_sink_or_a_spool_under_a_body_policy_gets_finished_rows(tmp_path) -> None:
    from aigw_lab.gateway.recorder import Recorder
    from aigw_lab.pricing import PriceBook

    class Sink:
        def append(self, record: CallRecord) -> None: ...
        def flush(self) -> None: ...
        def close(self) -> None: ...

    def recorder(log: CallLog | None, sinks: tuple = ()) -> Recorder:  # noqa: ANN001
        return Recorder(
            clock=lambda: 0.0, perf_counter=lambda: 0.0, new_id=lambda: "x",
            prices=PriceBook(), log=log, sinks=sinks, max_body_chars=100,
            api_format=lambda name: None, is_simulated=lambda name: False,
        )  # fmt: skip

    memory, spooled = CallLog(":memory:"), _log(tmp_path, "os")
    redacted, finished = _log(tmp_path, "os", "redacted"), _log(tmp_path, "os-finished")
    try:
        assert recorder(memory)._later is True
        assert recorder(memory, (Sink(),))._later is False
        assert recorder(spooled)._later is True  # its end frames hold unfinished rows
        assert recorder(spooled, (Sink(),))._later is False
        assert recorder(redacted)._later is False  # the policy before the spool
        assert recorder(finished)._later is False
        assert recorder(None, (Sink(),))._later is False
    finally:
        for log in (memory, spooled, redacted, finished):
            log.close()


@pytest.mark.parametrize(
    ("kind", "mode", "queued"),
    [("os", "full", bytes), ("os", "redacted", CallRecord), ("os-finished", "full", CallRecord)],
)
def test_a_spooled_log_queues_a_row_unfinished_only_when_its_frame_can_hold_it(
    tmp_path, kind: str, mode: str, queued: type
) -> None:
    # Full bodies: a `u` end frame, the row finished later from the frame's bytes; a body
    # policy (applied before the spool) or the switch off: finished at once, an `e` frame.
    log = _log(tmp_path, kind, mode)
    ctx, response = _context(REQUEST), _response()
    values = success_values_later(ctx, response, api_format="openai")
    log.append_later(values, 1_000_000)
    assert log._writer._buffer and type(log._writer._buffer[-1]) is queued
    log.close()


def test_a_caller_changing_its_messages_after_the_call_does_not_change_the_row(tmp_path) -> None:
    log = CallLog(":memory:", flush_interval=30.0)  # the row waits in the writer's buffer
    messages = [Message("user", "the original prompt")]
    request = ChatRequest(model="up/m", messages=messages)  # type: ignore[arg-type]
    with _gateway(tmp_path, log) as gw:
        gw.chat(request)
        messages[0] = Message("user", "changed afterwards")
        messages.append(Message("user", "and added to"))
        stored = log.query("SELECT request_json FROM calls")["request_json"].tolist()
    log.close()
    assert len(stored) == 1 and "the original prompt" in stored[0] and "changed" not in stored[0]


def test_a_row_whose_request_cannot_be_encoded_is_still_written(tmp_path) -> None:
    class Unencodable:
        def to_json(self) -> str:
            raise ValueError("no")

    ctx, response = _context(REQUEST), _response()
    values = list(success_values_later(ctx, response, api_format="openai") or ())
    values[CALL_COLUMNS.index("request_json")] = Unencodable()
    log = CallLog(":memory:")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log.append_later(tuple(values), 1_000_000)
        log.flush()
    rows = log.query("SELECT call_id, request_json, cost_usd FROM calls")
    health = log.health()
    log.close()
    assert rows["call_id"].tolist() == ["call-g"] and rows["request_json"].isna().all()
    assert rows["cost_usd"].tolist() == [0.0625]
    assert health.last_error is not None and "request_json" in health.last_error
    assert any(issubclass(w.category, CallLogWarning) for w in caught)


def test_a_body_policy_that_raises_on_the_writer_keeps_the_row_and_the_log(tmp_path) -> None:
    """A raise while finishing a row would stop the writer thread (and every later row with
    it); the paid call keeps its row with its bodies dropped, never stored unredacted."""

    class Broken(BodyPolicy):
        def apply(self, record: CallRecord) -> CallRecord:
            raise RuntimeError("redactor broke")

    ctx, response = _context(REQUEST), _response()
    values = success_values_later(ctx, response, api_format="openai")
    assert values is not None
    row, problem = finish_row((values, 1_000_000), Broken(mode="redacted", hash_key=b"k" * 32))
    assert problem is not None and "RuntimeError" in problem
    assert row.request_json is None and row.response_text is None and row.bodies == "none"
    assert row.cost_usd == 0.0625

    log = CallLog(":memory:")
    log._writer._finish = lambda batch: finish_batch(  # noqa: SLF001 - the writer's hook
        batch, Broken(mode="redacted", hash_key=b"k" * 32)
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        log.append_later(values, 1_000_000)
        log.flush()
        log.append_later(values, 1_000_000)
        log.flush()
    rows = log.query("SELECT call_id, response_text FROM calls")
    health = log.health()
    log.close()
    assert len(rows) == 2 and rows["response_text"].isna().all()
    assert health.last_error is not None and "dropped" in health.last_error


@pytest.mark.parametrize("durability", ["none", "os"])
def test_a_closed_log_sets_the_finished_row_aside(tmp_path, durability: str) -> None:
    log = CallLog(tmp_path / "closed.duckdb", durability=durability)
    with _gateway(tmp_path, log) as gw:
        assert gw._recorder._later is True  # spooled or not, the row goes unfinished
        log.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CallLogWarning)
            gw.chat("up/m", "after close", seed=1)
    spilled = list(tmp_path.glob("calls.unwritten-*.jsonl"))
    assert len(spilled) == 1
    line = json.loads(spilled[0].read_text().splitlines()[0])
    assert json.loads(line["request_json"])["messages"][0]["content"] == "after close"
    assert line["status"] == "ok" and line["timestamp"].startswith("20")


def test_a_writer_without_finish_refuses_unfinished_rows() -> None:
    import duckdb

    from aigw_lab.store.schema import MIGRATIONS, apply_migrations
    from aigw_lab.store.writer import BatchWriter

    conn = duckdb.connect(":memory:")
    apply_migrations(conn, MIGRATIONS, where="test")
    writer = BatchWriter(
        conn, where="test", spill_dir=None, batch_size=10, flush_interval=1.0, max_queue=10
    )
    try:
        with pytest.raises(TypeError, match="finished rows only"):
            writer.append_later(((), 1))
    finally:
        writer.close()


def test_rows_left_unwritten_at_close_are_saved_finished(tmp_path) -> None:
    from aigw_lab.errors import StoreError

    def disk_full(rows: int) -> None:
        raise OSError("No space left on device")

    log = CallLog(tmp_path / "full.duckdb", durability="none", before_insert=disk_full)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CallLogWarning)
        with _gateway(tmp_path, log) as gw:
            gw.chat("up/m", "taken by the writer, then kept", seed=2)
            with pytest.raises(StoreError):
                log.flush()  # the writer took the first row and is retrying it
            # The second waits in the buffer, unfinished, behind the failing batch.
            gw.chat("up/m", "still in the buffer at close", seed=2)
            with pytest.raises(StoreError, match="rows were not written"):
                log.close()
    spilled = list(tmp_path.glob("calls.unwritten-*.jsonl"))
    assert len(spilled) == 1
    lines = [json.loads(line) for line in spilled[0].read_text().splitlines()]
    prompts = [json.loads(line["request_json"])["messages"][0]["content"] for line in lines]
    assert prompts == ["taken by the writer, then kept", "still in the buffer at close"]
    assert all(line["timestamp"].startswith("20") and line["cost_usd"] for line in lines)
