"""The simulated fleet in-process: an httpx transport answering every request from a
`SimulatedFleet`, playing out the `WireReply` that `aigw_lab.sim.wire.respond` builds.

The parts that wait (the time to the first byte, a hang, the pauses between stream events)
are written once for asyncio in `aigw_lab.sim._async.transport`, the blocking ones generated
from it; the classes here take them as methods, so one transport object serves an
``httpx.Client`` and an ``httpx.AsyncClient``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from aigw_lab.sim._async import transport as _async_transport
from aigw_lab.sim._sync import transport as _sync_transport
from aigw_lab.sim.batches import FleetBatches
from aigw_lab.sim.wire import WireReply, respond

if TYPE_CHECKING:
    from aigw_lab.sim.fleet import SimulatedFleet

__all__ = ["SimulatedTransport", "PacedStream"]


class PacedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Stream events played out with the fleet's (scaled) delays between them."""

    __iter__ = _sync_transport.iter_paced
    __aiter__ = _async_transport.aiter_paced

    def __init__(self, events: list[tuple[float, bytes]], fleet: SimulatedFleet) -> None:
        self.events = events
        self.fleet = fleet


class SimulatedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport answering every request from a `SimulatedFleet`, in-process.

    Works for both ``httpx.Client(transport=...)`` and ``httpx.AsyncClient(transport=...)``.
    Streams arrive event by event with the simulated delays; a timeout fault waits for the
    request's read timeout (scaled) and raises `httpx.ReadTimeout`, as a real hang would.
    """

    handle_request = _sync_transport.handle_request
    handle_async_request = _async_transport.handle_async_request

    def __init__(self, fleet: SimulatedFleet) -> None:
        self.fleet = fleet
        #: The batch jobs submitted through this transport (`aigw_lab.sim.batches`).
        self.batches = FleetBatches(fleet)

    def reply_to(self, request: httpx.Request, body: bytes) -> WireReply:
        """The fleet's answer to ``request`` (whose body is ``body``)."""
        path = request.url.path
        content_type = request.headers.get("content-type", "")
        batch = self.batches.reply(request.method, path, content_type, body)
        return batch if batch is not None else respond(self.fleet, request.method, path, body)

    def response(self, reply: WireReply, request: httpx.Request) -> httpx.Response:
        """``reply`` as an httpx response: a body, or a paced stream of its events."""
        if reply.events is None:
            return httpx.Response(
                reply.status, headers=reply.headers, content=reply.body, request=request
            )
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=PacedStream(reply.events, self.fleet),
            request=request,
        )

    @staticmethod
    def read_timeout(request: httpx.Request, default: float) -> float:
        """The request's read timeout in seconds (``default`` when it has none)."""
        timeout = request.extensions.get("timeout") or {}
        read = timeout.get("read")
        return default if read is None else float(read)

    @staticmethod
    def timeout_error(request: httpx.Request) -> httpx.ReadTimeout:
        return httpx.ReadTimeout("simulated timeout: the fleet did not answer", request=request)
