"""A loopback HTTP/1.1 server that answers with scripted raw bytes, for the lean transport's
pool tests: it counts the connections it accepts, can hold an answer until released,
close a connection after an answer (with or without saying so), or never read a body."""

from __future__ import annotations

import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Answer:
    """One scripted answer: ``raw`` bytes sent as they are, then the connection closed
    when ``close``; ``hold`` (an event) delays the answer until it is set."""

    raw: bytes
    close: bool = False
    hold: threading.Event | None = None


def ok(body: bytes = b'{"ok":1}', *, headers: str = "") -> bytes:
    """A 200 answer with a Content-Length body (``headers``: extra header lines)."""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + headers.encode()
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def chunked(*parts: bytes) -> bytes:
    """A 200 answer with a chunked body of ``parts``."""
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


@dataclass
class RawUpstream:
    """The server; ``answers`` are used in order, across connections."""

    tls: ssl.SSLContext | None = None
    read_bodies: bool = True
    answers: deque[Answer] = field(default_factory=deque)
    accepted: int = 0
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # chunked request bodies, framed

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def add(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> RawUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                index = self.accepted
                self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buffer = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if name.strip().lower() == b"transfer-encoding":
                        # A chunked body, kept framed as it came (up to its last chunk).
                        while b"0\r\n\r\n" not in buffer:
                            data = conn.recv(65536)
                            if not data:
                                return
                            buffer += data
                        length = buffer.index(b"0\r\n\r\n") + 5
                        self.bodies.append(buffer[:length])
                if not self.read_bodies:
                    self._stop.wait(30)
                    return
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
                with self._lock:
                    self.requests.append((index, head))
                    answer = self.answers.popleft() if self.answers else Answer(ok(b"{}"))
                if answer.hold is not None:
                    answer.hold.wait(30)
                conn.sendall(answer.raw)
                if answer.close:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            return
        finally:
            conn.close()
