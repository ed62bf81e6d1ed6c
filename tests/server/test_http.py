"""Raw HTTP against the gateway server: malformed requests, routing, errors mid-stream, and
upstream failures, each answered in the caller's API format with its status."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from aigw_lab.errors import ProviderServerError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import ChatRequest, StreamEvent, TextDelta

from .helpers import KEY_A, Served

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
CHAT = {"model": "sim-openai/sim-nano", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {**CHAT, "max_tokens": 32}


@pytest.fixture
def http(shared_served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_served.url, headers={"x-api-key": KEY_A}) as client:
        yield client


def openai_error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def anthropic_error(response: httpx.Response) -> dict:
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


def test_malformed_json_is_400_in_each_format(http: httpx.Client) -> None:
    response = http.post(OPENAI, content=b'{"model": "sim-openai/sim-nano", ')
    assert response.status_code == 400
    assert openai_error(response)["type"] == "invalid_request_error"
    assert "not valid JSON" in openai_error(response)["message"]
    response = http.post(ANTHROPIC, content=b"\xff\xfe not json")
    assert response.status_code == 400
    assert anthropic_error(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        (OPENAI, [1, 2], "not a JSON object"),
        (OPENAI, {"messages": CHAT["messages"]}, "model"),
        (OPENAI, {**CHAT, "n": 2}, "n=2"),
        (OPENAI, {**CHAT, "temperature": "hot"}, "temperature"),
        (OPENAI, {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "role"),
        (ANTHROPIC, CHAT, "max_tokens"),
        (ANTHROPIC, {**MESSAGE, "messages": [{"role": "system", "content": "x"}]}, "system"),
        (ANTHROPIC, {**MESSAGE, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(
    http: httpx.Client, path: str, body: object, words: str
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 400
    error = openai_error(response) if path == OPENAI else anthropic_error(response)
    assert words in error["message"]


def test_unknown_paths_and_methods(http: httpx.Client) -> None:
    response = http.post("/v1/completions", json=CHAT)
    assert response.status_code == 404 and openai_error(response)["type"]
    response = http.get(ANTHROPIC)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert anthropic_error(response)["type"] == "invalid_request_error"


def test_health_needs_no_key_but_everything_else_does(shared_served: Served) -> None:
    with httpx.Client(base_url=shared_served.url) as anonymous:
        assert anonymous.get("/health").json() == {"status": "ok"}
        response = anonymous.get("/v1/models")
        assert response.status_code == 401
        assert openai_error(response)["code"] == "invalid_api_key"
        response = anonymous.post(ANTHROPIC, json=MESSAGE, headers={"x-api-key": "wrong"})
        assert response.status_code == 401
        assert anthropic_error(response)["type"] == "authentication_error"
        bearer = {"authorization": f"Bearer {KEY_A}"}
        assert anonymous.post(OPENAI, json=CHAT, headers=bearer).status_code == 200


def test_a_body_over_the_limit_is_413(serve_config) -> None:
    served = serve_config()
    served.server.app.max_body_bytes = 1000
    with httpx.Client(base_url=served.url, headers={"x-api-key": KEY_A}) as http:
        response = http.post(ANTHROPIC, json={**MESSAGE, "system": "x" * 2000})
    assert response.status_code == 413
    assert anthropic_error(response)["type"] == "request_too_large"


class _BreaksMidStream(MockProvider):
    """Streams two words, then fails as an upstream server would."""

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        yield TextDelta("Hello ")
        yield TextDelta("there")
        raise ProviderServerError("connection reset mid-answer", provider=self.name)


def _sse_events(response: httpx.Response) -> list[tuple[str | None, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, line[6:]))
            name = None
    return events


def test_an_error_mid_stream_is_an_error_event_in_each_format(serve_config, tmp_path) -> None:
    gateway = Gateway([_BreaksMidStream("flaky")], log=str(tmp_path / "flaky.duckdb"))
    served = serve_config(gateway=gateway)
    with httpx.Client(base_url=served.url, headers={"x-api-key": KEY_A}) as http:
        body = {"model": "flaky/m", "messages": CHAT["messages"], "stream": True}
        with http.stream("POST", OPENAI, json=body) as response:
            assert response.status_code == 200  # the text had started: the status is sent
            events = _sse_events(response)
        texts = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in events[:-1]]
        assert texts == ["", "Hello ", "there"]
        error = json.loads(events[-1][1])["error"]
        assert error["type"] == "server_error" and "connection reset" in error["message"]
        assert all(data != "[DONE]" for _, data in events)

        with http.stream("POST", ANTHROPIC, json={**body, "max_tokens": 16}) as response:
            events = _sse_events(response)
        assert [name for name, _ in events] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "error",
        ]
        assert json.loads(events[-1][1])["error"]["type"] == "api_error"
    rows = served.rows("SELECT stream, error_type FROM calls")
    assert rows == [(True, "server_error"), (True, "server_error")]


@pytest.mark.parametrize(
    ("fault", "status", "openai_type"),
    [("server_error", 502, "server_error"), ("timeout", 504, "server_error")],
)
def test_upstream_failures_are_5xx(serve_config, fault: str, status: int, openai_type: str) -> None:
    served = serve_config(
        f"""
[providers.sim-bad]
kind = "simulated"
format = "openai"
time_scale = 0.0
timeout = 0.5
faults = {{ {fault} = 1.0 }}
"""
    )
    with httpx.Client(base_url=served.url, headers={"x-api-key": KEY_A}) as http:
        response = http.post(OPENAI, json={**CHAT, "model": "sim-bad/sim-nano"})
        assert response.status_code == status
        assert openai_error(response)["type"] == openai_type
        stream = http.post(OPENAI, json={**CHAT, "model": "sim-bad/sim-nano", "stream": True})
        assert stream.status_code == status  # failed before any text: a status, not an event


class _StallsAfterOneWord(MockProvider):
    """Streams one word, then waits for a next token that never comes."""

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        yield TextDelta("Hello ")
        await asyncio.Event().wait()
        yield TextDelta("never")  # pragma: no cover - the client hangs up first


@pytest.mark.parametrize("path", [OPENAI, ANTHROPIC])
def test_a_client_hanging_up_cancels_the_stream(serve_config, tmp_path, path: str) -> None:
    gateway = Gateway([_StallsAfterOneWord("stall")], log=str(tmp_path / "stall.duckdb"))
    served = serve_config(gateway=gateway)
    body = {"model": "stall/m", "messages": CHAT["messages"], "stream": True, "max_tokens": 9}
    with httpx.Client(base_url=served.url, headers={"x-api-key": KEY_A}) as http:
        with http.stream("POST", path, json=body) as response:
            assert b"Hello" in next(response.iter_raw())
    # The upstream stream is stopped and logged at once, not when a next token comes.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = served.rows("SELECT status, response_text FROM calls")
        if rows:
            break
        time.sleep(0.01)
    assert rows == [("cancelled", "Hello ")]
