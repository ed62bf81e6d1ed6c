"""One request and its answer on aigw's HTTP/1.1 protocol (`aigw_lab.server.h1`): the ASGI
``receive`` and ``send`` of the app's call, and the answer's head and body as written to
the transport (Content-Length or chunked, HEAD without a body, header names and values
checked as uvicorn checks them, 500 when the app fails before answering)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aigw_lab.server.h1 import _H1Protocol

__all__ = ["Exchange"]

# What HTTP forbids in a header name and in a header value (uvicorn's rules).
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_KNOWN_NAMES = 512
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_500 = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]


class Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of its app call."""

    __slots__ = (
        "protocol",
        "transport",
        "scope",
        "keep_alive",
        "expect_continue",
        "head_only",
        "body",
        "more_body",
        "news",
        "waiter",
        "disconnected",
        "started",
        "complete",
        "chunked",
        "remaining",
        "head",
        "flush",
    )

    def __init__(
        self,
        protocol: _H1Protocol,
        scope: dict[str, Any],
        keep_alive: bool,
        expect_continue: bool,
        head_only: bool,
    ) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head_only = head_only
        self.body = bytearray()
        self.more_body = True
        self.news = False  # body or its end arrived since the app last received
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked: bool | None = None
        self.remaining = 0  # body bytes still owed under Content-Length
        self.head: bytes | None = None  # status line and headers, not yet written
        self.flush: asyncio.Handle | None = None

    def wake(self) -> None:
        self.news = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:  # uvicorn's rule: the app's failure ends the exchange
            self.protocol.logger.error("Exception in ASGI application", exc_info=exc)
            if not self.started:
                await self._send_500()
            else:
                self._write_head()
                self.transport.close()
        else:
            if not self.started and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without completing response.")
                self._write_head()
                self.transport.close()

    async def _send_500(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": _500})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.transport.is_closing():
                self.transport.write(_CONTINUE)
        if not self.disconnected and not self.complete:
            if not self.news:
                self.protocol._resume_reading()
                self.waiter = self.protocol.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self.news = False
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        self.body.clear()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Any) -> None:
        protocol = self.protocol
        if protocol.write_paused and not self.disconnected:
            await protocol.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', got {kind!r}")
            self._start_answer(message)
            # Written with the first body chunk when the app sends it in this same step;
            # else on its own at the next turn of the loop.
            self.flush = protocol.loop.call_soon(self._write_head)
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after the response completed")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', got {kind!r}")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.head_only:
            self.remaining = 0
            data = b""
        elif self.chunked:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
            data = body
        head = self.head
        if head is not None:
            self.head = None
            self.flush.cancel()  # type: ignore[union-attr]
            data = head + data
        if data:
            self.transport.write(data)
        if not more_body:
            if self.remaining:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            if not self.keep_alive:
                self.transport.close()
            protocol.answered(self)

    def _start_answer(self, message: Any) -> None:
        """The status line and headers of ``message``, held in ``head``."""
        protocol = self.protocol
        self.started = True
        self.expect_continue = False
        parts = [protocol.status_lines[message["status"]]]
        for name, value in protocol.server_state.default_headers:
            parts.extend((name, b": ", value, b"\r\n"))
        known = protocol.known_names
        close_sent = False
        for name, value in message.get("headers", ()):
            if name not in known:
                if _BAD_NAME.search(name):
                    raise RuntimeError("Invalid HTTP header name.")
                name = name.lower()
                if len(known) < _MAX_KNOWN_NAMES:
                    known.add(name)
            if _BAD_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            if name == b"content-length":
                if self.chunked is None:
                    self.remaining = int(value.decode())
                    self.chunked = False
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.remaining = 0
                    self.chunked = True
            elif name == b"connection":
                if b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    close_sent = True
            parts.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not close_sent:
            parts.append(b"connection: close\r\n")
        status = message["status"]
        if self.chunked is None and not self.head_only and status not in (204, 304):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        self.head = b"".join(parts)

    def _write_head(self) -> None:
        """Write the held head on its own (the app did not send a body chunk with it)."""
        head = self.head
        if head is not None:
            self.head = None
            if not self.transport.is_closing():
                self.transport.write(head)
