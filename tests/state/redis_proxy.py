"""A loopback TCP proxy in front of a real ``redis-server`` for tests: it counts the client's
round trips (each chunk a client sends after its previous reply is one) and can hold replies
back (``delay`` seconds each, or until `release` after `hold`: a slow Redis), without
changing a byte."""

from __future__ import annotations

import socket
import threading
import time


class RedisProxy:
    """Listens on 127.0.0.1:``port`` and forwards to 127.0.0.1:``target_port``.

    ``sends``: chunks the clients sent (a pipelined batch or a script call is one, a plain
    command one); ``delay``: seconds each reply waits before it is forwarded."""

    def __init__(self, target_port: int, *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.sends = 0
        self.held = 0  # replies waiting for `release` right now
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counts: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if counts:
                    with self._lock:
                        self.sends += 1
                else:
                    if self.delay:
                        time.sleep(self.delay)
                    if not self._open.is_set():
                        with self._lock:
                            self.held += 1
                        self._open.wait()
                        with self._lock:
                            self.held -= 1
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def hold(self) -> None:
        """Hold every reply from now on until `release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def reset(self) -> None:
        with self._lock:
            self.sends = 0

    def close(self) -> None:
        self._closed = True
        self._open.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass
