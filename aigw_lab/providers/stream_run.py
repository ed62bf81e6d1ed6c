"""One streamed exchange of an `HttpProvider`, after its headers arrived: parsing the bytes,
timing, the text so far, and the event (or error) that ends the stream.

Shared by both streaming modes (`aigw_lab.providers._async.exchange` and the sync code
generated from it): nothing here reads from the network, so nothing here differs by mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx

from aigw_lab.errors import StreamInterruptedError
from aigw_lab.providers.codec import UpstreamErrorEvent
from aigw_lab.providers.sse import SSEEvent, SSEParser
from aigw_lab.types import ChatRequest, Latency, StreamEnd, StreamEvent, TextDelta

if TYPE_CHECKING:
    from aigw_lab.providers.transport import HttpProvider

__all__ = ["StreamRun", "DECODE_ERRORS"]

# What a codec raises on a payload of the wrong shape (WireFormatError and JSON errors are
# ValueErrors); mapped to MalformedResponseError at this boundary.
DECODE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError)


class StreamRun:
    """One streamed exchange after its headers arrived: parses bytes, tracks timing and the
    text so far, and turns the end of the stream (or its breakdown) into the right event."""

    __slots__ = (
        "provider", "request", "response", "started", "sent", "headers_at", "parser",
        "decoder", "parts", "delivered", "first_text_at", "error_body_expected",
    )  # fmt: skip

    def __init__(
        self,
        provider: HttpProvider,
        request: ChatRequest,
        response: httpx.Response,
        started: float,
        sent: float,
    ) -> None:
        self.provider = provider
        self.request = request
        self.response = response
        self.started = started
        self.sent = sent
        self.headers_at = time.perf_counter()
        self.parser = SSEParser()
        self.decoder = provider.codec.stream_decoder(request)
        self.parts: list[str] = []
        self.delivered = False
        self.first_text_at: float | None = None
        content_type = response.headers.get("content-type", "")
        # An error status, or a JSON body where events were expected (an error envelope, or
        # a server that ignores "stream"), is read whole rather than parsed as events.
        self.error_body_expected = response.status_code >= 400 or (
            "json" in content_type and "event-stream" not in content_type
        )

    def from_whole_body(self, body: bytes) -> Iterator[StreamEvent]:
        provider = self.provider
        if self.response.status_code >= 400:
            raise provider._status_error(self.request, self.response, body)
        payload = provider._parse_json(self.request, self.response, body)
        decoded = provider._decode(self.request, self.response, payload)
        if decoded.text:
            self.first_text_at = time.perf_counter()
            self.delivered = True
            yield TextDelta(decoded.text)
        yield StreamEnd(provider._response(self.request, self.response, decoded, self._latency()))

    def feed(self, chunk: bytes) -> Iterator[TextDelta]:
        """The text deltas a chunk completes; an error event raises after the text that
        arrived before it was yielded."""
        if self.decoder.finished:
            return  # drain what follows the final event so the connection can be reused
        for event in self.parser.feed(chunk):
            text = self._decode_event(event)
            if text:
                if self.first_text_at is None:
                    self.first_text_at = time.perf_counter()
                self.parts.append(text)
                yield TextDelta(text)
            if self.decoder.finished:
                return

    def end(self) -> StreamEnd:
        if not self.decoder.finished:
            for event in self.parser.close():
                text = self._decode_event(event)
                if text:
                    # Not yielded: no format puts text in its final event, so an event that
                    # only completes at EOF means the stream is cut and this is partial text.
                    self.parts.append(text)
                if self.decoder.finished:
                    break
        if not self.decoder.finished:
            raise self.interrupted(None)
        try:
            decoded = self.decoder.result()
        except DECODE_ERRORS as exc:
            raise self.provider._malformed(
                self.request, self.response.status_code, "".join(self.parts), exc
            ) from exc
        return StreamEnd(
            self.provider._response(self.request, self.response, decoded, self._latency())
        )

    def interrupted(self, exc: Exception | None) -> StreamInterruptedError:
        cause = "the connection broke" if exc is not None else "the stream ended"
        if isinstance(exc, httpx.TimeoutException):
            cause = "no data arrived within the timeout"
        delivered = "after text was delivered" if self.delivered else "before any text"
        return StreamInterruptedError(
            f"{cause} before the final event, {delivered}; the answer may be cut short (retryable)",
            partial_text="".join(self.parts),
            text_delivered=self.delivered,
            provider=self.provider.name,
            model=self.request.model,
            status=self.response.status_code,
            hint="retry the request; if it keeps happening, check proxies between you and the "
            "provider",
        )

    def _decode_event(self, event: SSEEvent) -> str:
        try:
            return self.decoder.feed(event)
        except UpstreamErrorEvent as error:
            raise self.provider._event_error(self.request, error, event.data) from None
        except DECODE_ERRORS as exc:
            raise self.provider._malformed(
                self.request, self.response.status_code, event.data, exc
            ) from exc

    def _latency(self) -> Latency:
        # The caller's time between events counts in both total and upstream (the exchange
        # is open meanwhile), so the overhead, total minus upstream, stays the gateway's own.
        now = time.perf_counter()
        total = (now - self.started) * 1000.0
        first = self.first_text_at
        return Latency(  # as in `HttpProvider._complete`
            total_ms=total,
            ttfb_ms=(self.headers_at - self.sent) * 1000.0,  # ttfb_ms
            ttft_ms=(first - self.started) * 1000.0 if first is not None else total,  # ttft_ms
            upstream_ms=(now - self.sent) * 1000.0,  # upstream_ms
        )
