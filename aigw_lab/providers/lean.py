"""A lean pooled HTTP/1.1 transport for the upstream calls (``[gateway] transport =
"lean"``), sync and async, as httpx transports: the rest of the stack (HttpProvider, its
error mapping, every test double) keeps talking to an `httpx.Client`.

Why: httpcore's pool re-assigns queued requests to connections on every request and every
response close, scanning every request against every pooled connection, so its CPU per
call grows with the calls in flight (docs/performance.md, "The upstream transport"). Here
a request takes the most recently used idle connection of its origin from a LIFO stack
(`lean_wire.IdleConnections`), or opens one, or waits in line for one; nothing scans.
Answers are parsed by httptools (the ``fast-serve`` extra), bodies are streamed (SSE),
Content-Length, chunked and close-delimited bodies are read, and keep-alive connections
are reused unless the server said ``Connection: close``, closed them while idle, or they
idled past ``keepalive_expiry``. A response closed before its end closes its connection.

Timeouts keep httpx's meaning (the request's ``timeout`` extension): ``connect`` for the
TCP and TLS set-up, ``write`` for sending, ``read`` for each wait for bytes, ``pool`` for
the wait for a free connection (`HttpClients` caps it by ``pool_timeout``, as with httpx's
own pool), each raised as httpx's exception of the same name. TLS uses httpx's default SSL
context (certifi's CA bundle).

Not covered, so `HttpClients` keeps httpx's own transport for them: proxies (any
``HTTP(S)_PROXY``/``ALL_PROXY`` in the environment), HTTP/2, and HEAD requests (whose
answers carry no body though they announce one), which go to an `httpx.HTTPTransport`
made on first use. A stale keep-alive connection the server closes just as a request is
sent fails that request (`httpx.RemoteProtocolError`, a `NetworkError` the retry stage
sees), as with httpcore: a request that may have reached the provider is never resent
here, where no log would see it.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from aigw_lab.errors import MissingExtraError
from aigw_lab.providers.lean_direct import (
    DirectRequest,
    LeanResponse,
    streamed_answer,
    whole_answer,
)
from aigw_lab.providers.lean_wire import (
    INSTALL_HINT,
    IdleConnections,
    ResponseReader,
    chunk,
    origin_of,
    request_head,
)

__all__ = ["LeanTransport", "parser_type", "default_ssl_context"]

_RECV = 65536
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def parser_type() -> Callable[[Any], Any]:
    """httptools' response parser, or `MissingExtraError` naming the install command."""
    try:
        # lazy: httptools is the optional fast-serve extra; only the lean transport needs it
        import httptools
    except ImportError:
        raise MissingExtraError(
            '[gateway] transport = "lean" needs httptools, from the fast-serve extra',
            hint=INSTALL_HINT,
        ) from None
    return httptools.HttpResponseParser  # type: ignore[no-any-return]


def default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context: certifi's CA bundle, hostnames checked."""
    return httpx.create_ssl_context()


class _Conn:
    """One socket to one origin, with the timeout it is currently set to."""

    __slots__ = ("sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.timeout: float | None = -1.0

    def settimeout(self, value: float | None) -> None:
        if value != self.timeout:
            self.sock.settimeout(value)
            self.timeout = value

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _usable(conn: _Conn) -> bool:
    """An idle connection may carry a request unless the server closed it or sent bytes
    while it idled (either makes it readable)."""
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _close(conn: _Conn) -> None:
    conn.close()


class _Body(httpx.SyncByteStream):
    """A response body read off its connection as the caller iterates; closing it gives
    the connection back (reused if the answer ended cleanly, else closed)."""

    def __init__(
        self,
        transport: LeanTransport,
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

    def __iter__(self) -> Iterator[bytes]:
        reader = self._reader
        yield from reader.take()
        while not reader.complete:
            conn = self._conn
            if conn is None:
                raise httpx.ReadError("the response was closed")
            _receive(conn, reader, self._read_timeout)
            yield from reader.take()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._transport._give_back(self._origin, conn, self._reader.reusable)


def _receive(conn: _Conn, reader: ResponseReader, timeout: float | None) -> None:
    """Read once from ``conn`` into ``reader`` (the end of a close-delimited body at EOF)."""
    conn.settimeout(timeout)
    try:
        data = conn.sock.recv(_RECV)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    if data:
        reader.feed(data)
    else:
        reader.eof()


class LeanTransport(httpx.BaseTransport):
    """The sync lean transport: one pool of HTTP/1.1 connections shared by every thread.

    ``limits`` sizes the pool as httpx's does (``max_connections`` open in all,
    ``max_keepalive_connections`` idle, ``keepalive_expiry``); ``ssl_context`` verifies
    https origins (default: httpx's). ``clock`` times idle connections."""

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
        self._ready = threading.Condition(threading.Lock())
        self._clock = clock
        self._fallback: httpx.HTTPTransport | None = None

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or carrying a request."""
        return self._pool.total

    @property
    def idle_connections(self) -> int:
        return self._pool.idle

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD" or request.url.raw_scheme not in (b"http", b"https"):
            return self._other().handle_request(request)
        timeouts = request.extensions.get("timeout") or {}
        head, chunked = request_head(request)
        origin = origin_of(request.url)
        write = timeouts.get("write")
        conn, reader = self._head(
            origin, timeouts, lambda conn: _send(conn, head, request, chunked, write)
        )
        return reader.response(_Body(self, origin, conn, reader, timeouts.get("read")))

    # -- the direct path (`aigw_lab.providers.lean_direct`): no httpx models -------------------

    def fetch(self, request: DirectRequest) -> LeanResponse:
        """Send ``request`` and read its whole answer; the connection goes back to the pool
        before this returns. Failures are the httpx exceptions `handle_request` raises."""
        conn, reader, headers_at = self._exchange(request)
        read_timeout = request.timeouts.get("read")
        parts: list[bytes] = []
        try:
            while True:
                parts += reader.take()
                if reader.complete:
                    break
                _receive(conn, reader, read_timeout)
        except BaseException:
            self._give_back(request.origin, conn, False)
            raise
        self._give_back(request.origin, conn, reader.reusable)
        return whole_answer(reader, headers_at, parts)

    def open(self, request: DirectRequest) -> LeanResponse | httpx.Response:
        """Send ``request`` and return its answer once the head arrived, the body still to
        read (a stream); an encoded body comes as an `httpx.Response`, which decodes it."""
        conn, reader, headers_at = self._exchange(request)
        body = _Body(self, request.origin, conn, reader, request.timeouts.get("read"))
        return streamed_answer(reader, headers_at, body)

    def _exchange(self, request: DirectRequest) -> tuple[_Conn, ResponseReader, float]:
        """Write ``request`` on a pooled (or new) connection and read up to the answer's
        head: the connection, its reader, and when the head was complete."""
        data, write = request.data, request.timeouts.get("write")
        conn, reader = self._head(
            request.origin, request.timeouts, lambda conn: _write(conn, data, write)
        )
        return conn, reader, time.perf_counter()

    def _head(
        self,
        origin: tuple[bytes, bytes, int],
        timeouts: Mapping[str, Any],
        send: Callable[[_Conn], None],
    ) -> tuple[_Conn, ResponseReader]:
        """Take a pooled (or new) connection to ``origin``, ``send`` the request on it and
        read up to the answer's head. On any failure the connection is dropped (or, when none
        was made, its place in the pool freed) before the exception goes on."""
        conn = self._take(origin, timeouts.get("pool"))
        try:
            if conn is None:
                conn = self._connect(origin, timeouts.get("connect"))
            send(conn)
            reader = ResponseReader(self._parser)
            read_timeout = timeouts.get("read")
            while not reader.headers_done:
                _receive(conn, reader, read_timeout)
        except BaseException:
            if conn is None:
                with self._ready:
                    self._pool.forget()
                    self._ready.notify()
            else:
                self._give_back(origin, conn, False)
            raise
        return conn, reader

    def close(self) -> None:
        with self._ready:
            conns = self._pool.drain()
            self._ready.notify_all()
        for conn in conns:
            conn.close()
        if self._fallback is not None:
            self._fallback.close()

    # -- the pool ------------------------------------------------------------------------------

    def _take(self, origin: tuple[bytes, bytes, int], wait: float | None) -> _Conn | None:
        deadline = None if wait is None else self._clock() + wait
        with self._ready:
            while True:
                if self._pool.closed:
                    raise RuntimeError("the transport is closed")
                got, conn = self._pool.take(origin, _usable, _close)
                if got:
                    return conn  # type: ignore[no-any-return]
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    raise httpx.PoolTimeout("timed out waiting for a free connection")
                self._ready.wait(left)

    def _give_back(self, origin: tuple[bytes, bytes, int], conn: _Conn, reusable: bool) -> None:
        with self._ready:
            self._pool.put(origin, conn, reusable, _close)
            self._ready.notify()

    def _connect(self, origin: tuple[bytes, bytes, int], timeout: float | None) -> _Conn:
        scheme, host, port = origin
        name = host.decode("ascii")
        try:
            sock = socket.create_connection((name, port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == b"https":
                if self._ssl is None:
                    self._ssl = default_ssl_context()
                sock = self._ssl.wrap_socket(sock, server_hostname=name)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:  # ssl.SSLError included
            sock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        conn = _Conn(sock)
        conn.timeout = timeout
        return conn

    def _other(self) -> httpx.HTTPTransport:
        if self._fallback is None:
            self._fallback = httpx.HTTPTransport(
                limits=self._limits, verify=self._ssl or default_ssl_context()
            )
        return self._fallback


def _write(conn: _Conn, data: bytes, timeout: float | None) -> None:
    """Write ``data`` (a whole request) to ``conn``."""
    conn.settimeout(timeout)
    try:
        conn.sock.sendall(data)
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc


def _send(
    conn: _Conn, head: bytes, request: httpx.Request, chunked: bool, timeout: float | None
) -> None:
    """Write ``request`` (its ``head`` already built) to ``conn``."""
    conn.settimeout(timeout)
    try:
        stream = request.stream
        if isinstance(stream, httpx.ByteStream) and not chunked:
            conn.sock.sendall(head + request.content)  # the common case: one write
            return
        conn.sock.sendall(head)
        assert isinstance(stream, httpx.SyncByteStream)
        for part in stream:
            if part:
                conn.sock.sendall(chunk(part) if chunked else part)
        if chunked:
            conn.sock.sendall(chunk(b""))
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
