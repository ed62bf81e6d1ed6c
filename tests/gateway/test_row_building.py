"""The call-log row as the gateway builds it on the calling thread (issue 13 §1).

`success_record` builds its row in column order, and `ChatRequest.to_json` writes the common
request directly: both for speed. These tests hold them to what they replaced, byte for byte:
the keyword-built row of the previous `success_record` (kept here as the oracle) with a
distinct value in every column, and the JSON encoder's text for any request, hostile text
(lone surrogates, NULs, every code point) and odd numbers included.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.records import (
    budget_charge,
    experiment_coordinates,
    success_record,
    to_json,
)
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.types import (
    _JSON,
    ChatRequest,
    ChatResponse,
    ContentPart,
    Latency,
    Message,
    Usage,
    _plain_request_json,
)


def keyword_success_record(
    ctx: CallContext, response: ChatResponse, *, api_format: str | None
) -> CallRecord:
    """The previous `success_record`, every column by keyword: the oracle."""
    usage = response.usage
    latency = response.latency
    request = ctx.request
    run_id, item_id, target, repetition = experiment_coordinates(request.metadata)
    return CallRecord(
        call_id=response.call_id or "",
        trace_id=ctx.trace_id,
        timestamp=datetime.fromtimestamp(ctx.started_wall, UTC),
        provider_name=ctx.provider_name,
        request_model=ctx.model,
        response_model=response.model,
        response_id=response.response_id,
        api_format=api_format,
        request_json=_JSON.encode(request.to_dict()),
        response_text=response.text,
        finish_reason=response.finish_reason,
        tool_calls_json=to_json(response.tool_calls),
        input_tokens=usage.input_tokens if usage.known else None,
        output_tokens=usage.output_tokens if usage.known else None,
        cache_read_input_tokens=usage.cache_read_tokens if usage.known else None,
        cache_creation_input_tokens=usage.cache_write_tokens if usage.known else None,
        reasoning_tokens=usage.reasoning_tokens if usage.known else None,
        cost_usd=response.cost_usd,
        budget_usd=budget_charge(ctx, response.cost_usd, answered=True),
        latency_ms=latency.total_ms,
        ttfb_ms=latency.ttfb_ms,
        ttft_ms=latency.ttft_ms,
        upstream_ms=latency.upstream_ms,
        overhead_ms=latency.overhead_ms,
        stream=ctx.stream,
        cache_status=response.cache_status,
        cache_similarity=ctx.cache_similarity,
        attempt=ctx.attempt,
        fallback_from=ctx.fallback_from,
        user_id=request.user,
        tenant_id=request.tenant,
        experiment_id=request.experiment_id,
        tags_json=to_json(request.tags),
        metadata_json=to_json(request.metadata),
        simulated=response.simulated,
        route_policy=ctx.route_policy,
        propensity=ctx.propensity,
        shadow_of=ctx.shadow_of,
        run_id=run_id,
        item_id=item_id,
        target=target,
        repetition=repetition,
    )


def _context(request: ChatRequest, **fields: Any) -> CallContext:
    ctx = CallContext(
        request,
        "prov-a",
        "model-b",
        "trace-c",
        stream=True,
        started=10.0,
        started_wall=1_765_000_000.123456,
        gateway=None,  # type: ignore[arg-type]
    )
    ctx.attempt = 3
    ctx.fallback_from = "prov-z/model-y"
    ctx.cache_status = "miss"
    ctx.cache_similarity = 0.875
    ctx.budget_estimate_usd = 0.5
    ctx.route_policy = "policy-d"
    ctx.propensity = 0.25
    ctx.shadow_of = None
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def _response(**fields: Any) -> ChatResponse:
    values: dict[str, Any] = {
        "text": "answer-e",
        "finish_reason": "length",
        "usage": Usage(
            input_tokens=11,
            output_tokens=12,
            cache_read_tokens=13,
            cache_write_tokens=14,
            reasoning_tokens=5,
        ),
        "provider": "prov-a",
        "model": "model-b-2026",
        "latency": Latency(total_ms=40.5, ttfb_ms=20.25, ttft_ms=21.125, upstream_ms=30.0),
        "cost_usd": 0.0625,
        "cache_status": "upstream_hit",
        "attempts": 3,
        "response_id": "resp-f",
        "tool_calls": (
            MappingProxyType({"id": "t1", "type": "function", "function": {"name": "g"}}),
        ),
        "simulated": True,
        "call_id": "call-g",
        "trace_id": "trace-c",
    }
    values.update(fields)
    return ChatResponse(**values)


REQUEST = ChatRequest.create(
    "prov-a/model-b",
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi \x00 there"}],
    temperature=0.7,
    max_tokens=16,
    user="user-h",
    tenant="tenant-i",
    experiment_id="exp-j",
    tags={"team": "k"},
    metadata={
        "note": "l",
        "aigw_experiment": {
            "run_id": "run-m",
            "item_id": "item-n",
            "target": "t-o",
            "repetition": 2,
        },
    },
)


def test_every_column_of_a_success_row_is_the_keyword_built_one() -> None:
    ctx = _context(REQUEST)
    response = _response()
    row = success_record(ctx, response, api_format="openai")
    expected = keyword_success_record(ctx, response, api_format="openai")
    assert type(row) is CallRecord
    assert len(row) == len(CALL_COLUMNS)
    assert row._asdict() == expected._asdict()
    # Distinct values really reached distinct columns (a swapped pair would not compare equal
    # only if the two differ): the columns this row sets are all different from each other.
    set_values = [repr(v) for v in expected if v is not None]
    assert len(set(set_values)) >= 40


@pytest.mark.parametrize(
    ("ctx_fields", "response_fields", "request_"),
    [
        ({}, {"usage": Usage(input_tokens=0, output_tokens=0, known=False)}, REQUEST),
        ({}, {"latency": Latency(total_ms=5.0, ttfb_ms=None, ttft_ms=None)}, REQUEST),
        ({"shadow_of": "call-live"}, {"cost_usd": None, "tool_calls": None}, REQUEST),
        ({"budget_estimate_usd": None}, {"call_id": None}, ChatRequest.create("a/b", "x")),
        ({"cache_similarity": None, "fallback_from": None}, {}, ChatRequest.create("a/b", "y")),
        (
            {},
            {"latency": Latency(total_ms=5.0, ttfb_ms=1.0, ttft_ms=2.0, upstream_ms=9.0)},
            REQUEST,
        ),
    ],
)
def test_success_rows_of_other_shapes_equal_the_keyword_built_ones(
    ctx_fields: dict[str, Any], response_fields: dict[str, Any], request_: ChatRequest
) -> None:
    ctx = _context(request_, **ctx_fields)
    response = _response(**response_fields)
    row = success_record(ctx, response, api_format=None)
    assert tuple(row) == tuple(keyword_success_record(ctx, response, api_format=None))


# --- ChatRequest.to_json: the direct path against the encoder ---------------------------------

# Every code point, lone surrogates and NUL included (hypothesis leaves surrogates out of
# text by default).
_ANY_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)
)
_NUMBERS = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


@st.composite
def requests(draw: st.DrawFn) -> ChatRequest:
    plain = st.builds(
        Message,
        st.sampled_from(["system", "user", "assistant", "tool"]),
        _ANY_TEXT,
    )
    other = st.one_of(
        st.builds(
            Message, st.just("user"), st.tuples(st.builds(ContentPart, st.just("text"), _ANY_TEXT))
        ),
        st.builds(Message, st.just("user"), _ANY_TEXT, name=_ANY_TEXT),
        st.builds(Message, st.just("tool"), _ANY_TEXT, tool_call_id=_ANY_TEXT),
    )
    # Mostly requests of the shape written directly, so odd values meet that path.
    messages = draw(st.lists(st.one_of(plain, plain, plain, other), min_size=0, max_size=4))
    rare = draw(st.integers(min_value=0, max_value=5)) == 0
    stop = draw(st.one_of(st.none(), st.lists(_ANY_TEXT, max_size=3).map(tuple)))
    return ChatRequest(
        model=draw(_ANY_TEXT),
        messages=tuple(messages),
        temperature=draw(_NUMBERS),
        top_p=draw(_NUMBERS),
        max_tokens=draw(_NUMBERS),
        seed=draw(_NUMBERS),
        stop=stop,
        tools=({"type": "function"},) if rare and draw(st.booleans()) else None,
        tool_choice="auto" if rare and draw(st.booleans()) else None,
        extra=MappingProxyType({"k": 1} if rare and draw(st.booleans()) else {}),
    )


@settings(max_examples=150, deadline=None)
@given(requests())
def test_request_json_is_the_encoders_text_for_any_request(request: ChatRequest) -> None:
    assert request.to_json() == _JSON.encode(request.to_dict())


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**64, 0.0, -0.0, 1e16, 1e-7, 0.1, 2.0, 123456789.125, True, False]
    + [math.nan, math.inf, -math.inf],
)
def test_request_json_numbers_match_the_encoder(value: Any) -> None:
    request = ChatRequest(
        model="a/b", messages=(Message("user", "x"),), temperature=value, seed=value
    )
    assert request.to_json() == _JSON.encode(request.to_dict())


def test_the_common_request_is_written_directly_and_the_rest_by_the_encoder() -> None:
    common = ChatRequest.create(
        "a/b", [{"role": "user", "content": "\ud800 lone, \x00 nul"}], temperature=0, stop="END"
    )
    assert _plain_request_json(common) == _JSON.encode(common.to_dict())
    for other in (
        ChatRequest.create("a/b", "x", extra={"top_k": 4}),
        ChatRequest.create("a/b", "x", tools=[{"type": "function"}]),
        ChatRequest.create("a/b", "x", tool_choice="auto"),
        ChatRequest.create("a/b", [{"role": "user", "content": [{"type": "text", "text": "p"}]}]),
        ChatRequest(model="a/b", messages=(Message("user", "x"),), temperature=math.nan),
        ChatRequest(model="a/b", messages=(Message("user", "x"),), max_tokens=True),
    ):
        assert _plain_request_json(other) is None
        assert other.to_json() == _JSON.encode(other.to_dict())


def test_a_huge_body_is_the_same_text() -> None:
    text = "ab\ud800c\x00" * 300_000
    request = ChatRequest.create("a/b", [{"role": "user", "content": text}], max_tokens=5)
    assert request.to_json() == _JSON.encode(request.to_dict())


# --- to_json (tags, metadata, tool calls): the reused C encoder against the encoder ----------

_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    _ANY_TEXT,
    st.datetimes(),  # not JSON: written with default=str, as before
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_ANY_TEXT, inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_ANY_TEXT, _VALUES, max_size=4))
def test_label_json_is_the_encoders_text(labels: dict[str, Any]) -> None:
    expected = _JSON.encode(labels) if labels else None
    assert to_json(labels) == expected
    assert to_json(MappingProxyType(labels)) == expected
    assert to_json((MappingProxyType(labels),)) == _JSON.encode([labels])


def test_a_cyclic_label_raises_what_it_raised_before() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular reference"):
        _JSON.encode({"a": cyclic})
    with pytest.raises(ValueError, match="Circular reference"):
        to_json({"a": cyclic})


# --- hostile text through sanitising, each body mode, the spool and the database -------------

HOSTILE = (
    "lone \ud800 surrogate, \udfff another, NUL \x00 here, a card 4111 1111 1111 1111, "
    'quotes " and \\ backslashes, \\ud800 as text, emoji \U0001f600'
)
# What a client can send (the transport refuses lone surrogates before anything leaves):
# they come back in the upstream's answer instead.
SENDABLE = HOSTILE.replace("\ud800", "?").replace("\udfff", "?")


@pytest.mark.parametrize("mode", ["full", "redacted", "hash", "none"])
@pytest.mark.parametrize("body", [HOSTILE, HOSTILE * 40_000], ids=["short", "over-max_body_chars"])
def test_hostile_rows_come_out_of_sanitising_and_body_modes_as_before(mode: str, body: str) -> None:
    from aigw_lab.store.redact import BodyPolicy
    from aigw_lab.store.sanitize import sanitize_record

    request = ChatRequest.create("prov-a/model-b", [{"role": "user", "content": body}], seed=7)
    ctx = _context(request)
    response = _response(text=body[::-1])
    policy = BodyPolicy(mode=mode, hash_key=b"k" * 32)
    new = policy.apply(sanitize_record(success_record(ctx, response, api_format="openai")))
    old = policy.apply(sanitize_record(keyword_success_record(ctx, response, api_format="openai")))
    assert tuple(new) == tuple(old)


def _gateway(tmp_path, log):  # noqa: ANN001, ANN202
    import httpx

    from aigw_lab.gateway import Gateway
    from aigw_lab.providers.base import HttpClients, Price, ProviderSpec

    answer = {
        "id": "c1",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "back: " + HOSTILE},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    # ASCII JSON: a lone surrogate travels as its escape, as from a real upstream.
    body = json.dumps(answer).encode()

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    spec = ProviderSpec(name="up", kind="openai", base_url="https://up.test/v1", api_key_env="K")
    return Gateway(
        [spec],
        log=log,
        clients=HttpClients(transport=httpx.MockTransport(upstream)),
        env={"K": "k"},
        prices={"up/m": Price(0.5, 1.5)},
    )


@pytest.mark.parametrize("mode", ["full", "redacted", "hash", "none"])
def test_the_end_frame_is_the_stored_row_for_hostile_text(tmp_path, mode: str) -> None:
    from aigw_lab.store import CallLog
    from aigw_lab.store.redact import BodyPolicy
    from aigw_lab.store.spool import read_segment, spool_dir

    db = tmp_path / "calls.duckdb"
    log = CallLog(db, bodies=BodyPolicy(mode=mode, hash_key=b"k" * 32))
    with _gateway(tmp_path, log) as gw:
        gw.chat(
            "up/m", [{"role": "user", "content": SENDABLE}], temperature=0.5, tags={"t": "\x00"}
        )
        ends = [
            values
            for path in sorted(spool_dir(db).glob("*.spool"))
            for kind, values in read_segment(path)
            if kind == "end"
        ]
        log.flush()
        stored = log.query("SELECT * EXCLUDE (timestamp) FROM calls")
    log.close()
    assert len(ends) == 1 and len(stored) == 1
    frame = dict(zip(CALL_COLUMNS, ends[0], strict=True))
    row = stored.iloc[0].to_dict()
    for column in ("request_json", "response_text", "tags_json", "bodies", "call_id", "cost_usd"):
        value = row[column]
        value = None if value is None or value != value else value  # NaN: NULL
        assert frame[column] == value, column
    assert list(row["flags"]) == list(frame["flags"]) == ["invalid_text"]
    if mode == "full":
        assert "\ufffd surrogate" in frame["response_text"] and "\\u0000" in frame["request_json"]


def test_an_encrypted_log_stores_hostile_text_as_before(tmp_path) -> None:
    from aigw_lab.store import CallLog
    from aigw_lab.store.encryption import Encryption
    from aigw_lab.store.sanitize import sanitize_record

    db = tmp_path / "sealed.duckdb"
    key = Encryption("correct horse battery staple 0123456789", "AIGW_LOG_KEY", "builtin")
    log = CallLog(db, encryption=key)
    with _gateway(tmp_path, log) as gw:
        gw.chat("up/m", [{"role": "user", "content": SENDABLE}], seed=3)
        log.flush()
        stored = log.query("SELECT request_json, response_text, flags FROM calls").iloc[0]
    log.close()
    request = ChatRequest.create("m", [{"role": "user", "content": SENDABLE}], seed=3)
    expected = sanitize_record(
        CallRecord(
            call_id="x",
            trace_id="y",
            timestamp=datetime.now(UTC),
            provider_name="up",
            request_model="m",
            request_json=_JSON.encode(request.to_dict()),
            response_text="back: " + HOSTILE,
        )
    )
    assert stored["request_json"] == expected.request_json
    assert stored["response_text"] == expected.response_text
    assert list(stored["flags"]) == ["invalid_text"]
