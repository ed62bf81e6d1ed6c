"""The waiting parts of the fleet's in-process httpx transport, written once for asyncio; the
blocking ones (`aigw_lab.sim._sync.transport`) are generated from this file by
``.ci/unasync.py``. `SimulatedTransport` and its `PacedStream` (`aigw_lab.sim.transport`)
take these functions as their methods, so one object serves an ``httpx.Client`` and an
``httpx.AsyncClient``.
"""

# unasync: handle_async_request=handle_request, aread=read, aiter_paced=iter_paced

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from aigw_lab.sim.transport import PacedStream, SimulatedTransport

__all__ = ["handle_async_request", "aiter_paced"]


async def handle_async_request(
    transport: SimulatedTransport,
    request: httpx.Request,
) -> httpx.Response:
    """Answer ``request`` from the fleet after its simulated time to the first byte. A
    timeout fault waits for the request's read timeout (scaled), then raises
    `httpx.ReadTimeout`, as a real hang would."""
    reply = transport.reply_to(request, await request.aread())
    fleet = transport.fleet
    if reply.hang:
        seconds = fleet.scaled(transport.read_timeout(request, fleet.hang_s))
        if seconds > 0:
            await fleet.async_sleep(seconds)
        raise transport.timeout_error(request)
    seconds = fleet.scaled(reply.delay_s)
    if seconds > 0:
        await fleet.async_sleep(seconds)
    return transport.response(reply, request)


async def aiter_paced(stream: PacedStream) -> AsyncIterator[bytes]:
    """The stream's events, each after its (scaled) delay."""
    fleet = stream.fleet
    for delay, chunk in stream.events:
        seconds = fleet.scaled(delay)
        if seconds > 0:
            await fleet.async_sleep(seconds)
        yield chunk
