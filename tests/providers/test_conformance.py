"""One conformance suite for every provider adapter, direct and through a Cloudflare AI
Gateway, against real wire formats served by `FakeUpstream` over loopback HTTP: answers,
parameters, finish reasons, streams, interruptions, network failures and gateway headers.
Error statuses are in `test_conformance_errors`."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from aigw_lab import errors
from aigw_lab.providers.base import Provider
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.types import ChatResponse, StreamEnd, TextDelta

from .adapters import GATEWAY_TOKEN, Adapter, adapters, make_provider
from .wire_formats import ANSWER, cloudflare_error

# --- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", adapters())
def test_chat_returns_normalised_response(adapter: Adapter, fake: FakeUpstream, clients) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_json(adapter.expected.body, headers={"x-request-id": "req-1"})

    response = provider.chat(adapter.request())

    assert isinstance(provider, Provider)
    assert response.text == ANSWER
    assert response.finish_reason == "stop"
    assert response.usage == adapter.expected.usage
    assert response.response_id == adapter.expected.response_id
    assert response.model == (adapter.expected.model or adapter.model)
    assert response.provider == provider.name
    assert response.raw == adapter.expected.body
    assert response.cost_usd is None
    assert response.cache_status == "none"
    assert response.simulated is False
    latency = response.latency
    assert latency.ttft_ms == latency.total_ms
    assert 0 <= latency.ttfb_ms <= latency.upstream_ms <= latency.total_ms


@pytest.mark.parametrize("adapter", adapters())
def test_request_carries_auth_path_system_prompt_and_params(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_json(adapter.expected.body)
    stop = None if adapter.kind == "workers-ai" else ["\n\n"]  # native Workers AI has no stop

    provider.chat(adapter.request(temperature=0.3, top_p=0.9, max_tokens=64, seed=7, stop=stop))

    sent = fake.last_request
    assert (sent.method, sent.path) == ("POST", adapter.path)
    header, value = adapter.auth_header
    assert sent.headers[header] == value
    body = sent.json
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert "stream" not in body
    user = {"role": "user", "content": "What is the capital of France?"}
    if adapter.wire == "anthropic":
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert body["system"] == "Answer in one sentence."
        assert body["messages"] == [user]
        assert body["max_tokens"] == 64
        assert body["stop_sequences"] == ["\n\n"]
        assert "seed" not in body  # the Messages API has no seed
        assert body["model"] == adapter.model
    else:
        assert body["messages"] == [{"role": "system", "content": "Answer in one sentence."}, user]
        assert body["seed"] == 7
        limit_field = "max_completion_tokens" if adapter.kind == "openai" else "max_tokens"
        assert body[limit_field] == 64
        if adapter.kind == "workers-ai":
            assert "model" not in body  # the model is in the URL
        else:
            assert body["model"] == adapter.model
            assert body["stop"] == ["\n\n"]


@pytest.mark.parametrize("adapter", adapters(wire="anthropic"))
def test_anthropic_sends_a_default_max_tokens(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_json(adapter.expected.body)
    provider.chat(adapter.request())
    assert fake.last_request.json["max_tokens"] == 1024


@pytest.mark.parametrize("adapter", adapters(wire="workers-ai"))
def test_workers_ai_native_refuses_stop_sequences(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    with pytest.raises(errors.InvalidRequestError, match="stop sequences"):
        provider.chat(adapter.request(stop=["END"]))
    assert fake.requests == []


# --- finish reasons ---------------------------------------------------------------------------

_TOOL_CALL = {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip


def _openai_finish(body: dict[str, Any], value: str) -> dict[str, Any]:
    choice = {**body["choices"][0], "finish_reason": value}
    if value in ("tool_calls", "function_call"):
        choice["message"] = {"role": "assistant", "content": None, "tool_calls": [_TOOL_CALL]}
    return {**body, "choices": [choice]}


def _anthropic_finish(body: dict[str, Any], value: str) -> dict[str, Any]:
    out = {**body, "stop_reason": value}
    if value == "tool_use":
        out["content"] = [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                           "input": {"city": "Paris"}}]  # fmt: skip
    return out


def _workers_finish(body: dict[str, Any], value: str) -> dict[str, Any]:
    result = dict(body["result"])
    if value == "length":  # no finish reason on the wire: all of max_tokens=14 was used
        result["usage"] = {"prompt_tokens": 31, "completion_tokens": 14, "total_tokens": 45}
    elif value == "tool_calls":
        result["response"] = None
        result["tool_calls"] = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    return {**body, "result": result}


_FINISH_CASES = {
    "openai": (_openai_finish, [("stop", "stop"), ("length", "length"),
               ("tool_calls", "tool_calls"), ("function_call", "tool_calls"),
               ("content_filter", "content_filter"), ("something_new", "unknown")]),
    "workers-ai-openai": (_openai_finish, [("stop", "stop"), ("length", "length"),
                          ("tool_calls", "tool_calls")]),
    "anthropic": (_anthropic_finish, [("end_turn", "stop"), ("stop_sequence", "stop"),
                  ("max_tokens", "length"), ("tool_use", "tool_calls"),
                  ("refusal", "content_filter"), ("pause_turn", "unknown")]),
    "workers-ai": (_workers_finish, [("stop", "stop"), ("length", "length"),
                   ("tool_calls", "tool_calls")]),
}  # fmt: skip


def _finish_params() -> list[Any]:
    return [
        pytest.param(p.values[0], wire_value, expected, id=f"{p.id}-{wire_value}")
        for p in adapters()
        for wire_value, expected in _FINISH_CASES[p.values[0].wire][1]
    ]


@pytest.mark.parametrize(("adapter", "wire_value", "expected"), _finish_params())
def test_finish_reason_is_normalised(
    adapter: Adapter, wire_value: str, expected: str, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    change = _FINISH_CASES[adapter.wire][0]
    fake.reply_json(change(adapter.expected.body, wire_value))
    max_tokens = 14 if adapter.wire == "workers-ai" and wire_value == "length" else 100

    response = provider.chat(adapter.request(max_tokens=max_tokens))

    assert response.finish_reason == expected
    if expected == "tool_calls":
        (call,) = response.tool_calls
        assert call["type"] == "function"
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


# --- streaming --------------------------------------------------------------------------------


def _check_stream(adapter: Adapter, events: list[Any], provider_name: str) -> ChatResponse:
    *deltas, end = events
    assert all(isinstance(d, TextDelta) and d.text for d in deltas)
    assert isinstance(end, StreamEnd)
    assert "".join(d.text for d in deltas) == ANSWER
    response = end.response
    assert response.text == ANSWER
    assert response.finish_reason == "stop"
    assert response.usage == adapter.expected.usage
    assert response.response_id == adapter.expected.stream_response_id
    assert response.provider == provider_name
    latency = response.latency
    assert 0 <= latency.ttfb_ms <= latency.ttft_ms <= latency.total_ms
    assert latency.upstream_ms <= latency.total_ms
    return response


def _check_stream_request(adapter: Adapter, fake: FakeUpstream) -> None:
    body = fake.last_request.json
    assert body["stream"] is True
    if adapter.wire in ("openai", "workers-ai-openai"):
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("adapter", adapters())
def test_stream_yields_deltas_then_one_end_with_usage(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(adapter.expected.stream, split_at_bytes=[40, 41, 300], chunk_delay=0.001)

    events = list(provider.stream(adapter.request()))

    _check_stream(adapter, events, provider.name)
    assert len(events) == 4  # three text pieces and the end
    _check_stream_request(adapter, fake)


@pytest.mark.parametrize("adapter", adapters())
async def test_astream_yields_deltas_then_one_end_with_usage(
    adapter: Adapter, fake: FakeUpstream, aclients
) -> None:
    provider = make_provider(adapter, fake.url, aclients)
    fake.reply_sse(adapter.expected.stream, chunk_size=17)

    events = [event async for event in provider.astream(adapter.request())]

    _check_stream(adapter, events, provider.name)
    _check_stream_request(adapter, fake)


@pytest.mark.parametrize("adapter", adapters())
async def test_achat_returns_normalised_response(
    adapter: Adapter, fake: FakeUpstream, aclients
) -> None:
    provider = make_provider(adapter, fake.url, aclients)
    fake.reply_json(adapter.expected.body)
    response = await provider.achat(adapter.request())
    assert response.text == ANSWER
    assert response.usage == adapter.expected.usage


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 64])
@pytest.mark.parametrize("adapter", adapters())
def test_stream_survives_any_chunk_boundary(
    adapter: Adapter, chunk_size: int, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(adapter.expected.stream, chunk_size=chunk_size)
    _check_stream(adapter, list(provider.stream(adapter.request())), provider.name)


@pytest.mark.parametrize("adapter", adapters())
def test_stream_with_crlf_and_keepalive_comments(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    wire = ": keep-alive\n\n" + adapter.expected.stream.replace("\n\n", "\n: ping\n\n")
    fake.reply_sse(wire.replace("\n", "\r\n"), chunk_size=7)  # every CRLF gets split somewhere
    _check_stream(adapter, list(provider.stream(adapter.request())), provider.name)


@pytest.mark.parametrize("adapter", adapters(wire="openai"))
def test_openai_stream_assembles_tool_calls(adapter: Adapter, fake: FakeUpstream, clients) -> None:
    from .wire_formats import OPENAI_TOOL_CALL_STREAM

    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(OPENAI_TOOL_CALL_STREAM, chunk_size=11)
    (end,) = list(provider.stream(adapter.request()))
    assert end.response.finish_reason == "tool_calls"
    assert end.response.tool_calls == (
        {"id": "call_Wk3nZ8", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
    )  # fmt: skip


@pytest.mark.parametrize("adapter", adapters(wire="anthropic"))
def test_anthropic_stream_assembles_tool_use(adapter: Adapter, fake: FakeUpstream, clients) -> None:
    from .wire_formats import ANTHROPIC_TOOL_USE_STREAM

    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(ANTHROPIC_TOOL_USE_STREAM, chunk_size=11)
    (end,) = list(provider.stream(adapter.request()))
    assert end.response.finish_reason == "tool_calls"
    (call,) = end.response.tool_calls
    assert call["id"] == "toolu_01Xy9" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert end.response.usage.output_tokens == 41  # cumulative, not 1 + 41


@pytest.mark.parametrize("adapter", adapters(wire="anthropic"))
def test_anthropic_error_event_mid_stream_is_typed(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    from .wire_formats import ANTHROPIC_OVERLOADED_EVENT

    provider = make_provider(adapter, fake.url, clients)
    start = adapter.expected.stream.split("event: content_block_stop")[0]
    fake.reply_sse(start + ANTHROPIC_OVERLOADED_EVENT)
    seen: list[str] = []
    with pytest.raises(errors.OverloadedError) as caught:
        for event in provider.stream(adapter.request()):
            seen.append(event.text)
    assert "".join(seen) == ANSWER
    assert caught.value.retryable and caught.value.status == 529
    assert "Overloaded" in str(caught.value)


# --- interrupted and malformed answers --------------------------------------------------------


def _cut_after_first_text(adapter: Adapter) -> str:
    marker = {"anthropic": "event: content_block_delta\ndata:"}.get(adapter.wire, "data:")
    stream = adapter.expected.stream
    first_text = stream.index("Paris — ")
    return stream[: stream.index("\n\n", first_text) + 2] + marker + ' {"trunc'


@pytest.mark.parametrize("abort", [False, True], ids=["clean-end", "connection-cut"])
@pytest.mark.parametrize("adapter", adapters())
def test_truncated_stream_raises_interrupted_with_partial_text(
    adapter: Adapter, abort: bool, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(_cut_after_first_text(adapter), chunk_size=9, abort=abort)
    received: list[str] = []
    with pytest.raises(errors.StreamInterruptedError) as caught:
        for event in provider.stream(adapter.request()):
            received.append(event.text)
    error = caught.value
    assert received == ["Paris — "]
    assert error.partial_text == "Paris — "
    assert error.text_delivered is True
    assert error.retryable is True
    assert error.provider == provider.name


@pytest.mark.parametrize("adapter", adapters())
async def test_stream_cut_before_any_text_reports_nothing_delivered(
    adapter: Adapter, fake: FakeUpstream, aclients
) -> None:
    provider = make_provider(adapter, fake.url, aclients)
    stream = adapter.expected.stream
    fake.reply_sse(stream[: stream.index("Paris — ") - 3], abort=True)  # inside its JSON
    with pytest.raises(errors.StreamInterruptedError) as caught:
        async for _ in provider.astream(adapter.request()):
            pytest.fail("no event may arrive from a stream cut before its first text")
    assert caught.value.text_delivered is False
    assert caught.value.partial_text == ""


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html><body>502 Bad Gateway</body></html>", id="html"),
        pytest.param(b'{"choices": [', id="cut-json"),
        pytest.param(b'{"unexpected": "shape"}', id="missing-fields"),
        pytest.param(b"[1, 2, 3]", id="not-an-object"),
    ],
)
@pytest.mark.parametrize("adapter", adapters())
def test_malformed_success_body_raises_malformed_response(
    adapter: Adapter, body: bytes, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_raw(body, status=200)
    with pytest.raises(errors.MalformedResponseError) as caught:
        provider.chat(adapter.request())
    assert caught.value.status == 200
    assert caught.value.body == body.decode()
    assert not isinstance(caught.value, errors.StreamInterruptedError)


@pytest.mark.parametrize("adapter", adapters())
def test_malformed_stream_event_raises_malformed_response(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    name = "event: content_block_delta\n" if adapter.wire == "anthropic" else ""
    fake.reply_sse(f"{name}data: {{not json\n\n")
    with pytest.raises(errors.MalformedResponseError, match="format"):
        list(provider.stream(adapter.request()))


@pytest.mark.parametrize("adapter", adapters(wire="workers-ai"))
def test_workers_ai_error_envelope_with_200_is_an_error(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    envelope = cloudflare_error(3040, "Capacity temporarily exceeded")
    fake.reply_json(envelope, status=200)
    with pytest.raises(errors.RateLimitedError, match="Capacity temporarily exceeded"):
        provider.chat(adapter.request())


# --- network failures -------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", adapters())
def test_slow_provider_times_out(adapter: Adapter, fake: FakeUpstream, clients) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_json(adapter.expected.body, delay=5.0)  # released when the fake closes
    with pytest.raises(errors.ProviderTimeoutError) as caught:
        provider.chat(adapter.request(timeout=0.05))
    assert caught.value.retryable


@pytest.mark.parametrize("adapter", adapters(gateway=False))
async def test_provider_timeout_setting_applies_to_streams(
    adapter: Adapter, fake: FakeUpstream, aclients
) -> None:
    provider = make_provider(adapter, fake.url, aclients, timeout=0.05)
    fake.reply_sse(adapter.expected.stream, delay=5.0)
    with pytest.raises(errors.ProviderTimeoutError):
        async for _ in provider.astream(adapter.request()):
            pass


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("adapter", adapters())
def test_connection_refused_is_a_network_error(adapter: Adapter, clients) -> None:
    provider = make_provider(adapter, _closed_port_url(), clients)
    with pytest.raises(errors.NetworkError) as caught:
        provider.chat(adapter.request())
    assert caught.value.retryable and caught.value.provider == provider.name
    assert isinstance(caught.value.__cause__, Exception)  # the httpx error stays visible


@pytest.mark.parametrize("adapter", adapters())
async def test_dropped_connection_is_a_network_error(
    adapter: Adapter, fake: FakeUpstream, aclients
) -> None:
    provider = make_provider(adapter, fake.url, aclients)
    fake.reply_drop()
    with pytest.raises(errors.NetworkError):
        await provider.achat(adapter.request())


# --- Cloudflare AI Gateway --------------------------------------------------------------------


@pytest.mark.parametrize("adapter", adapters(gateway=True))
def test_gateway_headers_and_per_request_overrides(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_json(adapter.expected.body)
    fake.reply_json(adapter.expected.body, headers={"cf-aig-cache-status": "HIT"})

    first = provider.chat(adapter.request())
    overrides = {"cache-ttl": 60, "skip-cache": True, "metadata": {"team": "lab", "run": 3},
                 "cf-aig-cache-key": "q-42"}  # fmt: skip
    second = provider.chat(adapter.request(metadata={"cf_aig": overrides}))

    plain, tuned = (r.headers for r in fake.requests)
    assert plain["cf-aig-authorization"] == f"Bearer {GATEWAY_TOKEN}"
    assert plain["cf-aig-cache-ttl"] == "3600"
    assert "cf-aig-skip-cache" not in plain
    assert tuned["cf-aig-cache-ttl"] == "60"
    assert tuned["cf-aig-skip-cache"] == "true"
    assert json.loads(tuned["cf-aig-metadata"]) == {"team": "lab", "run": 3}
    assert tuned["cf-aig-cache-key"] == "q-42"
    assert first.cache_status == "none"
    assert second.cache_status == "upstream_hit"


@pytest.mark.parametrize("adapter", adapters(gateway=False))
def test_direct_calls_send_no_gateway_headers(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_json(adapter.expected.body)
    provider.chat(adapter.request())
    assert not [h for h in fake.last_request.headers if h.startswith("cf-aig-")]


# --- more stream endings ----------------------------------------------------------------------


@pytest.mark.parametrize("adapter", adapters())
def test_stream_that_stalls_after_text_is_interrupted(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    wire = adapter.expected.stream.encode()
    first_event_end = wire.index(b"\n\n", wire.index("Paris — ".encode())) + 2
    fake.reply_sse(wire, split_at_bytes=[first_event_end], chunk_delay=5.0)
    received: list[str] = []
    # The timeout covers the connection and the first event too: 0.05 s ran out before them
    # on a loaded box, and 0.2 s once at load 8 (the stall is 5 s, so 0.5 s still only ends
    # in it).
    with pytest.raises(errors.StreamInterruptedError, match="timeout") as caught:
        for event in provider.stream(adapter.request(timeout=0.5)):
            received.append(event.text)
    assert received == ["Paris — "]
    assert caught.value.text_delivered and caught.value.partial_text == "Paris — "


@pytest.mark.parametrize("adapter", adapters())
async def test_stream_request_answered_with_a_whole_json_body(
    adapter: Adapter, fake: FakeUpstream, aclients
) -> None:
    # Servers that ignore "stream" (and caches replaying a stored answer) send one JSON body.
    provider = make_provider(adapter, fake.url, aclients)
    fake.reply_json(adapter.expected.body)
    events = [event async for event in provider.astream(adapter.request())]
    assert [type(e) for e in events] == [TextDelta, StreamEnd]
    assert events[0].text == events[1].response.text == ANSWER
    assert events[1].response.usage == adapter.expected.usage


@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
def test_stream_usage_request_can_be_turned_off(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    from types import MappingProxyType

    provider = make_provider(adapter, fake.url, clients,
                             options=MappingProxyType({"stream_usage": False}))  # fmt: skip
    fake.reply_sse(adapter.expected.stream)
    list(provider.stream(adapter.request()))
    assert "stream_options" not in fake.last_request.json
