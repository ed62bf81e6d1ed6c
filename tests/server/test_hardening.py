"""The server holds its ground (issue 9, section 5): hostile bodies are 400s in the caller's
format, response headers never carry raw client or upstream bytes, client-facing errors
name no internal URL, path or id, and the limits (in-flight requests, connections) answer
503 with Retry-After. Slow clients are in test_slow_clients.py."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import ProviderSpec
from aigw_lab.server import BackgroundServer, GatewayApp
from aigw_lab.server import app as app_module
from aigw_lab.server.app import header_value
from aigw_lab.server.errors import printable, scrub
from aigw_lab.server_limits import ServerLimits
from aigw_lab.testing.fake_upstream import FakeUpstream

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
MESSAGES = [{"role": "user", "content": "hi"}]
ENDPOINTS = [OPENAI, ANTHROPIC]


def body_for(path: str, **fields: object) -> dict:
    body: dict = {"model": "sim-openai/sim-nano", "messages": MESSAGES, **fields}
    if path == ANTHROPIC:
        body.setdefault("max_tokens", 16)
    return body


def error_of(path: str, response: httpx.Response) -> dict:
    """The error object, checked to be in the endpoint's own format."""
    body = response.json()
    if path == ANTHROPIC:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


Start = Callable[..., tuple[str, GatewayApp]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start a server for a gateway (default: the simulated fleet, no latency) with the
    given limits and no authentication; returns its URL and app."""
    running: list[tuple[BackgroundServer, Gateway]] = []

    def run(gateway: Gateway | None = None, **limits: object) -> tuple[str, GatewayApp]:
        gw = gateway or Gateway.simulated_fleet(time_scale=0.0, log=None)
        app = GatewayApp(gw, None, limits=ServerLimits(**limits))  # type: ignore[arg-type]
        server = BackgroundServer(app).start()
        running.append((server, gw))
        return server.url, app

    yield run
    for server, gw in running:
        server.stop()
        gw.close()


@pytest.fixture
def url(start: Start) -> str:
    return start()[0]


def post(url: str, path: str, content: bytes, **headers: str) -> httpx.Response:
    headers = {"content-type": "application/json", **headers}
    return httpx.post(url + path, content=content, headers=headers, timeout=30)


# --- hostile bodies: 400 in the caller's format, never a 500 ----------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_deep_json_is_400(url: str, path: str) -> None:
    # 100k levels blew the recursion limit: a 500 (RecursionError) before.
    response = post(url, path, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert "levels deep" in error_of(path, response)["message"]
    nested = body_for(path, metadata={"a": json.loads("[" * 70 + "]" * 70)})
    response = post(url, path, json.dumps(nested).encode())
    assert response.status_code == 400, "70 levels is past the default depth of 64"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "raw",
    [
        b'{"role": "user", "content": "\\ud800"}',  # a lone high surrogate
        b'{"role": "user", "content": "ok \\udfff ok"}',  # a lone low surrogate
        b'{"role": "user", "content": "hi", "\\ud83d": 1}',  # in a key
    ],
    ids=["high", "low", "key"],
)
def test_lone_surrogates_are_400(url: str, path: str, raw: bytes) -> None:
    # The surrogate failed the upstream request's encoding: a 500 before.
    body = json.dumps(body_for(path, messages=["MSG"])).encode().replace(b'"MSG"', raw)
    response = post(url, path, body)
    assert response.status_code == 400
    assert "surrogate" in error_of(path, response)["message"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_surrogate_pair_is_text(url: str, path: str) -> None:
    body = json.dumps(body_for(path, messages=[{"role": "user", "content": "\U0001f600"}]))
    assert "\\ud83d\\ude00" in body  # json.dumps escapes it as a pair
    assert post(url, path, body.encode()).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("raw", [b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"], ids=["ff", "cut", "cesu"])
def test_invalid_utf8_is_400(url: str, path: str, raw: bytes) -> None:
    body = json.dumps(body_for(path, messages=[{"role": "user", "content": "XX"}])).encode()
    response = post(url, path, body.replace(b"XX", raw))
    assert response.status_code == 400
    assert "UTF-8" in error_of(path, response)["message"]


BUDGET = """
[providers.sim-openai]
kind = "simulated"
time_scale = 0.0

[[budgets.limit]]
scope = "gateway"
usd = 100.0
period = "day"
"""


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "number", [b"1" + b"0" * 400, b"-1" + b"0" * 400, b"1e400", b"9007199254740993", b"1e300"]
)
def test_huge_numbers_are_400(start: Start, tmp_path, path: str, number: bytes) -> None:
    # 10**400 as max_tokens reached the budget's arithmetic (OverflowError: a 500) before.
    config = tmp_path / "gateway.toml"
    config.write_text(BUDGET)
    served, _ = start(Gateway.from_config(config, log=None))
    body = json.dumps(body_for(path, max_tokens=12345)).encode().replace(b"12345", number)
    response = post(served, path, body)
    assert response.status_code == 400
    assert "2**53" in error_of(path, response)["message"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_the_largest_exact_integer_still_parses(url: str, path: str) -> None:
    body = body_for(path, seed=2**53, metadata={"n": -(2**53)}) if path == OPENAI else None
    body = body or body_for(path, top_k=2**53)
    assert post(url, path, json.dumps(body).encode()).status_code < 500


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_constants_are_400(url: str, constant: bytes) -> None:
    body = json.dumps(body_for(OPENAI, temperature=0.5)).encode().replace(b"0.5", constant)
    assert post(url, OPENAI, body).status_code == 400


# --- response headers never carry raw client or upstream bytes -------------------------------


def openai_answer(model: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip


def fake_gateway(fake: FakeUpstream, timeout: float = 30.0) -> Gateway:
    """A gateway whose provider ``up`` (OpenAI format, any model) is ``fake``."""
    spec = ProviderSpec("up", "openai-compatible", base_url=f"{fake.url}/v1", timeout=timeout)
    return Gateway([spec], log=":memory:")


@pytest.mark.parametrize("hostile", ["m\r\nx-evil: 1", "m\x00n", "m\nx", "é\u2028"])
def test_hostile_model_names_never_reach_a_header(start: Start, hostile: str) -> None:
    # An upstream (or a client through it) naming the model with CR/LF/NUL made h11 drop
    # the connection after the paid call: the client saw no answer.
    with FakeUpstream() as fake:
        fake.reply_json(openai_answer(hostile))
        gateway = fake_gateway(fake)
        url, _ = start(gateway)
        response = post(url, OPENAI, json.dumps({"model": "up/m", "messages": MESSAGES}).encode())
        assert response.status_code == 200
        assert "x-evil" not in response.headers
        value = response.headers["x-aigw-model"]
        assert value.isascii() and value.isprintable() and "\r" not in value
        assert value.startswith("up/") and "%" in value
        assert response.json()["choices"][0]["message"]["content"] == "ok"
        log = gateway.log
        assert log is not None
        log.flush()
        assert log.query("SELECT count(*) AS n FROM calls")["n"][0] == 1


@pytest.mark.parametrize("hostile", ["up/m\r\nx-evil: 1", "up/m\x00", "up/\n"])
def test_control_characters_in_the_requested_model_complete_cleanly(
    start: Start, hostile: str
) -> None:
    """Whether refused (400) or served (the upstream echoes it), the client gets an answer
    with a status below 500 over a connection that completes."""
    with FakeUpstream() as fake:
        fake.reply_json(openai_answer(hostile.removeprefix("up/")))
        url, _ = start(fake_gateway(fake))
        response = post(url, OPENAI, json.dumps({"model": hostile, "messages": MESSAGES}).encode())
        assert response.status_code < 500
        assert all(header_value(v) == v.encode() for v in response.headers.values())


def test_header_value() -> None:
    assert header_value("sim-openai/sim-small") == b"sim-openai/sim-small"
    assert header_value("a\r\nb: c") == b"a%0D%0Ab:%20c"
    assert header_value("a\x00") == b"a%00"
    assert header_value("café") == b"caf%C3%A9"
    assert header_value("\ud800") == b"%5Cud800"  # a lone surrogate cannot fail it
    assert len(header_value("x" * 1000)) == 256
    assert header_value(" lead") == b"%20lead"


# --- client-facing errors name no internal URL, path or id -----------------------------------


def test_scrub() -> None:
    text = (
        "timed out waiting for http://10.0.0.7:8080/v1 (retryable); log /var/lib/aigw/calls.duckdb"
        " and C:\\aigw\\gw.toml; see calls.duckdb; trace_id 'a1b2c3d4e5f60718293a4b5c6d7e8f90'"
        " call 123e4567-e89b-12d3-a456-426614174000"
    )
    clean = scrub(text)
    for secret in ("10.0.0.7", "/var/lib", "aigw\\gw", "calls.duckdb", "a1b2c3d4e5", "123e4567"):
        assert secret not in clean
    kept = "sim-openai has no model 'gpt-x' (fix: models: sim-openai/sim-small; docs/serving.md)"
    assert scrub(kept) == kept
    escaped = "messages.0.role: '\\U000730fe\\x15' is not 'user'"  # a repr, not a path
    assert scrub(escaped) == escaped


def test_printable_escapes_controls() -> None:
    assert printable("a\r\nb\x00c\u2028\ud800") == "a\\x0d\\x0ab\\x00c\\u2028\\ud800"
    assert len(printable("x" * 10_000)) < 4_100


@pytest.mark.parametrize("path", ENDPOINTS)
def test_upstream_failures_name_no_url(
    start: Start, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeUpstream() as fake:
        fake.reply_drop()
        url, _ = start(fake_gateway(fake))
        with caplog.at_level(logging.WARNING, logger="aigw_lab.server"):
            body = body_for(path, model="up/m")
            response = post(url, path, json.dumps(body).encode())
        assert response.status_code == 502
        message = error_of(path, response)["message"]
        assert "127.0.0.1" not in message and "http://" not in message
        assert "<upstream URL>" in message
        assert fake.url in caplog.text, "the full detail goes to the log"


def test_upstream_timeouts_name_no_url(start: Start) -> None:
    with FakeUpstream() as fake:
        fake.reply_json(openai_answer("m"), delay=2.0)
        url, _ = start(fake_gateway(fake, timeout=0.2))
        response = post(url, OPENAI, json.dumps({"model": "up/m", "messages": MESSAGES}).encode())
        assert response.status_code == 504
        message = error_of(OPENAI, response)["message"]
        assert "http://" not in message and "127.0.0.1" not in message


def test_log_lines_escape_client_text(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    with FakeUpstream() as fake:
        fake.reply_json({"error": {"message": "bad\r\nFAKE LOG LINE"}}, status=500)
        url, _ = start(fake_gateway(fake))
        with caplog.at_level(logging.WARNING, logger="aigw_lab.server"):
            body = {"model": "up/m\r\nFORGED", "messages": MESSAGES}
            post(url, OPENAI, json.dumps(body).encode())
        for record in caplog.records:
            if record.name == "aigw_lab.server":
                assert "\n" not in record.getMessage()


# --- the last resort: a bug is a 500 in the caller's format ---------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_bug_is_a_500_in_the_callers_format(
    url: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(response: object) -> list:
        raise RuntimeError("bug at /srv/app/secret.py")

    # Before: uvicorn's own plain-text 500, in neither API's format.
    monkeypatch.setattr(app_module, "_response_headers", broken)
    response = post(url, path, json.dumps(body_for(path)).encode())
    assert response.status_code == 500
    message = error_of(path, response)["message"]
    assert "secret.py" not in message and "RuntimeError" not in message


# --- limits: 503 with Retry-After -------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_requests_in_flight_past_the_limit_are_503(start: Start, path: str) -> None:
    with FakeUpstream() as fake:
        release = threading.Event()  # holds the first request until the second is refused
        fake.reply_json(openai_answer("m"), delay=1.5, release=release)
        url, app = start(fake_gateway(fake), max_requests_in_flight=1, retry_after=2.0)
        first: list[httpx.Response] = []
        body = json.dumps(body_for(path, model="up/m")).encode()
        thread = threading.Thread(target=lambda: first.append(post(url, path, body)))
        thread.start()
        while app.in_flight < 1:  # the first request is being served
            time.sleep(0.01)
        second = post(url, path, body)
        assert second.status_code == 503
        assert second.headers["retry-after"] == "2"
        error = error_of(path, second)
        assert error["type"] == ("overloaded_error" if path == ANTHROPIC else "server_error")
        assert httpx.get(url + "/health").status_code == 200, "health is not limited"
        release.set()
        thread.join()
        assert first[0].status_code == 200
        while app.in_flight:  # the first request's task ends just after its answer
            time.sleep(0.01)
        fake.reply_json(openai_answer("m"))
        assert post(url, path, body).status_code == 200, "the slot is free again"


def test_connections_past_the_limit_are_503(start: Start) -> None:
    url, _ = start(max_connections=3, header_timeout=30.0)
    host, port = url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(3)]
    try:
        # The server accepts connections in their order of arrival: these three come first.
        with httpx.Client(base_url=url, timeout=10) as client:
            response = client.post(ANTHROPIC, json=body_for(ANTHROPIC))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert error_of(ANTHROPIC, response)["type"] == "overloaded_error"
    finally:
        for sock in idle:
            sock.close()
    statuses = []
    while 200 not in statuses and len(statuses) < 100:  # until the server saw them close
        response = post(url, ANTHROPIC, json.dumps(body_for(ANTHROPIC)).encode())
        statuses.append(response.status_code)
        time.sleep(0.05)
    assert set(statuses) <= {200, 503} and statuses[-1] == 200, "freed connections are usable"
