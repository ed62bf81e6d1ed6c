"""Connection-level limits uvicorn lacks: a header timeout and a cap on open connections.

uvicorn (0.55, h11) closes idle keep-alive connections, but a connection that never sends
a byte, or sends its headers one byte a second, is kept forever: 800 such connections held
a server for as long as they liked. `guarded_protocol` returns uvicorn's own h11 protocol
with two additions, chosen over a separate watchdog task because the protocol already sees
every byte and every state change, so the check costs one timer per request and no polling:

- a **header timeout**: from a connection's opening (or the first byte after a completed
  response) until the request's headers are complete; past it the connection is closed,
  after a 408 if the client had started a request;
- a **connection cap**: a connection over ``max_connections`` has its request answered
  by ``busy_app`` (503 with Retry-After in the caller's API format) and is closed. Its
  request is read first (within the header timeout), so the client sees the answer rather
  than a reset.

The body timeout and the cap on requests in flight live in the app (`GatewayApp`), which
answers them in the caller's format.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aigw_lab.server_limits import ServerLimits

__all__ = ["guarded_protocol"]

_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nthe request headers came too late"
)


def guarded_protocol(limits: ServerLimits, busy_app: Any) -> type:
    """uvicorn's h11 protocol class with the header timeout and connection cap of
    ``limits``; ``busy_app`` (an ASGI app) answers requests on connections over the cap."""
    # lazy: uvicorn loads only when a server starts (the CLI and library never need it)
    from uvicorn.protocols.http.h11_impl import H11Protocol

    header_timeout = limits.header_timeout
    max_connections = limits.max_connections

    class GuardedH11Protocol(H11Protocol):  # type: ignore[misc]
        """H11Protocol plus a header deadline and a connection cap (see the module)."""

        _header_timer: asyncio.TimerHandle | None = None
        _started = False  # bytes of the awaited request have arrived

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                # Answer this connection's request with the 503; uvicorn picks self.app
                # when the request's headers are in, and busy_app closes the connection.
                self.app = busy_app
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers():
                if self._header_timer is None:
                    self._arm()  # the first byte of the next request on a kept-alive one
                self._started = True
            super().data_received(data)
            if not self._awaiting_headers():
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._started = False
            self._header_timer = self.loop.call_later(header_timeout, self._on_header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _on_header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or not self._awaiting_headers():
                return
            if self._started:
                # Raw bytes: h11 cannot send a response before it has parsed a request.
                self.transport.write(_TIMEOUT_408)
            self.transport.close()

    return GuardedH11Protocol
