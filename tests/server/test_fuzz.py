"""Fuzzing both endpoints (issue 9, section 5): no client input gets a 5xx.

A real server over the simulated fleet (no faults, so any 5xx would be the gateway's own
failure on client input) with a DuckDB call log, hit by hypothesis-generated requests:
mutated request bodies (wrong types, huge and non-finite numbers, lone surrogates, control
characters in model names, deep nesting, invalid UTF-8, truncation) with odd headers over
httpx; the same through the official ``openai`` and ``anthropic`` SDKs; and raw bytes over a
socket. Bounded: a few thousand examples, derandomised so a run is reproducible.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.server import BackgroundServer, ClientIdentity, GatewayApp, KeyRing
from aigw_lab.server_limits import ServerLimits
from tests._sdks import anthropic, openai

# One xdist worker runs the whole module: the tests share one server and its log, and the last
# one checks what the others left there (under --dist loadgroup, ungrouped tests are spread).
pytestmark = pytest.mark.xdist_group("server-fuzz")

KEY = "sk-fuzz-0123456789abcdef"
OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Served:
    def __init__(self, url: str, gateway: Gateway, db: Path) -> None:
        self.url = url
        self.gateway = gateway
        self.db = db
        self.http = httpx.Client(base_url=url, timeout=30)
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.statuses: list[int] = []
        self.sdk_answers = 0  # SDK calls answered 200: each must be an ok row in the log
        self.openai = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        self.anthropic = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("fuzz") / "calls.duckdb"
    gateway = Gateway.simulated_fleet(time_scale=0.0, log=str(db))
    keys = KeyRing({KEY: ClientIdentity("fuzz", tenant="fuzz")})
    limits = ServerLimits(header_timeout=1.0, body_timeout=1.0)
    with BackgroundServer(GatewayApp(gateway, keys, limits=limits)) as server:
        yield Served(server.url, gateway, db)
    gateway.close()  # the log survives whatever was sent (a surrogate once broke its spill)


# --- strategies ---------------------------------------------------------------------------------

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
ODD_CHARS = st.sampled_from(["\x00", "\r", "\n", "\r\n", "\u2028", "\x7f", "\x1b[31m", "é", "😀"])
TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.text(max_size=5), SURROGATES, ODD_CHARS), max_size=6).map("".join),
)
HUGE = st.one_of(
    st.integers(),
    st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 10**400, -(10**400), 2**64]),
)
NUMBERS = st.one_of(HUGE, st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
MODELS = st.one_of(
    st.sampled_from(
        ["sim-openai/sim-nano", "sim-anthropic/sim-haikuish", "sim-openai/", "/", "", "x" * 5000]
    ),
    st.tuples(st.sampled_from(["sim-openai/", "sim-anthropic/", ""]), TEXT).map("".join),
    VALUES,
)
FIELDS = st.sampled_from(
    ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
     "stop", "stop_sequences", "seed", "n", "stream", "stream_options", "tools",
     "tool_choice", "user", "metadata", "system", "top_k", "response_format", "logit_bias"]
)  # fmt: skip
CONTENT = st.one_of(
    TEXT,
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "image",
                                                              "tool_use", "x"]),
                                    "text": TEXT}), max_size=3),
    VALUES,
)  # fmt: skip
MESSAGE = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "developer"]),
                       TEXT),
     "content": CONTENT}
)  # fmt: skip


@st.composite
def request_bodies(draw: st.DrawFn, anthropic_format: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": draw(MODELS),
        "messages": draw(st.one_of(st.lists(MESSAGE, max_size=3), VALUES)),
    }
    if anthropic_format or draw(st.booleans()):
        body["max_tokens"] = draw(st.one_of(st.integers(1, 64), NUMBERS, VALUES))
    for key in draw(st.lists(FIELDS, max_size=4)):
        body[key] = draw(VALUES)
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return body


def encode(body: Any) -> bytes:
    # allow_nan: NaN/Infinity go out as the non-JSON constants; surrogates as \\uXXXX
    return json.dumps(body, allow_nan=True).encode()


@st.composite
def raw_bodies(draw: st.DrawFn, anthropic_format: bool) -> bytes:
    data = encode(draw(request_bodies(anthropic_format)))
    mutation = draw(st.sampled_from(["none", "truncate", "bytes", "deep", "splice", "junk"]))
    if mutation == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if mutation == "bytes":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if mutation == "deep":
        depth = draw(st.integers(1, 200_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        nested = opener * depth + b"1" + closer * depth
        return data[:-1] + b', "metadata": ' + nested + b"}"
    if mutation == "splice":
        return data.replace(b'"', b'"\\ud800', 1)
    if mutation == "junk":
        return draw(st.binary(max_size=64))
    return data


HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.strip
)
HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "anthropic-version", "x-api-key", "accept",
                     "x-request-id", "openai-organization", "x-stainless-retry-count",
                     "transfer-encoding-x", "user-agent"]),
    HEADER_VALUE,
    max_size=3,
)  # fmt: skip


def check(served: Served, status: int, what: object) -> None:
    served.statuses.append(status)
    assert status < 500, f"status {status} for {what!r}"


# --- over httpx -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [OPENAI, ANTHROPIC])
@settings(FUZZ, max_examples=500)
@given(data=st.data())
def test_fuzzed_bodies_and_headers_never_get_a_5xx(
    served: Served, path: str, data: st.DataObject
) -> None:
    body = data.draw(raw_bodies(path == ANTHROPIC))
    headers = {"authorization": f"Bearer {KEY}", **data.draw(HEADERS)}
    if headers.get("x-api-key") and data.draw(st.booleans()):
        del headers["authorization"]  # the odd x-api-key alone: a 401, not a 5xx
    response = served.http.post(path, content=body, headers=headers)
    check(served, response.status_code, body[:200])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        error = response.json()
        assert "error" in error


# --- over the official SDKs -------------------------------------------------------------------


@settings(FUZZ, max_examples=200)
@given(body=request_bodies(False))
# A well-formed call among the fuzzed ones, so the log check at the end always has calls.
@example(body={"model": "sim-openai/sim-nano", "messages": [{"role": "user", "content": "hi"}]})
def test_the_openai_sdk_never_gets_a_5xx(served: Served, body: dict[str, Any]) -> None:
    client = served.openai
    model, messages = body.pop("model"), body.pop("messages")
    stream = body.pop("stream", False) is True
    try:
        result = client.chat.completions.create(
            model=model, messages=messages, stream=stream, extra_body=body
        )
        if stream:
            for _ in result:  # type: ignore[union-attr]
                pass
        served.statuses.append(200)
        served.sdk_answers += 1
    except openai.APIStatusError as exc:
        check(served, exc.status_code, body)
    except openai.APIError as exc:  # an error event mid-stream: the status was 200
        assert "server_error" not in str(getattr(exc, "body", "")), exc
    except (TypeError, ValueError, ArithmeticError):
        pass  # refused by the SDK itself, before sending (its timeout arithmetic, too)


@settings(FUZZ, max_examples=200)
@given(body=request_bodies(True))
@example(
    body={
        "model": "sim-anthropic/sim-haikuish",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
    }
)
def test_the_anthropic_sdk_never_gets_a_5xx(served: Served, body: dict[str, Any]) -> None:
    client = served.anthropic
    model, messages = body.pop("model"), body.pop("messages")
    max_tokens = body.pop("max_tokens")
    stream = body.pop("stream", False) is True
    try:
        result = client.messages.create(
            model=model, messages=messages, max_tokens=max_tokens, stream=stream,
            extra_body=body,
        )  # fmt: skip
        if stream:
            for _ in result:  # type: ignore[union-attr]
                pass
        served.statuses.append(200)
        served.sdk_answers += 1
    except anthropic.APIStatusError as exc:
        check(served, exc.status_code, body)
    except anthropic.APIError as exc:
        assert "api_error" not in str(getattr(exc, "body", "")), exc
    except (TypeError, ValueError, ArithmeticError):
        pass


# --- over raw sockets -------------------------------------------------------------------------

REQUEST_LINES = st.one_of(
    st.sampled_from([b"POST /v1/chat/completions HTTP/1.1", b"POST /v1/messages HTTP/1.1",
                     b"GET /v1/models HTTP/1.1", b"POST /v1/messages?x=%00 HTTP/1.1",
                     b"POST /v1/%2e%2e/messages HTTP/1.1", b"POST //v1/messages HTTP/1.0",
                     b"PUT /health HTTP/1.1", b"POST /v1/messages/%ff HTTP/1.1"]),
    st.binary(max_size=40),
)  # fmt: skip
RAW_HEADERS = st.lists(
    st.one_of(
        st.sampled_from([b"content-type: application/json", b"anthropic-version: 2023-06-01",
                         f"authorization: Bearer {KEY}".encode(), b"x-api-key: \xff\xfe",
                         b"transfer-encoding: chunked", b"content-length: -1",
                         b"content-length: 99999999999999999999", b"expect: 100-continue",
                         b"connection: close", b"host: \x00"]),
        st.binary(max_size=30),
    ),
    max_size=5,
)  # fmt: skip


@settings(FUZZ, max_examples=250)
@given(line=REQUEST_LINES, headers=RAW_HEADERS, body=raw_bodies(False))
def test_raw_socket_requests_never_get_a_5xx(
    served: Served, line: bytes, headers: list[bytes], body: bytes
) -> None:
    head = [line, b"host: 127.0.0.1", *headers]
    if not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        head.append(b"content-length: %d" % len(body))
    head.append(b"connection: close")
    with socket.create_connection(served.address, timeout=10) as sock:
        try:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        except OSError:
            return  # the server refused the bytes before we finished sending
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    if answer.startswith(b"HTTP/1."):
        status = int(answer.split(b" ", 2)[1])
        check(served, status, (line, headers, body[:100]))


def test_zz_the_log_holds_the_fuzzed_calls(served: Served) -> None:
    """Runs last in the module (defined last): the calls were logged, and 5xx never happened."""
    assert served.statuses, "the fuzz tests ran first"
    assert max(served.statuses) < 500
    log = served.gateway.log
    assert log is not None
    log.flush()
    answered = served.sdk_answers  # at least the two well-formed examples
    assert answered >= 2
    assert log.query("SELECT count(*) AS n FROM calls WHERE status = 'ok'")["n"][0] >= answered
