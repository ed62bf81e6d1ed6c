"""The simulated fleet as a real HTTP server: a plain ASGI app run by uvicorn.

Point any client at it, the official ``openai`` and ``anthropic`` SDKs included::

    openai.OpenAI(base_url="http://127.0.0.1:8787/v1", api_key="unused")
    anthropic.Anthropic(base_url="http://127.0.0.1:8787", api_key="unused")

It serves the paths listed in `aigw_lab.sim.wire` with the same bytes as the
in-process transport, paced in real time (times ``time_scale``). A timeout fault keeps the
connection silent until the client gives up (or ``fleet.hang_s`` passes). Every answer is
simulated and marked so (``x-aigw-simulated: true``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aigw_lab.server import runner
from aigw_lab.server.runner import root_url
from aigw_lab.sim.fleet import SimulatedFleet
from aigw_lab.sim.wire import SIMULATED_HEADER, WireReply, base_urls, respond

__all__ = ["SimulatorApp", "BackgroundServer", "serve", "DEFAULT_PORT", "base_urls", "root_url"]

#: Port of ``aigw-lab simulate`` unless told otherwise.
DEFAULT_PORT = 8787

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


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


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    fleet: SimulatedFleet | None = None,
    *,
    log_level: str = "warning",
    on_listening: Callable[[str], object] | None = None,
) -> None:
    """Run the simulator server in the foreground until interrupted (Ctrl-C, SIGTERM).

    ``on_listening`` is called with the server's root URL once its port is bound (``port=0``
    takes a free one), before it starts answering.
    """
    app = SimulatorApp(fleet if fleet is not None else SimulatedFleet())
    runner.serve(app, host, port, on_listening=on_listening, log_level=log_level, lifespan="off")


class BackgroundServer(runner.BackgroundServer):
    """The simulator server in a daemon thread, for tests and notebooks.

    ``port=0`` takes a free port; `url` tells which. Use as a context manager, or call
    `start` and `stop`.
    """

    def __init__(
        self, fleet: SimulatedFleet | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.fleet = fleet if fleet is not None else SimulatedFleet()
        super().__init__(SimulatorApp(self.fleet), host=host, port=port, lifespan="off")
