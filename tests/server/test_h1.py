"""Our own HTTP/1.1 protocol, ``serve --http aigw`` (aigw_lab.server.h1): the HTTP semantics
it must keep from uvicorn's protocols, on raw sockets against a real server in a thread, and
what it does differently (one write per answer, header sizes measured as parsed).

The gateway's own behaviour over this front was covered by the rest of tests/server while
it was the default front (the whole suite passed on it, 2026-12-07); the guards are run by
test_slow_clients.py on every front."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httptools")

from aigw_lab.server import BackgroundServer  # noqa: E402
from aigw_lab.server.h1 import h1_protocol  # noqa: E402
from aigw_lab.server_limits import ServerLimits  # noqa: E402

GUARD_S = 30.0  # a socket read that never ends fails here, not hangs the test


class EchoApp:
    """Answers every request with its method, path and body; ``/stream`` answers in
    ``chunks`` chunks without a content-length; ``/fail-before`` and ``/fail-after`` raise
    before and after the answer starts; ``/late-body`` sends its headers, then waits for
    ``release`` before the body; ``/bad-header`` sends a header value with a newline."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent_chunks = 0
        self.disconnects = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path == "/fail-before":
            raise RuntimeError("boom")
        if path == "/bad-header":
            headers = [(b"x-bad", b"a\r\nx-injected: 1")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            return
        if path == "/stream":
            await self._stream(receive, send, int(scope["query_string"] or b"3"))
            return
        answer = b"%s %s %s" % (scope["method"].encode(), path.encode(), body)
        headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if path == "/fail-after":
            raise RuntimeError("boom after the start")
        if path == "/late-body":
            await asyncio.to_thread(self.release.wait, GUARD_S)
        await send({"type": "http.response.body", "body": answer})

    async def _stream(self, receive: Any, send: Any, chunks: int) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 1_000_000
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.sent_chunks += 1
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def echo() -> Iterator[tuple[EchoApp, tuple[str, int]]]:
    app = EchoApp()
    limits = ServerLimits(max_header_bytes=4096, keepalive_timeout=5.0)
    with BackgroundServer(app, lifespan="off", limits=limits, http="aigw") as server:
        host, port = server.url.removeprefix("http://").split(":")
        yield app, (host, int(port))
    app.release.set()


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=GUARD_S)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def read_answer(sock: socket.socket, buffered: bytearray) -> tuple[bytes, bytes]:
    """One answer with a content-length (head, body), leaving the rest in ``buffered``."""
    while b"\r\n\r\n" not in buffered:
        buffered += sock.recv(65536)
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    buffered[:] = rest[length:]
    return head, rest[:length]


def post(path: str, body: bytes, *extra: bytes) -> bytes:
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"host: t",
             b"content-length: %d" % len(body), *extra]  # fmt: skip
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_pipelined_requests_are_answered_in_order(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(post("/a", b"1") + post("/b", b"22") + post("/c", b"333"))
        buffered = bytearray()
        bodies = [read_answer(sock, buffered)[1] for _ in range(3)]
    assert bodies == [b"POST /a 1", b"POST /b 22", b"POST /c 333"]


def test_keep_alive_serves_requests_one_after_another(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        buffered = bytearray()
        for index in range(5):
            sock.sendall(post(f"/n{index}", b"x"))
            head, body = read_answer(sock, buffered)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"connection: close" not in head
            assert body == b"POST /n%d x" % index


def test_a_chunked_request_body_is_decoded(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(
            b"POST /chunked HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        _, body = read_answer(sock, bytearray())
    assert body == b"POST /chunked hello world"


def test_expect_100_continue_is_answered_when_the_body_is_read(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        )
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"body")
        buffered = bytearray(first.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))
        _, body = read_answer(sock, buffered)
    assert body == b"POST /e body"


def test_http_1_0_closes_after_the_answer(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(b"POST /old HTTP/1.0\r\ncontent-length: 1\r\n\r\nz")
        answer = read_until_closed(sock)  # ends: the server closed the connection
    assert b"connection: close" in answer and answer.endswith(b"POST /old z")


def test_an_answer_without_length_is_chunked(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(b"GET /stream?2 HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        answer = read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body.startswith(b"f4240\r\n") and body.endswith(b"\r\n0\r\n\r\n")
    assert body.count(b"x") == 2_000_000


def test_a_client_that_does_not_read_holds_the_writer_back(echo) -> None:
    """Backpressure: the app's sends wait while the transport's buffer is full, so a client
    that reads nothing never makes the server buffer a whole 200 MB stream."""
    app, address = echo
    with connect(address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /stream?200 HTTP/1.1\r\nhost: t\r\n\r\n")
        threading.Event().wait(1.0)  # reading nothing; the app sends as fast as it may
        held_back = app.sent_chunks
        total = 0
        while total < 1_000_000 * 200:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if b"\r\n0\r\n\r\n" in chunk[-7:]:
                break
    assert held_back < 50, held_back  # kernel buffers hold a few MB, never the 200 MB
    assert app.sent_chunks == 200


def test_headers_are_written_with_the_body_in_one_write() -> None:
    """The status line and headers go out with the first body chunk sent in the same step:
    one write (one send system call) per answer, where uvicorn's protocols make two."""
    writes = _drive_once("/one")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"POST /one x")


def test_headers_sent_alone_are_flushed_before_a_late_body(echo) -> None:
    app, address = echo
    with connect(address) as sock:
        sock.sendall(post("/late-body", b"q"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)  # arrives while the app still holds its body back
        assert head.startswith(b"HTTP/1.1 200 OK")
        app.release.set()
        _, body = read_answer(sock, bytearray(head))
    assert body == b"POST /late-body q"


def test_complete_headers_over_the_cap_are_400_before_the_app_runs(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(post("/big", b"", b"x-big: " + b"a" * 8000))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"too large")


def test_a_failing_app_answers_500_before_its_start_and_closes_after(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(post("/fail-before", b""))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 500 ")
    with connect(address) as sock:
        sock.sendall(post("/fail-after", b""))
        answer = read_until_closed(sock)  # closed, with the headers sent and no body
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")


def test_an_app_header_value_with_a_newline_is_never_written(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(post("/bad-header", b""))
        answer = read_until_closed(sock)
    assert b"x-injected" not in answer


def test_a_malformed_request_is_400_and_closed(echo) -> None:
    _, address = echo
    with connect(address) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_a_client_hanging_up_mid_stream_is_a_disconnect_for_the_app() -> None:
    seen: list[str] = []
    started = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        started.set()
        seen.append((await receive())["type"])  # waits until the client leaves

    with BackgroundServer(app, lifespan="off", http="aigw") as server:
        host, port = server.url.removeprefix("http://").split(":")
        with connect((host, int(port))) as sock:
            sock.sendall(b"GET /s HTTP/1.1\r\nhost: t\r\n\r\n")
            assert started.wait(GUARD_S)
            sock.recv(65536)
        for _ in range(300):
            if seen:
                break
            threading.Event().wait(0.05)
    assert seen == ["http.disconnect"]


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


def _drive_once(path: str) -> list[bytes]:
    """The writes of one request through the protocol class over a recording transport."""
    import uvicorn

    from aigw_lab.server.runner import uvicorn_config

    app = EchoApp()
    config = uvicorn_config(app, ServerLimits(), log_level="warning", lifespan="off", http="aigw")
    config.load()
    assert config.http_protocol_class.__name__ == h1_protocol(ServerLimits(), app).__name__

    async def drive() -> list[bytes]:
        transport = _Transport()
        protocol = config.http_protocol_class(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}
        )
        protocol.connection_made(transport)
        protocol.data_received(post(path, b"x"))
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.writes

    return asyncio.run(drive())
