"""The parts of the lean upstream transport (`aigw_lab.providers.lean`) that do not wait: an
HTTP/1.1 request written as bytes, an answer parsed by httptools, and the pool's bookkeeping
of idle connections. The sync and async transports differ only in how they wait for a
socket, so each waits its own way and both share these.

Every failure is raised as the httpx exception httpcore's pool would have raised for it
(`httpx.RemoteProtocolError`, `httpx.LocalProtocolError`, `httpx.PoolTimeout`, ...), so
`HttpProvider._transport_error`, the one place that maps httpx errors, reads them
unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["ResponseReader", "request_head", "origin_of", "IdleConnections", "INSTALL_HINT"]

#: What the lean transport needs beyond the core install (httptools parses the answers).
INSTALL_HINT = 'pip install "aigw-lab[fast-serve]"'

# RFC 9110 token characters for a header name; a value may hold anything but CR, LF, NUL.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_BAD_TARGET = re.compile(rb"[\s\x00]")
_CHUNKED = b"chunked"


def origin_of(url: httpx.URL) -> tuple[bytes, bytes, int]:
    """The connection key of ``url``: scheme, host and port (the scheme's default if none)."""
    scheme = url.raw_scheme
    port = url.port or (443 if scheme == b"https" else 80)
    return scheme, url.raw_host, port


def request_head(request: httpx.Request) -> tuple[bytes, bool]:
    """The request line and headers of ``request`` as bytes, and whether its body goes
    chunked (no Content-Length, ``Transfer-Encoding: chunked``). Header names and values,
    the method and the target are checked as h11 checks them: a CR, LF or NUL in any of
    them is `httpx.LocalProtocolError`, so no caller-supplied text can split the request."""
    method = request.method.encode("ascii")
    target = request.url.raw_path
    if _TOKEN.match(method) is None or _BAD_TARGET.search(target) is not None:
        raise httpx.LocalProtocolError(f"illegal request line: {method!r} {target!r}")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in request.headers.raw:
        if _TOKEN.match(name) is None:
            raise httpx.LocalProtocolError(f"illegal header name {name!r}")
        if _BAD_VALUE.search(value) is not None:
            raise httpx.LocalProtocolError(f"illegal header value for {name!r}")
        if name.lower() == b"transfer-encoding" and value.lower() == _CHUNKED:
            chunked = True
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked


def chunk(data: bytes) -> bytes:
    """``data`` framed as one chunk of a chunked body (empty data: the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n"


class ResponseReader:
    """One answer read off a connection: httptools calls these methods while parsing.

    ``complete`` turns true at the end of the message; ``reusable`` says whether the
    connection may carry another request afterwards (keep-alive, and no bytes after the
    message). An answer delimited by the connection closing (no Content-Length, not
    chunked) completes at `eof`."""

    __slots__ = (
        "parser",
        "status",
        "reason",
        "headers",
        "chunks",
        "headers_done",
        "complete",
        "extra",
        "keep_alive",
        "encoded",
        "names",
        "_delimited",
    )

    def __init__(self, parser_type: Callable[[Any], Any]) -> None:
        self.parser = parser_type(self)
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.extra = False
        self.keep_alive = False
        self.encoded = False
        self.names: frozenset[bytes] = frozenset()
        self._delimited = False

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True  # a second message on a connection that sent one: not ours

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status >= 200 or self.status == 101:
            self.headers_done = True
            lowered = self.names = frozenset(name.lower() for name, _ in self.headers)
            self._delimited = b"content-length" in lowered or b"transfer-encoding" in lowered
            self.encoded = b"content-encoding" in lowered

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:
            # An interim (1xx) answer: the real one follows on the same connection.
            self.headers, self.reason = [], b""
            return
        self.complete = True
        # Asked now: httptools forgets it once the message is over.
        self.keep_alive = bool(self.parser.should_keep_alive())

    # -- driven by the transports --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse ``data``; malformed bytes are `httpx.RemoteProtocolError`."""
        if self.complete:
            self.extra = True
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools' HttpParserError and its subclasses
            raise httpx.RemoteProtocolError(f"malformed answer: {exc}") from exc

    def eof(self) -> None:
        """The server closed the connection: the end of a close-delimited body, or else
        `httpx.RemoteProtocolError` as httpcore raises it."""
        if self.complete:
            return
        if not self.headers_done:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if self._delimited:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )
        self.complete = True
        self.extra = True  # the connection is gone: never reuse it

    def take(self) -> list[bytes]:
        """The body chunks parsed so far, handed over once."""
        chunks, self.chunks = self.chunks, []
        return chunks

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.extra

    def response(self, stream: Any) -> httpx.Response:
        """The httpx response for the head read so far, its body read from ``stream``."""
        return httpx.Response(
            self.status,
            headers=self.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason},
        )


class IdleConnections:
    """The pool's count of open connections and its idle ones, in a LIFO stack per origin:
    taking one looks at the most recently used connection of the origin only, never at
    every connection (httpcore's pool scans them all on every request). A connection
    that has idled past ``keepalive_expiry`` or that ``usable`` refuses is closed when it
    comes up. The transports add the locking or the waiting."""

    def __init__(self, limits: httpx.Limits, clock: Callable[[], float]) -> None:
        self.max_connections = limits.max_connections or 2**31
        keep = limits.max_keepalive_connections
        self.max_idle = self.max_connections if keep is None else keep
        self.expiry = limits.keepalive_expiry
        self.clock = clock
        self.total = 0
        self.idle = 0
        self.closed = False
        self._stacks: dict[tuple[bytes, bytes, int], list[tuple[float, Any]]] = {}

    def take(
        self, origin: tuple[bytes, bytes, int], usable: Callable[[Any], bool], close: Any
    ) -> tuple[bool, Any]:
        """(True, connection) for an idle one, (True, None) when a new one may be opened
        (its place is counted already), (False, None) when the caller must wait."""
        stack = self._stacks.get(origin)
        if stack:
            now = self.clock()
            while stack:
                since, conn = stack.pop()
                self.idle -= 1
                if (self.expiry is None or now - since < self.expiry) and usable(conn):
                    return True, conn
                self.total -= 1
                close(conn)
        if self.total < self.max_connections:
            self.total += 1
            return True, None
        if self.idle:
            # Full, but some other origin's connection idles: close it to make room.
            for other in self._stacks.values():
                if other:
                    _, conn = other.pop(0)
                    self.idle -= 1
                    close(conn)
                    return True, None
        return False, None

    def put(self, origin: tuple[bytes, bytes, int], conn: Any, reusable: bool, close: Any) -> None:
        """Give ``conn`` back: kept idle when ``reusable`` and there is room, else closed."""
        if reusable and not self.closed and self.idle < self.max_idle:
            self._stacks.setdefault(origin, []).append((self.clock(), conn))
            self.idle += 1
            return
        self.total -= 1
        close(conn)

    def forget(self) -> None:
        """A place taken for a connection that never opened."""
        self.total -= 1

    def drain(self) -> list[Any]:
        """Every idle connection, removed (for closing); the pool refuses to keep more."""
        self.closed = True
        conns = [conn for stack in self._stacks.values() for _, conn in stack]
        self._stacks.clear()
        self.total -= len(conns)
        self.idle = 0
        return conns
