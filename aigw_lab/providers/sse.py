"""An incremental Server-Sent Events parser, fed raw bytes as they arrive off the socket.

Network reads split a stream anywhere: inside a line, inside a UTF-8 character, between the
``\\r`` and ``\\n`` of a CRLF. `SSEParser` buffers what it must and yields each event once its
terminating blank line has arrived, following the WHATWG event-stream rules: ``data:`` lines
are joined with ``\\n``, lines starting with ``:`` are comments (keep-alive pings), ``event:``
names the event type (default ``"message"``), one space after the colon is dropped.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from aigw_lab._frozen import fast_init

__all__ = ["SSEEvent", "SSEParser"]

# Only CR, LF and CRLF end a line in an event stream (str.splitlines would also split on
# form feeds and Unicode line separators that may legitimately appear inside JSON text).
_LINE_END = re.compile(r"\r\n|\r|\n")


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SSEEvent:
    """One dispatched event: its type, its data lines joined with ``\\n``, and its id."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Turns a byte stream into `SSEEvent` objects, whatever the chunk boundaries.

    Call `feed` with each chunk as it arrives and `close` once the stream ended. One parser
    serves one stream.
    """

    __slots__ = ("_decoder", "_tail", "_after_cr", "_event", "_data", "_id", "_started")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""  # an unterminated line carried over to the next chunk
        self._after_cr = False  # the last chunk ended in "\r": a leading "\n" belongs to it
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by this chunk, in order (often none, sometimes several)."""
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """Finish the stream: dispatch an event whose lines all arrived but whose closing
        blank line did not. An unterminated last line is dropped, as the spec requires, so a
        JSON document cut in half is never handed on as if it were whole."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._tail = ""
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr and text[0] == "\n":
            text = text[1:]
        self._after_cr = text.endswith("\r")
        lines = _LINE_END.split(self._tail + text)
        self._tail = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif line[0] != ":":
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value or None
        # "retry" and unknown fields are ignored: nothing here reconnects.

    def _dispatch(self) -> SSEEvent | None:
        data, self._data = self._data, []
        event, self._event = self._event, ""
        if not data:
            return None
        return SSEEvent(event=event or "message", data="\n".join(data), id=self._id)
