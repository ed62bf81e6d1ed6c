"""Running an ASGI app with uvicorn: in the foreground (`serve`, the CLI) or in a daemon
thread (`BackgroundServer`, tests and notebooks). Either binds its socket first, so
``port=0`` takes a free port and the URL is known before the first request.

Both apply the `ServerLimits` (the app's own ``limits`` unless given): uvicorn's keep-alive
timeout and header size limit, and the header timeout and connection cap of
`aigw_lab.server.limits.guarded_protocol`. Both run our own HTTP/1.1 protocol on
httptools' parser when httptools is installed (``http="auto"``, the default; httptools is
a core dependency; `aigw_lab.server.h1`), else uvicorn's h11 protocol."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.server.limits import guarded_protocol, resolve_http
from aigw_lab.server_limits import ServerLimits

__all__ = ["serve", "BackgroundServer", "bind_socket"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a `ConfigError` naming the fix if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off only on
    # connections whose socket says it is TCP; without that every answer written in two
    # parts (headers, body) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            hint="pick another port with --port, or stop the process using this one",
        ) from exc
    # Listening before the server runs: a client told the URL early waits in the backlog
    # instead of being refused.
    sock.listen(2048)
    return sock


def uvicorn_config(
    app: Any,
    limits: ServerLimits | None,
    *,
    log_level: str,
    lifespan: str,
    loop: str = "auto",
    http: str = "auto",
) -> Any:
    """The uvicorn config serving ``app`` within ``limits`` (default: ``app.limits`` if the
    app has them, else the `ServerLimits` defaults). ``loop`` is uvicorn's: "auto" takes
    uvloop when it is installed (the ``fast-serve`` extra), else asyncio's own. ``http``:
    the parser (`aigw_lab.server.limits.resolve_http`: "auto" takes our own protocol
    when httptools is installed, else h11), guarded either way."""
    # lazy: uvicorn loads only when a server starts (the CLI and library never need it)
    import uvicorn

    if limits is None:
        limits = getattr(app, "limits", None) or ServerLimits()
    busy = getattr(app, "busy", None) or _busy
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        # No "server: uvicorn" on every answer: one header less to validate and write per
        # response, and no software banner for a scanner.
        server_header=False,
        # uvicorn's default rewrites the client address from X-Forwarded-For for loopback
        # peers, an ASGI middleware hop per request; nothing here reads the address.
        proxy_headers=False,
        lifespan=lifespan,
        loop=loop,
        http=guarded_protocol(limits, busy, resolve_http(http)),
        timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]  # a float works
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """503 with Retry-After, for apps without a ``busy`` answer of their own."""
    headers = [(b"content-type", b"text/plain"), (b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": b"the server is busy"})


def root_url(host: str, port: int) -> str:
    """The URL clients use for a server listening on ``host:port`` (a wildcard address is
    reached through the loopback one)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    app: Any,
    host: str,
    port: int,
    *,
    on_listening: Callable[[str], object] | None = None,
    log_level: str = "warning",
    lifespan: str = "on",
    limits: ServerLimits | None = None,
    sock: socket.socket | None = None,
    loop: str = "auto",
    on_server: Callable[[Any], object] | None = None,
    http: str = "auto",
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then shut down gracefully (requests in flight
    finish, the app's lifespan shutdown runs) and return. ``on_listening`` gets the root URL
    once the port is bound; ``limits`` default to the app's (see `uvicorn_config`). ``sock``
    is a listening socket to serve instead of binding ``host:port`` (a ``--workers``
    worker's, inherited from its parent); ``on_server`` gets the uvicorn server before it
    runs (its ``handle_exit`` stops it). ``http``: the HTTP parser (see `uvicorn_config`)."""
    # lazy: uvicorn loads only when a server starts (the CLI and library never need it)
    import uvicorn

    if sock is None:
        sock = bind_socket(host, port)
    config = uvicorn_config(
        app, limits, log_level=log_level, lifespan=lifespan, loop=loop, http=http
    )
    server = uvicorn.Server(config)
    if on_server is not None:
        on_server(server)
    # uvicorn takes the signals only once it runs; one arriving earlier (right after the
    # URL is announced) must stop it too, not kill the process or vanish. Its handler also
    # absorbs the signal uvicorn raises again when it has stopped, so this returns normally.
    previous = _install_signal_handler(server.handle_exit)
    try:
        if on_listening is not None:
            on_listening(root_url(host, sock.getsockname()[1]))
        server.run(sockets=[sock])
    finally:
        _restore_signal_handlers(previous)
        sock.close()


def _install_signal_handler(handler: Any) -> dict[int, Any]:
    """Handle SIGINT and SIGTERM with ``handler``; returns the handlers it replaced (none
    outside the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class BackgroundServer:
    """An ASGI app served by uvicorn in a daemon thread; ``port=0`` takes a free port.
    Use as a context manager, or call `start` and `stop`. ``lifespan`` is uvicorn's
    setting ("on" for apps with startup/shutdown hooks, "off" for those without);
    ``limits`` default to the app's own and ``http`` picks the parser (see
    `uvicorn_config`)."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: str = "on",
        limits: ServerLimits | None = None,
        http: str = "auto",
    ) -> None:
        self.app = app
        self.http = http
        self.limits = limits
        self.host = host
        self._port = port
        self._lifespan = lifespan
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:54321``."""
        return root_url(self.host, self._port)

    def start(self, timeout_s: float = 120.0) -> BackgroundServer:
        """Start serving; returns once the server accepts connections, which is after the
        app's lifespan startup (a `GatewayApp` loads its learned policies' embedding models
        there, which can take tens of seconds on a busy CPU: hence the long timeout)."""
        # lazy: uvicorn loads only when a server starts (the CLI and library never need it)
        import uvicorn

        sock = bind_socket(self.host, self._port)
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn_config(
            self.app, self.limits, log_level="warning", lifespan=self._lifespan, http=self.http
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run,
            args=(self._server, sock),
            name=f"aigw-server:{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the server on {self.url} did not start")
            time.sleep(0.005)
        return self

    @staticmethod
    def _run(server: Any, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit:
            pass  # uvicorn exits when the app's startup fails; `start` reports it

    def stop(self) -> None:
        """Shut down gracefully and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
