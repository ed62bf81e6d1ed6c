"""The sharded upstream pool (`aigw_lab.providers.sharded`, ``pool_shards``): requests spread
over the shards by calls in flight, the total connection limit holds, closing closes every
shard, a response (streamed or not) gives its slot back to the shard that served it, and
errors map exactly as with one pool.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from aigw_lab.errors import ConfigError, ProviderTimeoutError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, PoolSettings, ProviderSpec
from aigw_lab.providers.sharded import AsyncShardedTransport, ShardedTransport, split_limits
from aigw_lab.testing.fake_upstream import FakeUpstream

ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip
SSE = (
    'data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
    '"delta":{"content":"o"},"finish_reason":null}]}\n\n'
    'data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
    '"delta":{"content":"k"},"finish_reason":"stop"}]}\n\n'
    'data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[],'
    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    "data: [DONE]\n\n"
)
HOLD_S = 3.0  # the longest a slow answer holds a connection


BODY = json.dumps(ANSWER).encode()


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An unread body, as a real transport returns (a body given as content would make the
    response count as read and closed already)."""

    def __iter__(self) -> Iterator[bytes]:
        yield BODY

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield BODY


def unread() -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, stream=Body())


class Shard(httpx.BaseTransport):
    """A stand-in shard: answers from memory and records what it served and whether it was
    closed."""

    def __init__(self) -> None:
        self.served = 0
        self.closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.served += 1
        return unread()

    def close(self) -> None:
        self.closed = True


class AsyncShard(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.served = 0
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.served += 1
        return unread()

    async def aclose(self) -> None:
        self.closed = True


class Failing(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)


def test_limits_split_exactly_into_the_totals() -> None:
    parts = split_limits(httpx.Limits(max_connections=10, max_keepalive_connections=7), 4)
    assert [p.max_connections for p in parts] == [3, 3, 2, 2]
    assert [p.max_keepalive_connections for p in parts] == [2, 2, 2, 1]
    with pytest.raises(ValueError):
        split_limits(httpx.Limits(max_connections=2), 3)


@pytest.mark.parametrize(
    "kwargs",
    [{"shards": 0}, {"shards": True}, {"shards": 2.0}, {"shards": 5, "max_connections": 4}],
)
def test_bad_shard_counts_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PoolSettings(**kwargs)  # type: ignore[arg-type]


def test_requests_in_flight_spread_over_the_shards_and_come_back_on_close() -> None:
    shards = [Shard() for _ in range(4)]
    transport = ShardedTransport(shards)
    client = httpx.Client(transport=transport)
    open_ = [client.send(client.build_request("GET", "http://x/"), stream=True) for _ in range(8)]
    assert [s.served for s in shards] == [2, 2, 2, 2]
    assert transport.picker.in_flight == [2, 2, 2, 2]
    for response in open_[:3]:
        response.close()
        response.close()  # a second close gives nothing back twice
    assert sum(transport.picker.in_flight) == 5
    # the next request goes to a shard with the fewest in flight
    least = min(transport.picker.in_flight)
    before = list(transport.picker.in_flight)
    extra = client.send(client.build_request("GET", "http://x/"), stream=True)
    grown = [
        i for i, (a, b) in enumerate(zip(before, transport.picker.in_flight, strict=True)) if a != b
    ]
    assert len(grown) == 1 and before[grown[0]] == least
    for response in [*open_[3:], extra]:
        response.close()
    assert transport.picker.in_flight == [0, 0, 0, 0]
    client.close()
    assert all(s.closed for s in shards)


def test_the_async_transport_spreads_releases_and_closes_every_shard() -> None:
    shards = [AsyncShard() for _ in range(3)]
    transport = AsyncShardedTransport(shards)

    async def scenario() -> None:
        client = httpx.AsyncClient(transport=transport)
        opened = [
            await client.send(client.build_request("GET", "http://x/"), stream=True)
            for _ in range(6)
        ]
        assert transport.picker.in_flight == [2, 2, 2]
        for response in opened:
            await response.aread()
            await response.aclose()
        assert transport.picker.in_flight == [0, 0, 0]
        await client.aclose()

    asyncio.run(scenario())
    assert [s.served for s in shards] == [2, 2, 2]
    assert all(s.closed for s in shards)


def test_a_failing_shard_gives_its_slot_back_and_the_error_passes_unchanged() -> None:
    transport = ShardedTransport([Failing(), Failing()])
    client = httpx.Client(transport=transport)
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            client.get("http://x/")
    assert transport.picker.in_flight == [0, 0]


def sharded_of(client: httpx.Client | httpx.AsyncClient) -> object:
    """The sharded transport mounted for every URL (httpx keeps mounts in ``_mounts``)."""
    for pattern, transport in client._mounts.items():
        if pattern.pattern == "all://":
            return transport
    return None


def sharded_gateway(fake: FakeUpstream, **pool: object) -> Gateway:
    spec = ProviderSpec("up", "openai-compatible", base_url=f"{fake.url}/v1", timeout=30.0)
    return Gateway([spec], pool=PoolSettings(**pool), log=None)  # type: ignore[arg-type]


def test_the_gateway_builds_sharded_pools_and_closes_them(fake: FakeUpstream) -> None:
    clients = HttpClients(pool=PoolSettings(shards=4))  # 200 connections: 50 per shard
    client = clients.sync()
    transport = sharded_of(client)
    assert isinstance(transport, ShardedTransport) and len(transport.shards) == 4
    for _ in range(4):  # one after another: ties rotate, so one idle connection per shard
        fake.reply_json(ANSWER)
        assert client.post(f"{fake.url}/v1", content=b"{}").status_code == 200
    assert [len(shard._pool.connections) for shard in transport.shards] == [1, 1, 1, 1]
    clients.close()
    # every shard's httpcore pool is closed: it holds no connection any more
    assert all(shard._pool.connections == [] for shard in transport.shards)
    assert sharded_of(HttpClients().sync()) is None  # the default is one pool, as before


def test_the_total_connection_limit_holds_across_shards(fake: FakeUpstream) -> None:
    # Two shards of one connection each: two slow calls hold both, a third waits for the
    # pool and fails (with one unsplit pool of two per shard it would open a third).
    release = threading.Event()
    fake.reply_json(ANSWER, delay=HOLD_S, release=release)
    fake.reply_json(ANSWER, delay=HOLD_S, release=release)
    gateway = sharded_gateway(fake, max_connections=2, max_keepalive=2, pool_timeout=0.2, shards=2)
    done: list[str] = []
    threads = [
        threading.Thread(target=lambda: done.append(gateway.chat("up/m", "hi").text))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        while len(fake.requests) < 2:  # both connections busy from here on
            time.sleep(0.005)
        with pytest.raises(ProviderTimeoutError) as info:
            gateway.chat("up/m", "hi")
        assert isinstance(info.value.__cause__, httpx.PoolTimeout)
        assert not done
    finally:
        release.set()
        for thread in threads:
            thread.join()
        gateway.close()
    assert done == ["ok", "ok"]


def test_streams_release_their_connection_to_the_shard_that_served_them(
    fake: FakeUpstream,
) -> None:
    gateway = sharded_gateway(fake, shards=3)
    fake.reply_sse(SSE, chunk_size=40)
    fake.reply_sse(SSE, chunk_size=40)
    transport = sharded_of(gateway._clients.sync())
    assert isinstance(transport, ShardedTransport)
    stream = gateway.stream("up/m", "hi")
    next(iter(stream))  # the first text: the response is open on one shard
    assert sorted(transport.picker.in_flight) == [0, 0, 1]
    stream.close()  # closed early: the slot comes back (httpcore drops the connection)
    assert transport.picker.in_flight == [0, 0, 0]
    second = iter(gateway.stream("up/m", "hi"))
    parts = [next(second)]
    busy = transport.picker.in_flight.index(1)
    parts.extend(second)
    assert "".join(parts) == "ok"
    assert transport.picker.in_flight == [0, 0, 0]
    # the finished stream's connection is idle in the pool of the shard that served it
    pools = [len(shard._pool.connections) for shard in transport.shards]
    assert pools == [int(i == busy) for i in range(3)]
    gateway.close()


def test_async_streams_and_calls_release_their_shard(fake: FakeUpstream) -> None:
    gateway = sharded_gateway(fake, shards=2)
    fake.reply_json(ANSWER)
    fake.reply_sse(SSE, chunk_size=40)

    async def scenario() -> AsyncShardedTransport:
        assert (await gateway.achat("up/m", "hi")).text == "ok"
        parts = [part async for part in gateway.astream("up/m", "hi")]
        transport = sharded_of(gateway._clients.async_())
        await gateway.aclose()
        assert "".join(parts) == "ok"
        return transport  # type: ignore[return-value]

    transport = asyncio.run(scenario())
    assert isinstance(transport, AsyncShardedTransport)
    assert transport.picker.in_flight == [0, 0]


@pytest.mark.parametrize("shards", [1, 3])
def test_errors_map_as_with_one_pool(fake: FakeUpstream, shards: int) -> None:
    # A dropped connection and a refused one become the same typed errors either way.
    gateway = sharded_gateway(fake, shards=shards)
    fake.reply_drop()
    with pytest.raises(Exception) as dropped:
        gateway.chat("up/m", "hi")
    gateway.close()
    baseline = sharded_gateway(fake, shards=1)
    fake.reply_drop()
    with pytest.raises(Exception) as expected:
        baseline.chat("up/m", "hi")
    baseline.close()
    assert type(dropped.value) is type(expected.value)
    assert type(dropped.value.__cause__) is type(expected.value.__cause__)


def test_pool_shards_is_a_config_key(fake: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nlog = false\npool_shards = 4\n\n[providers.up]\nkind = "openai-compatible"\n'
        f'base_url = "{fake.url}/v1"\n'
    )
    gateway = Gateway.from_config(path)
    fake.reply_json(ANSWER)
    assert gateway.chat("up/m", "hi").text == "ok"
    transport = sharded_of(gateway._clients.sync())
    assert isinstance(transport, ShardedTransport) and len(transport.shards) == 4
    gateway.close()
    path.write_text(path.read_text().replace("pool_shards = 4", "pool_shards = 0"))
    with pytest.raises(ConfigError, match="shards"):
        Gateway.from_config(path)


def test_proxy_environment_variables_still_apply(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shards passed as httpx's ``transport`` would turn the proxy variables off and send
    # this call straight to upstream.invalid; mounted, the proxy still gets it.
    for name in ("ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake.url)
    spec = ProviderSpec("up", "openai-compatible", base_url="http://upstream.invalid/v1")
    gateway = Gateway([spec], pool=PoolSettings(shards=2), log=None)
    fake.reply_json(ANSWER)
    assert gateway.chat("up/m", "hi").text == "ok"
    assert "upstream.invalid" in fake.last_request.path
    gateway.close()


def test_a_request_goes_where_most_connections_are_free() -> None:
    # Shards of unequal size (a remainder of the split): the bigger one takes more, so a
    # request waits only when every shard is full, as in one pool of the same total.
    transport = ShardedTransport([Shard(), Shard()], capacities=[3, 1])
    client = httpx.Client(transport=transport)
    opened = [client.send(client.build_request("GET", "http://x/"), stream=True) for _ in range(4)]
    assert transport.picker.in_flight == [3, 1]
    for response in opened:
        response.close()
    client.close()
