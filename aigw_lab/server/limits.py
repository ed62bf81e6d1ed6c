"""Connection-level limits uvicorn lacks: a header timeout and a cap on open connections.

uvicorn (0.55) closes idle keep-alive connections, but a connection that never sends a
byte, or sends its headers one byte a second, is kept forever: 800 such connections held a
server for as long as they liked. `guarded_protocol` returns one of uvicorn's own HTTP
protocol classes (httptools' by default when it is installed, the ``fast-serve`` extra;
else h11's) with these additions, chosen over a separate watchdog task because the
protocol already sees every byte and every state change, so the check costs one timer per
request and no polling:

- a **header timeout**: from a connection's opening (or the first byte after a completed
  response) until the request's headers are complete; past it the connection is closed,
  after a 408 if the client had started a request;
- a **connection cap**: a connection over ``max_connections`` has its request answered
  by ``busy_app`` (503 with Retry-After in the caller's API format) and is closed. Its
  request is read first (within the header timeout), so the client sees the answer rather
  than a reset;
- a **header size cap**: a request line plus headers past ``max_header_bytes``, whether
  still arriving or complete in one piece, gets a 400 and the connection is closed before
  the parser or the app sees them (h11 also bounds unfinished ones itself,
  ``h11_max_incomplete_event_size``).

The body timeout and the cap on requests in flight live in the app (`GatewayApp`), which
answers them in the caller's format.
"""

from __future__ import annotations

import asyncio
from importlib.util import find_spec
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.server.h1 import h1_protocol
from aigw_lab.server_limits import ServerLimits

__all__ = ["guarded_protocol", "HTTP_IMPLEMENTATIONS", "resolve_http"]

#: The HTTP/1.1 fronts ``aigw-lab serve --http`` offers: "aigw" is our own protocol on
#: httptools' parser (`aigw_lab.server.h1`), "httptools" and "h11" uvicorn's protocols with
#: the guards below. "auto" takes "aigw" when httptools is installed (a core dependency),
#: else "h11". Both cost the same CPU per request within noise on the quiet box
#: (bench/bench_serve_workers.py --fronts, docs/performance.md); "aigw" is the default
#: because it times every request's headers, also those arriving while an earlier answer is
#: written, which uvicorn's protocols leave untimed (tests/server/test_h1_late_headers.py).
HTTP_IMPLEMENTATIONS = ("auto", "httptools", "h11", "aigw")

_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nthe request headers came too late"
)


def resolve_http(http: str, find: Any = None) -> str:
    """The front for ``http`` (one of `HTTP_IMPLEMENTATIONS`): "h11", "httptools" or "aigw".
    A `ConfigError` naming the install command for "httptools" (which "aigw" parses with
    too) when it is missing, or naming
    the choices for an unknown name. ``find`` is `importlib.util.find_spec` unless given."""
    find = find or find_spec
    if http == "auto":
        return "aigw" if find("httptools") is not None else "h11"
    if http in ("httptools", "aigw") and find("httptools") is None:
        raise ConfigError(
            f"--http {http}: httptools is not installed",
            hint="pip install 'aigw-lab[fast-serve]', or use --http auto",
        )
    if http not in HTTP_IMPLEMENTATIONS:
        raise ConfigError(f"unknown HTTP implementation {http!r}",
                          hint=f"use one of {', '.join(HTTP_IMPLEMENTATIONS)}")  # fmt: skip
    return http


class _Guards:
    """The additions, mixed into one of uvicorn's protocol classes (see the module). The
    class attributes are set by `guarded_protocol`."""

    header_timeout: float = 10.0
    max_connections: int = 1000
    max_header_bytes: int = 0  # 0: no cap of the guard's own
    busy_app: Any = None

    _header_timer: asyncio.TimerHandle | None = None
    _started = False  # bytes of the awaited request have arrived
    _header_bytes = 0  # bytes received while awaiting this request's headers

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.max_connections:  # type: ignore[attr-defined]
            # Answer this connection's request with the 503; uvicorn picks self.app when
            # the request's headers are in, and busy_app closes the connection.
            self.app = self.busy_app
        self._arm()

    def data_received(self, data: bytes) -> None:
        awaiting = self._awaiting_headers()
        if awaiting:
            if self._header_timer is None:
                self._arm()  # the first byte of the next request on a kept-alive one
            self._started = True
            before = self._header_bytes
            self._header_bytes += len(data)
            cap = self.max_header_bytes
            if cap and self._header_bytes > cap:
                # Headers complete in this chunk but past the cap would reach the app once
                # parsed: measure up to their end, and refuse before the parser sees them.
                end = data.find(b"\r\n\r\n")
                if end < 0 or before + end > cap:
                    if not self.transport.is_closing():  # type: ignore[attr-defined]
                        self.send_400_response("the request headers are too large")  # type: ignore[attr-defined]
                    return
        super().data_received(data)  # type: ignore[misc]
        if not self._awaiting_headers():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _awaiting_headers(self) -> bool:
        cycle = self.cycle  # type: ignore[attr-defined]
        return cycle is None or cycle.response_complete

    def _arm(self) -> None:
        self._started = False
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(  # type: ignore[attr-defined]
            self.header_timeout, self._on_header_timeout
        )

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        transport = self.transport  # type: ignore[attr-defined]
        if transport.is_closing() or not self._awaiting_headers():
            return
        if self._started:
            # Raw bytes: h11 cannot send a response before it has parsed a request.
            transport.write(_TIMEOUT_408)
        transport.close()


def guarded_protocol(limits: ServerLimits, busy_app: Any, http: str = "h11") -> type:
    """uvicorn's protocol class for ``http`` ("h11" or "httptools", see `resolve_http`)
    with the header timeout, connection cap and header size cap of ``limits``;
    ``busy_app`` (an ASGI app) answers requests on connections over the cap. "aigw": our
    own protocol with the same guards (`aigw_lab.server.h1.h1_protocol`)."""
    if http == "aigw":
        return h1_protocol(limits, busy_app)
    if http == "httptools":
        # lazy: uvicorn loads only when a server starts (the CLI and library never need it)
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base

        header_cap = limits.max_header_bytes
    else:
        # lazy: uvicorn loads only when a server starts (the CLI and library never need it)
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

        # h11_max_incomplete_event_size (see runner.uvicorn_config) bounds headers that
        # are still arriving; the guard's count also refuses complete ones past the cap.
        header_cap = limits.max_header_bytes
    attributes = {
        "__doc__": f"uvicorn's {base.__name__} plus the guards of aigw_lab.server.limits.",
        "header_timeout": limits.header_timeout,
        "max_connections": limits.max_connections,
        "max_header_bytes": header_cap,
        "busy_app": staticmethod(busy_app),  # a plain function must not bind to self
    }
    return type(f"Guarded{base.__name__}", (_Guards, base), attributes)
