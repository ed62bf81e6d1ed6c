"""The lean transport's direct path (`aigw_lab.providers.lean_direct`): a gateway's own client
over the lean transport sends chat calls as pre-built bytes, without httpx's client. It
must write the bytes httpx's client wrote, keep every timeout, the pool, the one error
mapping, decode encoded answers, and leave proxies, injected clients and odd headers to
httpx's client."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aigw_lab.errors import NetworkError, ProviderTimeoutError, RateLimitedError
from aigw_lab.providers.base import HttpClients, PoolSettings
from aigw_lab.providers.lean import LeanTransport
from aigw_lab.providers.lean_async import AsyncLeanTransport
from aigw_lab.providers.lean_direct import DirectRequest, LeanHeaders, RequestHead
from aigw_lab.providers.openai import OpenAICodec
from aigw_lab.providers.transport import HttpProvider
from aigw_lab.types import ChatRequest, StreamEnd, TextDelta

from .raw_upstream import Answer, RawUpstream, ok

pytest.importorskip("httptools", reason="the lean transport needs the fast-serve extra")

ANSWER = json.dumps(
    {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()
SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"o"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"k"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def raw() -> Iterator[RawUpstream]:
    with RawUpstream() as server:
        yield server


def provider_at(url: str, clients: HttpClients, **kwargs: Any) -> HttpProvider:
    headers = kwargs.pop("headers", {"Authorization": "Bearer sk-test"})
    return HttpProvider(
        "up", OpenAICodec(), url + "/v1", clients=clients, headers=headers, **kwargs
    )


def lean_clients(**pool: Any) -> HttpClients:
    return HttpClients(pool=PoolSettings(transport="lean", **pool))


def request(**kwargs: Any) -> ChatRequest:
    return ChatRequest.create("m", "hi", **kwargs)


def sse_answer(body: bytes, headers: str = "") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        + headers.encode()
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def no_client_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make httpx's client unusable: a call that still goes through it fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("httpx's client was used")

    monkeypatch.setattr(httpx.Client, "send", refuse)
    monkeypatch.setattr(httpx.AsyncClient, "send", refuse)


def run_modes(provider: HttpProvider, mode: str) -> str:
    """One call of ``mode`` (chat, achat, stream, astream): the answer's text."""
    if mode == "chat":
        return provider.chat(request()).text
    if mode == "stream":
        events = list(provider.stream(request()))
    else:

        async def go() -> Any:
            if mode == "achat":
                return await provider.achat(request())
            return [event async for event in provider.astream(request())]

        result = asyncio.run(go())
        if mode == "achat":
            return str(result.text)
        events = result
    assert isinstance(events[-1], StreamEnd)
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("mode", ["chat", "achat", "stream", "astream"])
def test_calls_skip_httpx_client(
    mode: str, raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    streaming = mode.endswith("stream")
    raw.add(Answer(sse_answer(SSE) if streaming else ok(ANSWER)))
    raw.add(Answer(sse_answer(SSE) if streaming else ok(ANSWER)))
    no_client_send(monkeypatch)
    clients = lean_clients()
    provider = provider_at(raw.url, clients)
    try:
        assert run_modes(provider, mode) == "ok"
        assert run_modes(provider, mode) == "ok"
    finally:
        clients.close()
    # Both calls on one kept-alive connection (for the async modes, one per asyncio.run).
    assert raw.accepted == (1 if mode in ("chat", "stream") else 2)


@pytest.mark.parametrize("stream", [False, True])
def test_the_bytes_sent_are_those_of_httpx_client(
    stream: bool, raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same request line, headers (names, values, order) and body as through the client."""
    answer = sse_answer(SSE) if stream else ok(ANSWER)
    raw.add(Answer(answer), Answer(answer))
    heads = []
    for direct in (True, False):
        clients = lean_clients()
        if not direct:
            monkeypatch.setattr(clients, "sync_lean", lambda: None)
        provider = provider_at(raw.url, clients, headers={"Authorization": "Bearer k", "X-A": "1"})
        try:
            run_modes(provider, "stream" if stream else "chat")
        finally:
            clients.close()
        heads.append(raw.requests[-1][1])
    assert heads[0] == heads[1]
    assert heads[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")


def test_the_body_is_what_httpx_json_would_send(raw: RawUpstream) -> None:
    head = RequestHead.build(
        httpx.Client().headers, httpx.URL(raw.url + "/v1/x"), {"authorization": "Bearer k"}
    )
    assert head is not None
    body = {"messages": [{"role": "user", "content": 'Grüße \u2028 "q" 東京'}]}
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    sent = head.request(content, {}).data
    reference = httpx.Client().build_request(
        "POST", raw.url + "/v1/x", json=body, headers={"authorization": "Bearer k"}
    )
    lines = sent.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    assert [tuple(line.split(b": ", 1)) for line in lines] == reference.headers.raw
    assert sent.endswith(b"\r\n\r\n" + reference.content)


@pytest.mark.parametrize("mode", ["chat", "achat", "stream", "astream"])
def test_an_encoded_answer_is_decoded(
    mode: str, raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    streaming = mode.endswith("stream")
    body = gzip.compress(SSE if streaming else ANSWER)
    kind = "text/event-stream" if streaming else "application/json"
    raw.add(
        Answer(
            b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n" % (kind.encode(), len(body)) + body
        )
    )
    no_client_send(monkeypatch)
    clients = lean_clients()
    try:
        assert run_modes(provider_at(raw.url, clients), mode) == "ok"
    finally:
        clients.close()


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_a_read_timeout_is_a_provider_timeout(
    mode: str, raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(ANSWER), hold=hold))
    no_client_send(monkeypatch)
    clients = lean_clients()
    provider = provider_at(raw.url, clients, timeout=0.2)
    try:
        with pytest.raises(ProviderTimeoutError, match="waiting for"):
            run_modes(provider, mode)
    finally:
        hold.set()
        clients.close()


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_the_pool_wait_is_capped_by_pool_timeout(
    mode: str, raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connection, held by a slow answer: a second call fails its pool wait (0.2 s)
    while the first still waits (its read timeout is 30 s)."""
    hold = threading.Event()
    raw.add(Answer(ok(ANSWER), hold=hold), Answer(ok(ANSWER)))
    no_client_send(monkeypatch)
    clients = lean_clients(max_connections=1, max_keepalive=1, pool_timeout=0.2)
    provider = provider_at(raw.url, clients, timeout=30.0)
    outcome: list[str] = []

    async def both() -> None:
        first = asyncio.ensure_future(provider.achat(request()))
        await asyncio.sleep(0.05)
        with pytest.raises(ProviderTimeoutError):
            await provider.achat(request())
        outcome.append("second timed out")
        assert not first.done()
        hold.set()
        outcome.append((await first).text)

    try:
        if mode == "achat":
            asyncio.run(both())
        else:
            thread = threading.Thread(target=lambda: outcome.append(provider.chat(request()).text))
            thread.start()
            while not raw.requests:
                threading.Event().wait(0.01)
            with pytest.raises(ProviderTimeoutError):
                provider.chat(request())
            outcome.append("second timed out")
            hold.set()
            thread.join(10)
    finally:
        hold.set()
        clients.close()
    assert outcome == ["second timed out", "ok"]


def test_a_request_timeout_overrides_the_read_timeout(
    raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(ANSWER), hold=hold))
    no_client_send(monkeypatch)
    clients = lean_clients()
    provider = provider_at(raw.url, clients, timeout=30.0)
    try:
        with pytest.raises(ProviderTimeoutError):
            provider.chat(request(timeout=0.2))
    finally:
        hold.set()
        clients.close()


def test_a_server_that_never_reads_is_a_write_timeout() -> None:
    with RawUpstream(read_bodies=False) as raw:
        url = httpx.URL(raw.url + "/x")
        head = RequestHead.build(httpx.Headers(), url, {})
        assert head is not None
        timeouts = {"connect": 5.0, "read": 5.0, "write": 0.2, "pool": 5.0}
        sent = head.request(b"x" * (64 << 20), timeouts)  # more than both sockets' buffers
        transport = LeanTransport()
        try:
            with pytest.raises(httpx.WriteTimeout):
                transport.fetch(sent)
        finally:
            transport.close()

        async def run() -> None:
            lean = AsyncLeanTransport()
            try:
                await lean.fetch(sent)
            finally:
                await lean.aclose()

        with pytest.raises(httpx.WriteTimeout):
            asyncio.run(run())


def test_a_refused_connection_is_a_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    no_client_send(monkeypatch)
    clients = lean_clients()
    try:
        for mode in ("chat", "achat"):
            with pytest.raises(NetworkError, match="failed"):
                run_modes(provider_at(f"http://127.0.0.1:{port}", clients), mode)
    finally:
        clients.close()


def test_a_connect_that_hangs_is_a_provider_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    no_client_send(monkeypatch)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", never)
    clients = lean_clients()
    provider = provider_at("http://127.0.0.1:9", clients, connect_timeout=0.1)
    try:
        with pytest.raises(ProviderTimeoutError, match="connecting to"):
            run_modes(provider, "achat")
    finally:
        clients.close()


def test_an_error_status_keeps_its_headers(
    raw: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"error":{"message":"slow down","type":"rate_limit_error"}}'
    raw.add(
        Answer(
            b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
            b"Retry-After: 7\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
    )
    no_client_send(monkeypatch)
    clients = lean_clients()
    try:
        with pytest.raises(RateLimitedError, match="slow down") as caught:
            provider_at(raw.url, clients).chat(request())
    finally:
        clients.close()
    assert caught.value.retry_after == 7.0


def test_a_cloudflare_cache_hit_is_read(raw: RawUpstream) -> None:
    raw.add(Answer(ok(ANSWER, headers="CF-AIG-Cache-Status: hit\r\n")))
    clients = lean_clients()
    try:
        assert provider_at(raw.url, clients).chat(request()).cache_status == "upstream_hit"
    finally:
        clients.close()


def test_cookies_an_upstream_sets_are_not_sent_back(raw: RawUpstream) -> None:
    """The direct path keeps no cookie jar (httpx's client sent one tenant's upstream
    cookies on every later call); documented in lean_direct's docstring."""
    raw.add(Answer(ok(ANSWER, headers="Set-Cookie: session=abc; Path=/\r\n")), Answer(ok(ANSWER)))
    clients = lean_clients()
    provider = provider_at(raw.url, clients)
    try:
        provider.chat(request())
        provider.chat(request())
    finally:
        clients.close()
    assert b"cookie" not in raw.requests[1][1].lower()


def test_a_header_that_cannot_be_sent_takes_the_client_and_fails_as_before(
    raw: RawUpstream,
) -> None:
    clients = lean_clients()
    provider = provider_at(raw.url, clients, headers={"X-Evil": "a\r\nInjected: 1"})
    try:
        with pytest.raises(NetworkError):
            provider.chat(request())
    finally:
        clients.close()
    assert raw.requests == []


def test_a_proxy_in_the_environment_takes_httpx_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set, calls go to the proxy (absolute-form request line) through
    httpx's client; the direct path is off."""
    with RawUpstream() as proxy:
        proxy.add(Answer(ok(ANSWER)))
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        clients = lean_clients()
        try:
            assert clients.sync_lean() is None
            provider = provider_at("http://upstream.invalid", clients)
            assert provider.chat(request()).text == "ok"
        finally:
            clients.close()
        assert proxy.requests[0][1].startswith(
            b"POST http://upstream.invalid/v1/chat/completions HTTP/1.1"
        )


def test_injected_clients_and_httpx_transport_take_the_client() -> None:
    assert HttpClients(pool=PoolSettings(transport="httpx")).sync_lean() is None
    assert (
        HttpClients(transport=httpx.MockTransport(lambda r: httpx.Response(200))).sync_lean()
        is None
    )
    assert HttpClients(client=httpx.Client()).sync_lean() is None

    async def run() -> tuple[Any, Any]:
        injected = HttpClients(async_client=httpx.AsyncClient())
        own = lean_clients()
        try:
            return injected.async_lean(), own.async_lean()
        finally:
            await own.aclose()

    injected, own = asyncio.run(run())
    assert injected is None and isinstance(own, AsyncLeanTransport)


def test_a_non_http_url_has_no_direct_head() -> None:
    assert RequestHead.build(httpx.Headers(), httpx.URL("ftp://x/y"), {}) is None


def test_lean_headers_read_as_httpx_headers() -> None:
    raw = [(b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"x-a", b"2"), (b"X-U", "é".encode())]
    ours, theirs = LeanHeaders(raw), httpx.Headers(raw)
    for name in ("content-type", "CONTENT-TYPE", "x-a", "x-u", "missing"):
        assert ours.get(name) == theirs.get(name)
        assert (name in ours) == (name in theirs)
    assert list(ours) == list(theirs)
    assert len(ours) == len(set(theirs.keys())) == 3  # names, as a Mapping counts them
    assert ours["X-A"] == "1, 2"
    with pytest.raises(KeyError):
        ours["missing"]
    assert ours.get(3) is None and 3 not in ours  # type: ignore[call-overload, operator]


def test_direct_requests_carry_the_capped_timeouts() -> None:
    clients = lean_clients(pool_timeout=0.5)
    provider = provider_at("http://127.0.0.1:1", clients, timeout=30.0, connect_timeout=2.0)
    try:
        built = provider._build(clients.sync(), request(), stream=False, direct=True)
        assert isinstance(built, DirectRequest)
        assert built.timeouts == {"connect": 2.0, "read": 30.0, "write": 30.0, "pool": 0.5}
        short = provider._build(clients.sync(), request(timeout=0.1), stream=False, direct=True)
        assert isinstance(short, DirectRequest)
        assert short.timeouts == {"connect": 2.0, "read": 0.1, "write": 0.1, "pool": 0.1}
    finally:
        clients.close()


TRICKY_BODIES = [
    b'{"a": 1, "a": 2}',  # duplicate keys: the last wins
    b'{"n": 18446744073709551616}',  # beyond 64 bits (orjson alone: a float)
    b'{"n": -9223372036854775809, "m": 18446744073709551615, "k": 9223372036854775807}',
    b'{"f": 0.1000000000000000055511151231257827, "g": 123456789012345678901234.5}',
    b'{"x": NaN, "y": -Infinity}',
    b'{"s": "\\ud800 lone"}',
    b'{"s": "\\u00e9\\ud83d\\ude00 \xc3\xa9", "f": [1e-7, 1.5, -0, 0.1, 1e400]}',
    '{"utf16": "é"}'.encode("utf-16"),
    b"[" * 600 + b"]" * 600,
    b" \n{}\t ",
    b'\xef\xbb\xbf{"bom": 1}',
    b'{"nul": "a\\u0000b", "deep": {"x": [true, false, null]}}',
]


@pytest.mark.parametrize("body", TRICKY_BODIES, ids=range(len(TRICKY_BODIES)))
def test_answers_parse_as_json_loads_parses_them(body: bytes) -> None:
    from aigw_lab.providers.transport import json_loads

    assert repr(json_loads()(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1} x', b"\xff"])
def test_a_body_neither_parser_accepts_is_a_value_error(body: bytes) -> None:
    from aigw_lab.providers.transport import json_loads

    with pytest.raises(ValueError):
        json_loads()(body)


def test_answers_are_parsed_by_orjson_when_installed() -> None:
    from aigw_lab.providers.transport import json_loads

    pytest.importorskip("orjson")
    assert json_loads() is not json.loads
    assert json_loads(lambda name: None) is json.loads  # not installed: the stdlib
    clients = lean_clients()
    try:
        assert provider_at("http://127.0.0.1:1", clients)._loads is not json.loads
    finally:
        clients.close()
