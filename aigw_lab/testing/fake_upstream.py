"""`FakeUpstream`: a real HTTP server on 127.0.0.1 that plays a provider API from a script.

Tests enqueue replies, point a provider's base URL at ``fake.url``, make calls, then assert
on what the fake received. Because it is a real server on a real socket, everything between
the codec and the wire is exercised: connection pooling, chunked streaming, timeouts,
connections that drop::

    with FakeUpstream() as fake:
        fake.reply_json({"choices": [...]}, headers={"x-request-id": "abc"})
        fake.reply_sse(SSE_TEXT, chunk_size=3, chunk_delay=0.001)  # split at odd bytes
        fake.reply_sse(SSE_TEXT[:200], abort=True)                  # connection cut mid-body
        fake.reply_json({}, delay=1.0)                               # slower than a timeout
        fake.reply_json({}, delay=5.0, release=done)   # held until done.set(), 5 s at most
        fake.reply_drop()                                            # no response at all
        ...
        assert fake.requests[0].json["model"] == "gpt-4o-mini"

A request that arrives with no reply enqueued gets a 599 answer, so a test that makes more
calls than it scripted fails loudly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any

__all__ = ["FakeUpstream", "Reply", "RecordedRequest", "split_every", "split_at"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_UNSCRIPTED_STATUS = 599


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the fake received. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer.

    ``chunks`` are written one by one (with ``chunk_delay`` seconds between them) using
    chunked transfer encoding when ``chunked``, else as one body with a Content-Length.
    ``delay`` waits before the status line (to trigger read timeouts); with ``release``
    the wait also ends when that event is set, so a test that holds a connection "for up to
    ``delay``" goes on as soon as it has seen what it waited for. ``abort`` closes the
    connection after the chunks without ending the body; ``drop`` closes it without any
    answer.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    chunks: tuple[bytes, ...] = ()
    chunked: bool = False
    delay: float = 0.0
    chunk_delay: float = 0.0
    abort: bool = False
    drop: bool = False
    release: threading.Event | None = None


def split_every(data: bytes, size: int) -> tuple[bytes, ...]:
    """``data`` cut into pieces of ``size`` bytes (the last may be shorter)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return tuple(data[i : i + size] for i in range(0, len(data), size)) or (b"",)


def split_at(data: bytes, offsets: Iterable[int]) -> tuple[bytes, ...]:
    """``data`` cut at the given byte offsets (out-of-range and repeated ones are ignored)."""
    cuts = sorted({o for o in offsets if 0 < o < len(data)})
    bounds = [0, *cuts, len(data)]
    return tuple(data[a:b] for a, b in zip(bounds, bounds[1:], strict=False))


class FakeUpstream:
    """A scripted HTTP server on 127.0.0.1 (a free port), started on construction.

    Use it as a context manager, or call `close`. Replies are served in the order they were
    enqueued, whatever the path; `requests` lists what arrived, in order.
    """

    def __init__(self) -> None:
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.requests: list[RecordedRequest] = []
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.005},  # how long `close` may wait
            name="FakeUpstream",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("FakeUpstream received no request")
        return self.requests[-1]

    # -- scripting ---------------------------------------------------------------------------

    def add(self, reply: Reply) -> None:
        """Enqueue a reply."""
        with self._lock:
            self._replies.append(reply)

    def reply_json(
        self,
        body: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        release: threading.Event | None = None,
    ) -> None:
        """Answer with ``body`` serialised as JSON (after ``delay``, or once ``release`` is
        set, whichever comes first)."""
        data = json.dumps(body).encode()
        self.reply_raw(data, status=status, headers=headers, delay=delay, release=release,
                       content_type="application/json")  # fmt: skip

    def reply_raw(
        self,
        body: bytes | str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        delay: float = 0.0,
        release: threading.Event | None = None,
    ) -> None:
        """Answer with ``body`` as is (for bodies that are not valid JSON, HTML error pages)."""
        data = body.encode() if isinstance(body, str) else body
        self.add(
            Reply(
                status=status,
                headers={"content-type": content_type, **(headers or {})},
                chunks=(data,),
                delay=delay,
                release=release,
            )
        )

    def reply_sse(
        self,
        body: bytes | str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
        split_at_bytes: Iterable[int] | None = None,
        chunk_delay: float = 0.0,
        delay: float = 0.0,
        abort: bool = False,
    ) -> None:
        """Stream ``body`` (SSE wire text) in chunks: every ``chunk_size`` bytes, or cut at
        ``split_at_bytes`` offsets, or whole. ``abort`` cuts the connection after the last
        chunk instead of ending the response."""
        data = body.encode() if isinstance(body, str) else body
        if chunk_size is not None:
            chunks = split_every(data, chunk_size)
        elif split_at_bytes is not None:
            chunks = split_at(data, split_at_bytes)
        else:
            chunks = (data,)
        self.add(
            Reply(
                status=status,
                headers={"content-type": "text/event-stream", **(headers or {})},
                chunks=chunks,
                chunked=True,
                delay=delay,
                chunk_delay=chunk_delay,
                abort=abort,
            )
        )

    def reply_drop(self, *, delay: float = 0.0) -> None:
        """Read the request, then close the connection without answering."""
        self.add(Reply(drop=True, delay=delay))

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving, cut open connections and release delayed replies."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _shutdown(conn)
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- used by the handler -----------------------------------------------------------------

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def _wait(self, seconds: float, release: threading.Event | None = None) -> None:
        if seconds <= 0:
            return
        if release is None:
            self._stopping.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        # Two events to wait for: poll the release, and see a close within a tick.
        while not (release.is_set() or self._stopping.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            release.wait(min(remaining, 0.02))


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close joins the handler threads

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, aborted streams) are part of the script.
        pass


def _make_handler(fake: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies

        def setup(self) -> None:
            super().setup()
            # Small scripted chunks must leave at once, not wait on Nagle + delayed ACKs.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def do_POST(self) -> None:
            self._serve()

        do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with fake._lock:
                fake.requests.append(RecordedRequest(self.command, self.path, headers, body))
            reply = fake._next_reply()
            if reply is None:
                message = f"FakeUpstream: no reply enqueued for {self.command} {self.path}"
                reply = Reply(
                    status=_UNSCRIPTED_STATUS,
                    headers={"content-type": "application/json"},
                    chunks=(json.dumps({"error": {"message": message}}).encode(),),
                )
            fake._wait(reply.delay, reply.release)
            try:
                self._write(reply)
            except OSError:
                self.close_connection = True  # the client went away: that is allowed

        def _write(self, reply: Reply) -> None:
            if reply.drop or fake._stopping.is_set():
                self.close_connection = True
                _shutdown(self.connection)
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("content-length", str(sum(len(c) for c in reply.chunks)))
            self.end_headers()
            self.wfile.flush()
            for index, chunk in enumerate(reply.chunks):
                if index and reply.chunk_delay:
                    fake._wait(reply.chunk_delay)
                if reply.chunked:
                    if chunk:  # an empty chunk would end the body
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
                self.wfile.flush()
            if reply.abort:
                self.close_connection = True
                _shutdown(self.connection)
            elif reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

    return Handler


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
