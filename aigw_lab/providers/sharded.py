"""A connection pool split into shards: K independent httpx transports, each with 1/K of the
pool's connections, and each request sent through the shard with the fewest requests in
flight.

Why: httpcore re-assigns queued requests to connections on every request and every
response close, scanning every queued request against every pooled connection (and polling
each idle socket), so its CPU per call grows with the calls in flight times the
connections (docs/performance.md, "Side by side with the peers"). K shards of 1/K the
connections each carry 1/K of the calls in flight, so each scan is about K² times smaller.

Opt in with ``PoolSettings(shards=K)`` (``[gateway] pool_shards``). The limits are split
exactly (shard i gets ``max_connections // K``, plus one while the remainder lasts), so the
total never exceeds the pool's; a shard whose connections are all busy queues its own
requests even when another shard has a free one, which least-in-flight picking keeps rare.
`HttpClients` mounts the shards for every URL, so the ``HTTP(S)_PROXY`` environment
variables still send proxied hosts through httpx's proxy transport (one pool, unsharded).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

__all__ = ["ShardedTransport", "AsyncShardedTransport", "split_limits"]


def split_limits(limits: httpx.Limits, shards: int) -> list[httpx.Limits]:
    """``limits`` divided among ``shards`` pools whose totals equal the original ones."""
    total = limits.max_connections
    keep = limits.max_keepalive_connections
    if total is None or shards < 1 or shards > total:
        raise ValueError(f"cannot split max_connections={total} into {shards} shards")
    keep = total if keep is None else min(keep, total)
    return [
        httpx.Limits(
            max_connections=total // shards + (i < total % shards),
            max_keepalive_connections=keep // shards + (i < keep % shards),
            keepalive_expiry=limits.keepalive_expiry,
        )
        for i in range(shards)
    ]


def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every shard: building one loads the CA bundle (~15 ms), and the
    shards of a pool verify alike."""
    return httpx.create_ssl_context()


class _Picker:
    """Counts requests in flight per shard and picks the shard with the most free
    connections (ties rotate, so shards of equal size share even a trickle of requests).
    A request thus queues only when every shard's connections are busy, as in one pool.
    Thread-safe: the sync client is shared by every thread of the gateway."""

    def __init__(self, capacities: list[int]) -> None:
        self.capacities = capacities
        self.in_flight = [0] * len(capacities)
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            counts, caps = self.in_flight, self.capacities
            n = len(counts)
            start = self._next
            self._next = (start + 1) % n
            best, most = start, caps[start] - counts[start]
            for offset in range(1, n):
                i = (start + offset) % n
                if caps[i] - counts[i] > most:
                    best, most = i, caps[i] - counts[i]
            counts[best] += 1
            return best

    def releaser(self, shard: int) -> Callable[[], None]:
        """A function that gives ``shard``'s slot back once, however often it is called."""
        done = [False]

        def release() -> None:
            with self._lock:
                if not done[0]:
                    done[0] = True
                    self.in_flight[shard] -= 1

        return release


class _CountedStream(httpx.SyncByteStream):
    """A response body stream that tells the picker when the response is closed (its
    connection went back to its shard's pool)."""

    def __init__(self, stream: httpx.SyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._release()


class _AsyncCountedStream(httpx.AsyncByteStream):
    """`_CountedStream` for async responses."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = release

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class ShardedTransport(httpx.BaseTransport):
    """A sync httpx transport over ``shards`` (any sync transports; `build` makes real
    ones). Closing it closes every shard."""

    def __init__(self, shards: list[Any], capacities: list[int] | None = None) -> None:
        if not shards:
            raise ValueError("a sharded transport needs at least one shard")
        self.shards = list(shards)
        self.picker = _Picker(capacities or [1] * len(self.shards))

    @classmethod
    def build(cls, limits: httpx.Limits, shards: int, **options: Any) -> ShardedTransport:
        """``shards`` `httpx.HTTPTransport` pools sharing ``limits`` between them
        (``options`` go to each: ``verify``, ``http2``, ...)."""
        split = split_limits(limits, shards)
        options.setdefault("verify", _ssl_context())
        parts = [httpx.HTTPTransport(limits=lim, **options) for lim in split]
        return cls(parts, [lim.max_connections or 1 for lim in split])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        shard = self.picker.take()
        release = self.picker.releaser(shard)
        try:
            response = self.shards[shard].handle_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _CountedStream(response.stream, release)
        return response

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncShardedTransport(httpx.AsyncBaseTransport):
    """An async httpx transport over ``shards`` (async transports; `build` makes real
    ones). One belongs to one event loop, like the client that uses it."""

    def __init__(self, shards: list[Any], capacities: list[int] | None = None) -> None:
        if not shards:
            raise ValueError("a sharded transport needs at least one shard")
        self.shards = list(shards)
        self.picker = _Picker(capacities or [1] * len(self.shards))

    @classmethod
    def build(cls, limits: httpx.Limits, shards: int, **options: Any) -> AsyncShardedTransport:
        """``shards`` `httpx.AsyncHTTPTransport` pools sharing ``limits`` between them."""
        split = split_limits(limits, shards)
        options.setdefault("verify", _ssl_context())
        parts = [httpx.AsyncHTTPTransport(limits=lim, **options) for lim in split]
        return cls(parts, [lim.max_connections or 1 for lim in split])

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = self.picker.take()
        release = self.picker.releaser(shard)
        try:
            response = await self.shards[shard].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _AsyncCountedStream(response.stream, release)
        return response

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
