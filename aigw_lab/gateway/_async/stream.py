"""The stream a gateway's streaming call hands to its caller: iterate it for text;
``response`` holds the final response once it has ended. Closing it early (leaving its
``with`` block) stops the upstream stream at once, so the call is logged as ``cancelled``
with the text received so far. Written once for asyncio; the sync class is generated.
"""

# unasync: AsyncChatStream=ChatStream

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from aigw_lab.gateway.effects import AsyncIO
from aigw_lab.types import ChatResponse, StreamEnd, StreamEvent, TextDelta

__all__ = ["AsyncChatStream"]


class AsyncChatStream:
    """A stream of text deltas; ``response`` is set once the stream has ended."""

    def __init__(self, events: AsyncIterator[StreamEvent]) -> None:
        self._events = events
        self._parts: list[str] = []
        self.response: ChatResponse | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self._events:
            if isinstance(event, TextDelta):
                self._parts.append(event.text)
                yield event.text
            elif isinstance(event, StreamEnd):
                self.response = event.response

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    async def until_done(self) -> ChatResponse:
        """Consume the rest of the stream and return the final response."""
        async for _ in self:
            pass
        assert self.response is not None
        return self.response

    async def aclose(self) -> None:
        """Stop the stream now: the upstream is closed and the call logged as cancelled
        (nothing happens once the stream has ended)."""
        await AsyncIO.close(self._events)

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
