"""The simulated fleet as a real HTTP server: a plain ASGI app run by uvicorn.

Point any client at it, the official ``openai`` and ``anthropic`` SDKs included::

    openai.OpenAI(base_url="http://127.0.0.1:8787/v1", api_key="unused")
    anthropic.Anthropic(base_url="http://127.0.0.1:8787", api_key="unused")

It serves the paths listed in `aigw_lab.providers.sim_wire` with the same bytes as the
in-process transport, paced in real time (times ``time_scale``). A timeout fault keeps the
connection silent until the client gives up (or ``fleet.hang_s`` passes). Every answer is
simulated and marked so (``x-aigw-simulated: true``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.providers.sim_wire import SIMULATED_HEADER, WireReply, respond
from aigw_lab.providers.simulated import SimulatedFleet

__all__ = ["SimulatorApp", "BackgroundServer", "serve", "DEFAULT_PORT", "base_urls", "root_url"]

#: Port of ``aigw-lab simulate`` unless told otherwise.
DEFAULT_PORT = 8787

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def base_urls(root: str) -> dict[str, str]:
    """The base URL to give each kind of client, for a server at ``root``."""
    root = root.rstrip("/")
    workers = f"{root}/client/v4/accounts/simulated/ai"
    return {
        "openai": f"{root}/v1",
        "anthropic": root,
        "workers-ai": f"{workers}/run/{{model}}",
        "workers-ai-openai": f"{workers}/v1",
    }


class SimulatorApp:
    """ASGI application serving a `SimulatedFleet` over HTTP."""

    def __init__(self, fleet: SimulatedFleet) -> None:
        self.fleet = fleet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        reply = respond(self.fleet, scope["method"], scope["path"], bytes(body))
        hung_up = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, hung_up))
        try:
            await self._play(reply, send, hung_up)
        finally:
            watcher.cancel()

    async def _play(self, reply: WireReply, send: Send, hung_up: asyncio.Event) -> None:
        fleet = self.fleet
        if reply.hang:
            # Stay silent until the client gives up (it timed out), or hang_s passes.
            try:
                await asyncio.wait_for(hung_up.wait(), timeout=fleet.hang_s)
            except TimeoutError:
                await _send_plain(send, 504, b"simulated timeout: the fleet did not answer")
            return
        await _pause(fleet, reply.delay_s)
        headers = [(k.encode(), v.encode()) for k, v in reply.headers]
        if reply.events is None:
            headers.append((b"content-length", str(len(reply.body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        for delay, chunk in reply.events:
            await _pause(fleet, delay)
            if hung_up.is_set():  # nobody is listening: stop generating
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _pause(fleet: SimulatedFleet, seconds: float) -> None:
    scaled = fleet.scaled(seconds)
    if scaled > 0:
        await fleet.async_sleep(scaled)


async def _watch_disconnect(receive: Receive, hung_up: asyncio.Event) -> None:
    """Set ``hung_up`` when the client closes the connection."""
    while (await receive())["type"] != "http.disconnect":
        pass
    hung_up.set()


async def _send_plain(send: Send, status: int, text: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(text)).encode()),
        tuple(part.encode() for part in SIMULATED_HEADER),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def root_url(host: str, port: int) -> str:
    """The URL clients use for a server listening on ``host:port`` (a wildcard address is
    reached through the loopback one)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    fleet: SimulatedFleet | None = None,
    *,
    log_level: str = "warning",
    on_listening: Callable[[str], object] | None = None,
) -> None:
    """Run the simulator server in the foreground until interrupted (Ctrl-C).

    ``on_listening`` is called with the server's root URL once its port is bound (``port=0``
    takes a free one), before it starts answering.
    """
    import uvicorn

    app = SimulatorApp(fleet if fleet is not None else SimulatedFleet())
    sock = _bind(host, port)
    try:
        if on_listening is not None:
            on_listening(root_url(host, sock.getsockname()[1]))
        config = uvicorn.Config(app, log_level=log_level, access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (TCP_NODELAY-ready); a clear error if taken."""
    from aigw_lab.server.runner import bind_socket

    return bind_socket(host, port)


class BackgroundServer:
    """The simulator server in a daemon thread, for tests and notebooks.

    ``port=0`` takes a free port; `url` tells which. Use as a context manager, or call
    `start` and `stop`.
    """

    def __init__(
        self, fleet: SimulatedFleet | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.fleet = fleet if fleet is not None else SimulatedFleet()
        self.host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:54321``."""
        return root_url(self.host, self._port)

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        """Start serving; returns once the server accepts connections."""
        import uvicorn

        sock = _bind(self.host, self._port)
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            SimulatorApp(self.fleet), log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"aigw-sim-server:{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"the simulator server on {self.url} did not start",
                    hint="check that the host address is local and the port is free",
                )
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
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
