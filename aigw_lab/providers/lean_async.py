"""The async lean transport (`AsyncLeanTransport`): `aigw_lab.providers.lean`'s pool and wire
handling over asyncio protocols. One instance belongs to one event loop, as the
`httpx.AsyncClient` that uses it does (`HttpClients` makes one per loop).

The waiting differs in kind from the sync transport's (callbacks feeding a parser and
waking a future, timers for timeouts), so this is a small hand-written twin rather than a
generated one; everything that does not wait is shared in `lean_wire`.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from aigw_lab.providers.lean import default_ssl_context, parser_type
from aigw_lab.providers.lean_direct import (
    DirectRequest,
    LeanResponse,
    streamed_answer,
    whole_answer,
)
from aigw_lab.providers.lean_wire import (
    IdleConnections,
    ResponseReader,
    chunk,
    origin_of,
    request_head,
)

__all__ = ["AsyncLeanTransport"]

_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class _Conn(asyncio.Protocol):
    """One connection: bytes received go straight into the current answer's reader, and
    wake the task waiting for them. Bytes arriving while no answer is expected (or the
    connection closing) make it unusable."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader: ResponseReader | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.broken = False
        self.at_eof = False
        self.paused = False
        self.drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None:
            self.broken = True
            return
        try:
            reader.feed(data)
        except httpx.RemoteProtocolError as exc:
            self.error = exc
        self._wake()

    def eof_received(self) -> bool:
        self.at_eof = True
        self.broken = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        self.at_eof = True
        if exc is not None and self.error is None:
            self.error = httpx.ReadError(str(exc) or type(exc).__name__)
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self, reader: ResponseReader, timeout: float | None) -> None:
        """Wait until ``reader`` got more bytes, reached its end, or the connection ended."""
        if self.error is not None:
            raise self.error
        if reader.chunks or reader.complete:
            return  # bytes came in since the caller last looked
        if self.at_eof:
            reader.eof()
            return
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()
        if self.error is not None:
            raise self.error
        if self.at_eof and not reader.complete and not reader.chunks:
            reader.eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out"))


def _usable(conn: _Conn) -> bool:
    transport = conn.transport
    return not conn.broken and transport is not None and not transport.is_closing()


def _close(conn: _Conn) -> None:
    conn.close()


class _Body(httpx.AsyncByteStream):
    """An async response body read off its connection; closing it gives the connection
    back (reused if the answer ended cleanly, else closed)."""

    def __init__(
        self,
        transport: AsyncLeanTransport,
        origin: tuple[bytes, bytes, int],
        conn: _Conn,
        reader: ResponseReader,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Conn | None = conn
        self._reader = reader
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._reader
        for part in reader.take():
            yield part
        while not reader.complete:
            conn = self._conn
            if conn is None:
                raise httpx.ReadError("the response was closed")
            await conn.receive(reader, self._read_timeout)
            for part in reader.take():
                yield part

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.reader = None
            self._transport._give_back(self._origin, conn, self._reader.reusable)


class AsyncLeanTransport(httpx.AsyncBaseTransport):
    """The async lean transport (see `aigw_lab.providers.lean` for what it does and what
    falls back to httpx's transport). Waiting callers get freed connections first come,
    first served."""

    def __init__(
        self,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parser = parser_type()
        self._limits = limits
        self._ssl = ssl_context
        self._pool = IdleConnections(limits, clock)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._fallback: httpx.AsyncHTTPTransport | None = None

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or carrying a request."""
        return self._pool.total

    @property
    def idle_connections(self) -> int:
        return self._pool.idle

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD" or request.url.raw_scheme not in (b"http", b"https"):
            return await self._other().handle_async_request(request)
        timeouts = request.extensions.get("timeout") or {}
        head, chunked = request_head(request)
        origin = origin_of(request.url)
        write = timeouts.get("write")
        conn, reader = await self._head(
            origin, timeouts, lambda conn: _send(conn, head, request, chunked, write)
        )
        return reader.response(_Body(self, origin, conn, reader, timeouts.get("read")))

    # -- the direct path (`aigw_lab.providers.lean_direct`): no httpx models -------------------

    async def fetch(self, request: DirectRequest) -> LeanResponse:
        """Send ``request`` and read its whole answer; the connection goes back to the pool
        before this returns. Failures are the httpx exceptions `handle_async_request`
        raises."""
        conn, reader, headers_at = await self._exchange(request)
        read_timeout = request.timeouts.get("read")
        parts: list[bytes] = []
        try:
            while True:
                parts += reader.take()
                if reader.complete:
                    break
                await conn.receive(reader, read_timeout)
        except BaseException:
            conn.reader = None
            self._give_back(request.origin, conn, False)
            raise
        conn.reader = None
        self._give_back(request.origin, conn, reader.reusable)
        return whole_answer(reader, headers_at, parts)

    async def open(self, request: DirectRequest) -> LeanResponse | httpx.Response:
        """Send ``request`` and return its answer once the head arrived, the body still to
        read (a stream); an encoded body comes as an `httpx.Response`, which decodes it."""
        conn, reader, headers_at = await self._exchange(request)
        body = _Body(self, request.origin, conn, reader, request.timeouts.get("read"))
        return streamed_answer(reader, headers_at, body)

    async def _exchange(self, request: DirectRequest) -> tuple[_Conn, ResponseReader, float]:
        """Write ``request`` on a pooled (or new) connection and read up to the answer's
        head: the connection, its reader, and when the head was complete."""
        data, write = request.data, request.timeouts.get("write")
        conn, reader = await self._head(
            request.origin, request.timeouts, lambda conn: _write(conn, data, write)
        )
        return conn, reader, time.perf_counter()

    async def _head(
        self,
        origin: tuple[bytes, bytes, int],
        timeouts: Mapping[str, Any],
        send: Callable[[_Conn], Awaitable[None]],
    ) -> tuple[_Conn, ResponseReader]:
        """Take a pooled (or new) connection to ``origin``, ``send`` the request on it and
        read up to the answer's head. On any failure the connection is dropped (or, when none
        was made, its place in the pool freed) before the exception goes on."""
        conn = await self._take(origin, timeouts.get("pool"))
        try:
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"))
            # The reader is the connection's before the first byte is written: an answer can
            # arrive (and be read by the protocol) while a large request is still draining.
            reader = conn.reader = ResponseReader(self._parser)
            await send(conn)
            read_timeout = timeouts.get("read")
            while not reader.headers_done:
                await conn.receive(reader, read_timeout)
        except BaseException:
            if conn is None:
                self._pool.forget()
                self._wake_one()
            else:
                conn.reader = None
                self._give_back(origin, conn, False)
            raise
        return conn, reader

    async def aclose(self) -> None:
        for conn in self._pool.drain():
            conn.close()
        while self._waiters:
            self._wake_one()
        if self._fallback is not None:
            await self._fallback.aclose()

    # -- the pool ------------------------------------------------------------------------------

    async def _take(self, origin: tuple[bytes, bytes, int], wait: float | None) -> _Conn | None:
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        first = True
        while True:
            if self._pool.closed:
                raise RuntimeError("the transport is closed")
            # Newcomers queue behind callers already waiting (first come, first served).
            if not self._waiters or not first:
                got, conn = self._pool.take(origin, _usable, _close)
                if got:
                    return conn  # type: ignore[no-any-return]
            first = False
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise httpx.PoolTimeout("timed out waiting for a free connection")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                if left is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, left)
            except TimeoutError:
                raise httpx.PoolTimeout("timed out waiting for a free connection") from None
            except BaseException:
                # Cancelled: a wake-up meant for this caller goes to the next one.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _give_back(self, origin: tuple[bytes, bytes, int], conn: _Conn, reusable: bool) -> None:
        self._pool.put(origin, conn, reusable and _usable(conn), _close)
        self._wake_one()

    async def _connect(self, origin: tuple[bytes, bytes, int], timeout: float | None) -> _Conn:
        scheme, host, port = origin
        name = host.decode("ascii")
        context = None
        if scheme == b"https":
            if self._ssl is None:
                self._ssl = default_ssl_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    _Conn, name, port, ssl=context, server_hostname=name if context else None
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:  # ssl.SSLError included
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return conn

    def _other(self) -> httpx.AsyncHTTPTransport:
        if self._fallback is None:
            self._fallback = httpx.AsyncHTTPTransport(
                limits=self._limits, verify=self._ssl or default_ssl_context()
            )
        return self._fallback


async def _send(
    conn: _Conn, head: bytes, request: httpx.Request, chunked: bool, timeout: float | None
) -> None:
    """Write ``request`` to ``conn``, waiting (up to ``timeout``) when the socket's buffer
    is full."""
    transport = conn.transport
    if transport is None or transport.is_closing() or conn.broken:
        raise httpx.WriteError("the connection is closed")
    stream = request.stream
    if isinstance(stream, httpx.ByteStream) and not chunked:
        transport.write(head + request.content)
    else:
        transport.write(head)
        assert isinstance(stream, httpx.AsyncByteStream)
        async for part in stream:
            if part:
                transport.write(chunk(part) if chunked else part)
                await _drain(conn, timeout)
        if chunked:
            transport.write(chunk(b""))
    await _drain(conn, timeout)


async def _write(conn: _Conn, data: bytes, timeout: float | None) -> None:
    """Write ``data`` (a whole request) to ``conn``, waiting when the socket's buffer is full."""
    transport = conn.transport
    if transport is None or transport.is_closing() or conn.broken:
        raise httpx.WriteError("the connection is closed")
    transport.write(data)
    await _drain(conn, timeout)


async def _drain(conn: _Conn, timeout: float | None) -> None:
    if not conn.paused:
        return
    conn.drained = asyncio.get_running_loop().create_future()
    try:
        async with asyncio.timeout(timeout):
            await conn.drained
    except TimeoutError as exc:
        raise httpx.WriteTimeout("timed out") from exc
    if conn.broken and conn.transport is not None and conn.transport.is_closing():
        raise httpx.WriteError("the connection closed while sending")
