"""The wire formats, played through the in-process httpx transport (sync and async)."""

from __future__ import annotations

import json

import httpx
import pytest

from aigw_lab.sim.fleet import SimCall

from .helpers import chat_body, client_for, make_fleet, sse_data

LONG = "Explain the water cycle to a curious ten-year-old"
WORKERS_RUN = "/client/v4/accounts/acct123/ai/run/"
ANTHROPIC_EVENTS = [
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]


def event_names(text: str) -> list[str]:
    names = [line[len("event: ") :] for line in text.split("\n") if line.startswith("event: ")]
    collapsed: list[str] = []
    for name in names:  # one entry per run of deltas
        if not collapsed or collapsed[-1] != name:
            collapsed.append(name)
    return collapsed


def twin_plan(call: SimCall, **fleet_kwargs):
    """The plan a fresh fleet makes for its first call: what the transport's first call got."""
    return make_fleet(**fleet_kwargs).plan(call)


# --- OpenAI ---------------------------------------------------------------------------------


def test_openai_json_body_is_marked_simulated() -> None:
    response = client_for(make_fleet()).post(
        "/v1/chat/completions", json=chat_body("sim-small", LONG)
    )
    assert response.status_code == 200
    assert response.headers["x-aigw-simulated"] == "true"
    body = response.json()
    plan = twin_plan(SimCall("openai", "sim-small", (("user", LONG),)))
    assert body["object"] == "chat.completion"
    assert body["model"] == "sim-small"
    assert body["system_fingerprint"] == "aigw-simulated"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": plan.text, "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        plan.input_tokens,
        plan.output_tokens,
    )
    assert usage["total_tokens"] == plan.input_tokens + plan.output_tokens


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_chunks_usage_and_done(include_usage: bool) -> None:
    body = chat_body(
        "sim-nano",
        LONG,
        stream=True,
        max_tokens=12,
        stream_options={"include_usage": include_usage},
    )
    response = client_for(make_fleet()).post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_data(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    plan = twin_plan(SimCall("openai", "sim-nano", (("user", LONG),), max_tokens=12))
    assert text == plan.text and plan.output_tokens == 12
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == 12
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks)


def test_openai_error_shapes() -> None:
    client = client_for(make_fleet(faults={"rate_limited": 1.0}))
    limited = client.post("/v1/chat/completions", json=chat_body("sim-small", "hi"))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 5
    error = limited.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "rate_limit_exceeded"
    missing = client.post("/v1/chat/completions", json=chat_body("gpt-4o", "hi"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    bad = client.post("/v1/chat/completions", content=b"{nope")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    nowhere = client.post("/v2/completions", json={})
    assert nowhere.status_code == 404


def test_openai_context_length_error() -> None:
    client = client_for(make_fleet())
    response = client.post(
        "/v1/chat/completions", json=chat_body("sim-llamaish-8b", "word " * 9000)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "8192" in error["message"]


@pytest.mark.parametrize(
    "fault, status", [("server_error", 500), ("unavailable", 503), ("overloaded", 503)]
)
def test_openai_server_errors(fault: str, status: int) -> None:
    client = client_for(make_fleet(faults={fault: 1.0}))
    response = client.post("/v1/chat/completions", json=chat_body("sim-large", "hi"))
    assert response.status_code == status
    assert response.json()["error"]["type"] == "server_error"


def test_models_list() -> None:
    body = client_for(make_fleet(models=["sim-nano", "sim-sonnetish"])).get("/v1/models")
    assert body.json()["object"] == "list"
    assert [m["id"] for m in body.json()["data"]] == ["sim-nano", "sim-sonnetish"]


# --- Anthropic ------------------------------------------------------------------------------


def anthropic_body(prompt: str, **extra: object) -> dict[str, object]:
    return {
        "model": "sim-haikuish",
        "max_tokens": 1024,
        "system": "Be helpful.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        **extra,
    }


def test_anthropic_json_message() -> None:
    response = client_for(make_fleet()).post("/v1/messages", json=anthropic_body(LONG))
    body = response.json()
    assert response.headers["x-aigw-simulated"] == "true"
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "sim-haikuish" and body["id"].startswith("msg_")
    assert body["content"][0]["type"] == "text"
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    plan = twin_plan(
        SimCall(
            "anthropic",
            "sim-haikuish",
            (("system", "Be helpful."), ("user", LONG)),
            max_tokens=1024,
        )
    )
    assert body["content"][0]["text"] == plan.text
    assert body["usage"]["input_tokens"] == plan.input_tokens
    assert body["usage"]["output_tokens"] == plan.output_tokens


def test_anthropic_stream_event_sequence() -> None:
    response = client_for(make_fleet()).post(
        "/v1/messages", json=anthropic_body(LONG, stream=True, max_tokens=5)
    )
    assert event_names(response.text) == ANTHROPIC_EVENTS
    events = [json.loads(p) for p in sse_data(response.text)]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert (
        delta["usage"]["output_tokens"]
        == 5
        == len([e for e in events if e["type"] == "content_block_delta"])
    )
    assert events[0]["message"]["usage"]["input_tokens"] > 0
    assert text and len(text) < len(LONG) * 3


def test_anthropic_stop_sequence_is_reported() -> None:
    body = anthropic_body(LONG, stop_sequences=["."])
    message = client_for(make_fleet()).post("/v1/messages", json=body).json()
    assert message["stop_reason"] == "stop_sequence" and message["stop_sequence"] == "."


@pytest.mark.parametrize(
    "fault, status, error_type",
    [
        ("overloaded", 529, "overloaded_error"),
        ("rate_limited", 429, "rate_limit_error"),
        ("server_error", 500, "api_error"),
    ],
)
def test_anthropic_error_bodies(fault: str, status: int, error_type: str) -> None:
    client = client_for(make_fleet(faults={fault: 1.0}))
    response = client.post("/v1/messages", json=anthropic_body("hi"))
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert body["error"]["message"]


def test_anthropic_requires_max_tokens() -> None:
    body = anthropic_body("hi")
    del body["max_tokens"]
    response = client_for(make_fleet()).post("/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


# --- Workers AI -----------------------------------------------------------------------------


def test_workers_native_envelope() -> None:
    client = client_for(make_fleet())
    response = client.post(
        WORKERS_RUN + "sim-llamaish-70b", json={"messages": [{"role": "user", "content": LONG}]}
    )
    body = response.json()
    assert set(body) == {"result", "success", "errors", "messages"}
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    plan = twin_plan(SimCall("workers-ai", "sim-llamaish-70b", (("user", LONG),), max_tokens=256))
    assert body["result"]["response"] == plan.text
    assert body["result"]["usage"] == {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
    }


def test_workers_native_prompt_form_and_default_max_tokens() -> None:
    client = client_for(make_fleet())
    body = client.post(
        WORKERS_RUN + "sim-llamaish-8b", json={"prompt": "Write a long essay about rivers " * 3}
    ).json()
    assert body["result"]["usage"]["completion_tokens"] <= 256


def test_workers_native_stream() -> None:
    client = client_for(make_fleet())
    response = client.post(
        WORKERS_RUN + "sim-llamaish-8b",
        json={"messages": [{"role": "user", "content": LONG}], "stream": True},
    )
    payloads = sse_data(response.text)
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert all(set(e) == {"response"} for e in events[:-1])
    assert (
        events[-1]["response"] == "" and events[-1]["usage"]["completion_tokens"] == len(events) - 1
    )
    plan = twin_plan(SimCall("workers-ai", "sim-llamaish-8b", (("user", LONG),), max_tokens=256))
    assert "".join(e["response"] for e in events) == plan.text


def test_workers_native_errors_use_the_envelope() -> None:
    client = client_for(make_fleet(faults={"rate_limited": 1.0}))
    limited = client.post(WORKERS_RUN + "sim-llamaish-8b", json={"prompt": "hi"})
    assert limited.status_code == 429 and "retry-after" in limited.headers
    body = limited.json()
    assert body["success"] is False and body["result"] is None
    assert isinstance(body["errors"][0]["code"], int) and body["errors"][0]["message"]
    missing = client.post(WORKERS_RUN + "%40cf%2Fmeta%2Fllama", json={"prompt": "hi"})
    assert missing.status_code == 404 and "@cf/meta/llama" in missing.json()["errors"][0]["message"]


def test_workers_openai_compatible_path() -> None:
    client = client_for(make_fleet())
    response = client.post(
        "/client/v4/accounts/acct123/ai/v1/chat/completions",
        json=chat_body("sim-llamaish-70b", "hi"),
    )
    assert response.json()["object"] == "chat.completion"
    assert response.json()["model"] == "sim-llamaish-70b"


# --- faults on the wire ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, final",
    [
        ("/v1/chat/completions", chat_body("sim-small", LONG, stream=True), "[DONE]"),
        ("/v1/messages", anthropic_body(LONG, stream=True), '{"type":"message_stop"}'),
        (WORKERS_RUN + "sim-llamaish-8b", {"prompt": LONG, "stream": True}, "[DONE]"),
    ],
)
def test_truncated_streams_end_before_the_final_event(path: str, body: dict, final: str) -> None:
    # One fixed clock for both fleets: a chunk's "created" second must not change between the
    # two answers (it did once, in a fresh-clone CI run, when they straddled a second).
    def clock() -> float:
        return 1_796_600_000.0

    clean = client_for(make_fleet(clock=clock)).post(path, json=body).text
    cut = client_for(make_fleet(clock=clock, faults={"truncated": 1.0})).post(path, json=body).text
    assert clean.rstrip().endswith(final)
    assert final not in cut
    assert clean.startswith(cut) and len(cut) < len(clean)


def test_truncated_and_malformed_json_bodies_do_not_parse() -> None:
    for fault in ("truncated", "malformed"):
        response = client_for(make_fleet(faults={fault: 1.0})).post(
            "/v1/chat/completions", json=chat_body("sim-small", LONG)
        )
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            response.json()


def test_malformed_stream_carries_one_broken_event() -> None:
    response = client_for(make_fleet(faults={"malformed": 1.0})).post(
        "/v1/chat/completions", json=chat_body("sim-small", LONG, stream=True)
    )
    broken = []
    for payload in sse_data(response.text):
        if payload != "[DONE]":
            try:
                json.loads(payload)
            except json.JSONDecodeError:
                broken.append(payload)
    assert len(broken) == 1


def test_timeout_waits_for_the_read_timeout_then_raises_read_timeout() -> None:
    fleet = make_fleet(faults={"timeout": 1.0}, time_scale=0.5)
    client = httpx.Client(
        transport=fleet.transport(),
        base_url="http://sim.test",
        timeout=httpx.Timeout(5.0, read=3.0),
    )
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=chat_body("sim-small", "hi"))
    assert fleet.sleep.calls == [1.5]


async def test_async_timeout_raises_read_timeout() -> None:
    fleet = make_fleet(faults={"timeout": 1.0}, time_scale=0.1)
    async with httpx.AsyncClient(
        transport=fleet.transport(), base_url="http://sim.test", timeout=2.0
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/messages", json=anthropic_body("hi"))
    assert fleet.sleep.calls == [pytest.approx(0.2)]


def test_timeout_without_a_client_timeout_waits_hang_s() -> None:
    fleet = make_fleet(faults={"timeout": 1.0}, time_scale=1.0, hang_s=42.0)
    client = httpx.Client(transport=fleet.transport(), base_url="http://sim.test", timeout=None)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=chat_body("sim-small", "hi"))
    assert fleet.sleep.calls == [42.0]


# --- pacing ---------------------------------------------------------------------------------


def test_non_streamed_answer_waits_ttft_plus_generation_time() -> None:
    fleet = make_fleet(time_scale=2.0, seed=9)
    client_for(fleet).post("/v1/chat/completions", json=chat_body("sim-large", LONG))
    plan = twin_plan(SimCall("openai", "sim-large", (("user", LONG),)), seed=9)
    expected = 2.0 * (plan.ttft_s + plan.output_tokens / plan.tokens_per_s)
    assert fleet.sleep.calls == [pytest.approx(expected)]


def test_stream_is_paced_token_by_token() -> None:
    fleet = make_fleet(time_scale=1.0, seed=9)
    with client_for(fleet).stream(
        "POST", "/v1/chat/completions", json=chat_body("sim-large", LONG, stream=True)
    ) as response:
        assert len(fleet.sleep.calls) == 1  # headers came after the time to first byte
        chunks = list(response.iter_bytes())
    plan = twin_plan(SimCall("openai", "sim-large", (("user", LONG),), stream=True), seed=9)
    calls = fleet.sleep.calls
    assert calls[0] == pytest.approx(plan.ttft_s * 0.3)
    assert calls[1] == pytest.approx(plan.ttft_s * 0.7)
    assert calls[2:] == [pytest.approx(1 / plan.tokens_per_s)] * (plan.output_tokens - 1)
    assert sum(calls) == pytest.approx(plan.ttft_s + (plan.output_tokens - 1) / plan.tokens_per_s)
    assert len(chunks) >= plan.output_tokens


async def test_async_stream_uses_async_sleep() -> None:
    fleet = make_fleet(time_scale=1.0)
    async with httpx.AsyncClient(transport=fleet.transport(), base_url="http://sim.test") as c:
        response = await c.post(
            WORKERS_RUN + "sim-llamaish-8b", json={"prompt": LONG, "stream": True, "max_tokens": 4}
        )
    assert sse_data(response.text)[-1] == "[DONE]"
    assert len(fleet.sleep.calls) == 1 + 4  # headers, then each token
