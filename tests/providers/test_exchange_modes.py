"""The HTTP exchanges of `HttpProvider` in every call mode. They are written once for asyncio
(`aigw_lab/providers/_async/exchange.py`) and the sync ones are generated from it, so each
behaviour here runs in chat, achat, stream and astream (and `send`/`asend`), against
`FakeUpstream` on loopback: the conformance suite checks most wire details in one mode."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from aigw_lab import errors
from aigw_lab.providers.base import HttpClients, PoolSettings
from aigw_lab.providers.transport import HttpProvider
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, TextDelta

from .adapters import API_KEY, Adapter, adapters, make_provider
from .wire_formats import ANSWER

MODES = ("chat", "achat", "stream", "astream")
STREAM_MODES = ("stream", "astream")
DIRECT = adapters(gateway=False)


@pytest.fixture
async def both_clients() -> AsyncIterator[HttpClients]:
    shared = HttpClients(
        transport=httpx.HTTPTransport(verify=False),
        async_transport=httpx.AsyncHTTPTransport(verify=False),
    )
    yield shared
    await shared.aclose()  # the async pool of this loop, then the sync one


async def call(
    provider: HttpProvider, request: ChatRequest, mode: str, deltas: list[str] | None = None
) -> ChatResponse:
    """The response of one call in ``mode``; a stream's deltas go to ``deltas`` as they
    arrive (so a test sees what came before an error)."""
    deltas = [] if deltas is None else deltas
    if mode == "chat":
        return provider.chat(request)
    if mode == "achat":
        return await provider.achat(request)
    ends: list[ChatResponse] = []

    def take(event: Any) -> None:
        if isinstance(event, TextDelta):
            assert not ends, "a delta after the StreamEnd"
            deltas.append(event.text)
        else:
            assert isinstance(event, StreamEnd)
            ends.append(event.response)

    if mode == "stream":
        for event in provider.stream(request):
            take(event)
    else:
        async for event in provider.astream(request):
            take(event)
    assert len(ends) == 1, "a stream ends with exactly one StreamEnd"
    return ends[0]


def _reply(adapter: Adapter, fake: FakeUpstream, mode: str, **options: Any) -> None:
    if mode in STREAM_MODES:
        fake.reply_sse(adapter.expected.stream, **options)
    else:
        fake.reply_json(adapter.expected.body, **options)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("adapter", DIRECT)
async def test_every_mode_answers_with_the_normalised_response(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    _reply(adapter, fake, mode, headers={"cf-aig-cache-status": "HIT"})
    deltas: list[str] = []

    response = await call(provider, adapter.request(), mode, deltas)

    assert response.text == ANSWER
    if mode in STREAM_MODES:
        assert "".join(deltas) == ANSWER and len(deltas) > 1
    assert response.usage == adapter.expected.usage
    assert response.provider == provider.name
    assert response.cache_status == "upstream_hit"
    latency = response.latency
    assert 0 <= latency.ttfb_ms <= latency.upstream_ms <= latency.total_ms
    assert latency.ttft_ms <= latency.total_ms
    sent = fake.last_request
    assert (sent.method, sent.path) == ("POST", adapter.path)
    assert bool(sent.json.get("stream")) is (mode in STREAM_MODES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
async def test_every_mode_maps_an_error_status_once_with_keys_redacted(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    body = {"error": {"message": f"bad key Bearer {API_KEY}", "type": "invalid_request_error"}}
    fake.reply_json(body, status=401)
    with pytest.raises(errors.AuthenticationError) as caught:
        await call(provider, adapter.request(), mode)
    error = caught.value
    assert error.status == 401 and error.provider == provider.name
    assert API_KEY not in str(error) and API_KEY not in (error.body or "")
    assert "***" in (error.body or "")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("adapter", adapters(wire="anthropic", gateway=False))
async def test_every_mode_maps_a_retry_after_status(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    fake.reply_json(body, status=429, headers={"retry-after": "7"})
    with pytest.raises(errors.RateLimitedError) as caught:
        await call(provider, adapter.request(), mode)
    assert caught.value.retry_after == 7.0
    assert "slow down" in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
async def test_every_mode_calls_a_non_json_answer_malformed(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    # Labelled JSON, so a stream reads it whole too (as a proxy's error page would be).
    fake.reply_raw(b"<html>502 Bad Gateway</html>", status=200)
    with pytest.raises(errors.MalformedResponseError) as caught:
        await call(provider, adapter.request(), mode)
    assert caught.value.status == 200
    assert caught.value.body == "<html>502 Bad Gateway</html>"
    assert not isinstance(caught.value, errors.StreamInterruptedError)


@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("adapter", DIRECT)
async def test_a_stream_answered_with_whole_json_yields_it_as_one_delta(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    fake.reply_json(adapter.expected.body)  # a server that ignored "stream"
    deltas: list[str] = []
    response = await call(provider, adapter.request(), mode, deltas)
    assert deltas == [ANSWER]
    assert response.text == ANSWER and response.usage == adapter.expected.usage


def _cut_after_first_text(adapter: Adapter) -> str:
    marker = {"anthropic": "event: content_block_delta\ndata:"}.get(adapter.wire, "data:")
    stream = adapter.expected.stream
    first_text = stream.index("Paris — ")
    return stream[: stream.index("\n\n", first_text) + 2] + marker + ' {"trunc'


@pytest.mark.parametrize("abort", [False, True], ids=["clean-end", "connection-cut"])
@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("adapter", DIRECT)
async def test_a_cut_stream_raises_interrupted_after_the_text_it_delivered(
    adapter: Adapter, mode: str, abort: bool, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    fake.reply_sse(_cut_after_first_text(adapter), chunk_size=9, abort=abort)
    deltas: list[str] = []
    with pytest.raises(errors.StreamInterruptedError) as caught:
        await call(provider, adapter.request(), mode, deltas)
    assert deltas == ["Paris — "]
    assert caught.value.partial_text == "Paris — " and caught.value.text_delivered


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
async def test_every_mode_times_out_as_a_provider_timeout(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    _reply(adapter, fake, mode, delay=5.0)  # released when the fake closes
    with pytest.raises(errors.ProviderTimeoutError) as caught:
        await call(provider, adapter.request(timeout=0.05), mode)
    assert caught.value.retryable and "waiting for" in str(caught.value)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("adapter", adapters(wire="anthropic", gateway=False))
async def test_every_mode_calls_a_refused_or_dropped_connection_a_network_error(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    refused = make_provider(adapter, _closed_port_url(), both_clients)
    with pytest.raises(errors.NetworkError) as caught:
        await call(refused, adapter.request(), mode)
    assert isinstance(caught.value.__cause__, httpx.HTTPError)
    dropped = make_provider(adapter, fake.url, both_clients)
    fake.reply_drop()
    with pytest.raises(errors.NetworkError):
        await call(dropped, adapter.request(), mode)


def _one_connection_clients(pool_timeout: float) -> HttpClients:
    # A transport passed in keeps its own pool (httpx ignores the client's limits then).
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return HttpClients(
        transport=httpx.HTTPTransport(verify=False, limits=one),
        async_transport=httpx.AsyncHTTPTransport(verify=False, limits=one),
        pool=PoolSettings(max_connections=1, max_keepalive=1, pool_timeout=pool_timeout),
    )


class _WatchedStreams(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A loopback transport (one connection per pool) that records each time a response's
    stream is closed: an abandoned stream must close its response at once, not whenever the
    garbage collector drops it."""

    def __init__(self) -> None:
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.sync = httpx.HTTPTransport(verify=False, limits=one)
        self.async_ = httpx.AsyncHTTPTransport(verify=False, limits=one)
        self.closed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.sync.handle_request(request)
        watch, inner = self, response.stream

        class Stream(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                yield from inner  # type: ignore[misc]

            def close(self) -> None:
                watch.closed += 1
                inner.close()  # type: ignore[union-attr]

        return httpx.Response(response.status_code, headers=response.headers, stream=Stream(),
                              extensions=response.extensions)  # fmt: skip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.async_.handle_async_request(request)
        watch, inner = self, response.stream

        class Stream(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in inner:  # type: ignore[union-attr]
                    yield chunk

            async def aclose(self) -> None:
                watch.closed += 1
                await inner.aclose()  # type: ignore[union-attr]

        return httpx.Response(response.status_code, headers=response.headers, stream=Stream(),
                              extensions=response.extensions)  # fmt: skip


@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
async def test_an_abandoned_stream_closes_its_response_and_frees_the_connection(
    adapter: Adapter, mode: str, fake: FakeUpstream
) -> None:
    watch = _WatchedStreams()
    # One connection and a short pool wait: a response left open would hold the connection
    # and the second call would time out waiting for it.
    clients = HttpClients(
        transport=watch,
        async_transport=watch,
        pool=PoolSettings(max_connections=1, max_keepalive=1, pool_timeout=0.5),
    )
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(adapter.expected.stream, chunk_size=16, chunk_delay=0.01)
    fake.reply_json(adapter.expected.body)
    try:
        if mode == "stream":
            events = provider.stream(adapter.request())
            assert isinstance(next(events), TextDelta)
            assert watch.closed == 0
            events.close()
            assert watch.closed == 1
            second = provider.chat(adapter.request())
        else:
            aevents = provider.astream(adapter.request())
            assert isinstance(await anext(aevents), TextDelta)
            assert watch.closed == 0
            await aevents.aclose()
            assert watch.closed == 1
            second = await provider.achat(adapter.request())
        assert second.text == ANSWER
        assert watch.closed == 2  # the second call's response too
    finally:
        await clients.aclose()
        watch.sync.close()
        await watch.async_.aclose()


@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
async def test_a_full_pool_fails_fast_in_every_mode(adapter: Adapter, fake: FakeUpstream) -> None:
    # The pool-wait cap (`PoolSettings.pool_timeout`) holds for both clients: a call that
    # finds the only connection busy fails as a timeout instead of queueing behind it.
    clients = _one_connection_clients(pool_timeout=0.05)
    provider = make_provider(adapter, fake.url, clients)
    fake.reply_sse(adapter.expected.stream, chunk_size=16, chunk_delay=0.01)
    fake.reply_sse(adapter.expected.stream, chunk_size=16, chunk_delay=0.01)
    try:
        held = provider.stream(adapter.request())
        next(held)  # holds the sync pool's only connection
        with pytest.raises(errors.ProviderTimeoutError):
            provider.chat(adapter.request())
        held.close()
        aheld = provider.astream(adapter.request())
        await anext(aheld)  # holds the async pool's only connection
        with pytest.raises(errors.ProviderTimeoutError):
            await provider.achat(adapter.request())
        await aheld.aclose()
    finally:
        await clients.aclose()


# --- send / asend: the batch APIs' exchanges ---------------------------------------------


async def _send(provider: HttpProvider, mode: str, *args: Any, **kwargs: Any) -> httpx.Response:
    if mode == "send":
        return provider.send(*args, **kwargs)
    return await provider.asend(*args, **kwargs)


@pytest.mark.parametrize("mode", ["send", "asend"])
@pytest.mark.parametrize("adapter", adapters(wire="openai", gateway=False))
async def test_send_in_both_modes_authenticates_and_maps_errors(
    adapter: Adapter, mode: str, fake: FakeUpstream, both_clients: HttpClients
) -> None:
    provider = make_provider(adapter, fake.url, both_clients)
    stand_in = ChatRequest("gpt-4o-mini", ())
    fake.reply_json({"id": "batch_1"})
    response = await _send(provider, mode, "GET", "/batches/batch_1", on_behalf_of=stand_in)
    assert response.json() == {"id": "batch_1"}
    sent = fake.last_request
    assert (sent.method, sent.path) == ("GET", "/v1/batches/batch_1")
    assert sent.headers.get("authorization") == f"Bearer {API_KEY}"

    fake.reply_json({"error": {"message": f"no {API_KEY}", "type": "x"}}, status=404)
    with pytest.raises(errors.ProviderError) as caught:
        await _send(provider, mode, "GET", "/batches/none", on_behalf_of=stand_in)
    assert caught.value.status == 404 and caught.value.model == "gpt-4o-mini"
    assert API_KEY not in (caught.value.body or "")

    with pytest.raises(errors.InvalidRequestError, match="outside its base_url"):
        await _send(provider, mode, "GET", "http://elsewhere.invalid/v1/x", on_behalf_of=stand_in)
    with pytest.raises(errors.InvalidRequestError):
        await _send(provider, mode, "GET", "/batches/../files", on_behalf_of=stand_in)

    refused = make_provider(adapter, _closed_port_url(), both_clients)
    with pytest.raises(errors.NetworkError):
        await _send(refused, mode, "GET", "/batches/batch_1", on_behalf_of=stand_in)


def test_the_exchanges_are_the_generated_functions():
    # A hand-written method shadowing one of them would escape the unasync check.
    from aigw_lab.providers._async import exchange as awaited
    from aigw_lab.providers._sync import exchange as blocking
    from aigw_lab.sim.fleet import SimulatedProvider

    for cls in (HttpProvider, SimulatedProvider):
        assert (cls.chat, cls.stream, cls.send) == (blocking.chat, blocking.stream, blocking.send)
        assert (cls.achat, cls.astream, cls.asend) == (
            awaited.achat,
            awaited.astream,
            awaited.asend,
        )
