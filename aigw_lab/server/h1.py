"""``serve --http aigw``: our own HTTP/1.1 server protocol on httptools' parser, run by
uvicorn's server (its sockets, lifespan, signals and graceful shutdown), serving any ASGI
application: `h1_protocol`.

Why not uvicorn's httptools protocol: per request it builds an `asyncio.Event`, checks every
response header with two regular expressions, consults its loggers, and writes the status
line and headers in one ``write`` and the body in another (two ``send`` system calls, and
often two reads for the client). Here the head is held and written with the first body
chunk when the app sends it in the same step (it is flushed on its own otherwise, so an app
that sends headers and then waits still shows them), the body waiter is a future made only
when the app must wait, and header names are checked once per distinct name.

Kept, with the semantics of uvicorn's protocol and of `aigw_lab.server.limits`:

- the guards: a **header timeout** from a connection's opening (or the first byte after a
  completed answer) until the request's headers are complete (408 if bytes had come, then
  closed; if it passes while an earlier answer is still being written, reading stops and
  the connection closes as that answer ends, or at once if the client stops reading it);
  a **connection cap** (a connection over ``max_connections`` has its request answered by
  ``busy_app``, which closes it); a **header size cap** (400 past ``max_header_bytes``
  before the headers are complete); the **keep-alive idle timeout** (uvicorn's
  ``timeout_keep_alive``); the body timeout, body size, JSON limits and the cap on requests
  in flight stay in the app (`GatewayApp`);
- keep-alive (HTTP/1.0 closes unless told otherwise by the parser), pipelining (a request
  parsed while another is answered waits, reading paused, and starts when the answer ends),
  chunked request bodies (decoded by httptools), ``Expect: 100-continue`` (answered when the
  app first reads the body), reading paused past 64 KiB of unread body;
- answers (`aigw_lab.server.h1_exchange`): Content-Length or chunked transfer encoding
  when the app gives none (SSE), ``connection: close`` when the connection will close, HEAD
  without a body, an app's header names and values refused when HTTP cannot carry them (as
  uvicorn does), 500 if the app fails before answering, the connection closed if it fails
  after;
- writing waits while the transport's buffer is over its high-water mark (backpressure for
  streams), and a client that goes away makes ``receive`` return ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aigw_lab.server.h1_exchange import Exchange
from aigw_lab.server_limits import ServerLimits

__all__ = ["h1_protocol"]

# Unread request body past which the connection stops reading (uvicorn's value).
_HIGH_WATER = 65536
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nthe request headers came too late"
)


def h1_protocol(limits: ServerLimits, busy_app: Any) -> type:
    """The protocol class (for uvicorn's ``Config(http=...)``) applying ``limits``' header
    timeout, connection cap and header size cap; ``busy_app`` (an ASGI app) answers the
    request of a connection over the cap. httptools must be installed (``fast-serve``)."""
    # lazy: httptools is optional (the fast-serve extra); loaded only when a server starts
    import httptools

    attributes = {
        "__doc__": "aigw's HTTP/1.1 protocol on httptools (see aigw_lab.server.h1).",
        "header_timeout": limits.header_timeout,
        "max_connections": limits.max_connections,
        "max_header_bytes": limits.max_header_bytes,
        "busy_app": staticmethod(busy_app),  # a plain function must not bind to self
        "parser_class": httptools.HttpRequestParser,
        "parse_url": staticmethod(httptools.parse_url),
        "parser_error": httptools.HttpParserError,
        "upgrade_error": httptools.HttpParserUpgrade,
        "status_lines": _StatusLines(),
        "known_names": set(),
    }
    return type("AigwH1Protocol", (_H1Protocol,), attributes)


class _StatusLines(dict):  # type: ignore[type-arg]
    """``HTTP/1.1 <code> <phrase>\\r\\n`` by status code, made on first use of a code."""

    def __missing__(self, status: int) -> bytes:
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status < 600:
            raise RuntimeError(f"invalid HTTP status {status!r} from the application")
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        self[status] = line
        return line


class _H1Protocol(asyncio.Protocol):
    """One client connection (see the module). Class attributes come from `h1_protocol`."""

    header_timeout: float
    max_connections: int
    max_header_bytes: int
    busy_app: Any
    parser_class: Any
    parse_url: Any
    parser_error: type[Exception]
    upgrade_error: type[Exception]
    status_lines: _StatusLines
    known_names: set[bytes]

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.keepalive_timeout = config.timeout_keep_alive
        self.root_path: str = config.root_path
        self.asgi = {"version": config.asgi_version, "spec_version": "2.3"}
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.app_state = app_state
        self.parser = self.parser_class(self)
        try:  # answer the first of pipelined requests even if the client closes its side
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # httptools < 0.6.3
            pass
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: Any = None
        self.client: Any = None
        self.scheme = "http"
        self.exchange: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request whose body is being read
        self.pending: deque[tuple[Exchange, Any]] = deque()  # pipelined, waiting
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.read_paused = False
        self.write_paused = False
        self.drains: list[asyncio.Future[None]] = []
        self.awaiting = True  # no request's headers in progress past their completion
        self.started = False  # bytes of the awaited request have arrived
        self.header_bytes = 0  # bytes received while awaiting this request's headers
        self.head_size = 0  # this request's target and headers, as parsed
        self.refused = False  # its headers were over max_header_bytes
        self.late = False  # its header timeout passed while an earlier answer was written
        self.header_timer: asyncio.TimerHandle | None = None
        self.idle_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"
        if len(self.connections) > self.max_connections:
            self.app = self.busy_app  # it answers 503 and closes the connection
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._cancel_timers()
        for exchange in (self.exchange, self.parsing):
            if exchange is not None and not exchange.complete:
                exchange.disconnected = True
                exchange.wake()
        self._wake_drains()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass  # half-closed: answer what was asked, then close (the transport does)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.late:  # a late client that also stops reading its answer: close now
            self.transport.close()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drains()

    def data_received(self, data: bytes) -> None:
        if self.late:
            return  # its time is up: nothing more it sends is read
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        awaiting = self.awaiting
        if awaiting:
            if self.header_timer is None:
                self._arm_header_timer()  # the first byte of the next request
            self.started = True
            self.header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except self.upgrade_error:
            pass  # no protocol to upgrade to: the request is answered as plain HTTP
        except self.parser_error:
            self._send_400("Invalid HTTP request received.")
            return
        # Complete headers are measured as parsed (refused), unfinished ones by the bytes
        # that came while they were awaited.
        unfinished_over = awaiting and self.awaiting and self.header_bytes > self.max_header_bytes
        if self.refused or unfinished_over:
            if not self.transport.is_closing():
                self._send_400("the request headers are too large")

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False
        self.head_size = 0
        self.started = True
        if self.header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        name = name.lower()
        # llhttp keeps trailing whitespace, which RFC 9110 (5.5) excludes from the value
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.awaiting = False
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if self.head_size > self.max_header_bytes:
            self.refused = True  # answered 400 once the parser returns
            return
        parser = self.parser
        version = parser.get_http_version()
        parsed = self.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")  # a non-ASCII target fails the parse: 400
        if "%" in path:
            path = unquote(path)
        method = parser.get_method().decode("ascii")
        scope = {
            "type": "http",
            "asgi": self.asgi,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": self.root_path,
            "path": self.root_path + path if self.root_path else path,
            "raw_path": self.root_path.encode("ascii") + raw_path if self.root_path else raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = Exchange(self, scope, keep_alive, self.expect_continue, method == "HEAD")
        self.parsing = exchange
        if self.exchange is None:
            self.exchange = exchange
            self._start(exchange, self.app)
        else:  # pipelined: answered after the one in progress
            self._pause_reading()
            self.pending.append((exchange, self.app))

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None or exchange.complete:
            return
        exchange.body += body
        if len(exchange.body) > _HIGH_WATER:
            self._pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        self.awaiting = True
        self.started = False
        self.header_bytes = 0
        exchange = self.parsing
        if exchange is None or exchange.complete:
            return
        exchange.more_body = False
        exchange.wake()

    # --- the server's calls ---------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now if idle, else after the answer."""
        if self.exchange is None or self.exchange.complete:
            self.transport.close()
        else:
            self.exchange.keep_alive = False

    # --- internals ------------------------------------------------------------------------

    def _start(self, exchange: Exchange, app: Any) -> None:
        task = self.loop.create_task(exchange.run(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def answered(self, exchange: Exchange) -> None:
        """An answer is complete: start the next pipelined request, or wait idle."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.late:
            # The next request's headers were due during this answer. A 408 only when no
            # pipelined request waits (an answer would otherwise be taken as that one's).
            if not self.pending:
                self.transport.write(_TIMEOUT_408)
            self.transport.close()
            return
        self._resume_reading()
        if self.pending:
            exchange, app = self.pending.popleft()
            self.exchange = exchange
            self._start(exchange, app)
            return
        self.exchange = None
        if self.parsing is exchange:
            self.parsing = None
        if not (self.awaiting and self.started):  # no next request under way
            self.idle_timer = self.loop.call_later(self.keepalive_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self.idle_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._on_header_timeout)

    def _on_header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or not self.awaiting:
            return
        if self.exchange is not None:
            # An earlier answer is still being written: the late request is cut off when
            # that answer ends (no second header_timeout), and at once if the client is not
            # reading it either; nothing more it sends is read meanwhile.
            self.late = True
            self._pause_reading()
            if self.write_paused:
                self.transport.close()
            return
        if self.started:
            self.transport.write(_TIMEOUT_408)
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self.header_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.idle_timer = None

    def _send_400(self, message: str) -> None:
        content = [self.status_lines[400]]
        for name, value in self.server_state.default_headers:
            content.extend((name, b": ", value, b"\r\n"))
        body = message.encode("ascii")
        content.append(
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        """Wait until the transport takes writes again (or the connection is gone)."""
        waiter = self.loop.create_future()
        self.drains.append(waiter)
        await waiter

    def _wake_drains(self) -> None:
        drains, self.drains = self.drains, []
        for waiter in drains:
            if not waiter.done():
                waiter.set_result(None)


def _address(value: Any) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address as ASGI wants it (None for a Unix socket)."""
    if isinstance(value, (list, tuple)) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
