"""Streams handed to callers: iterate for text, read `.response` at the end.

    with gateway.stream("sim-openai/sim-small", "Hi") as s:
        for text in s:
            print(text, end="")
    s.response.usage

Leaving the ``with`` block (or calling `close`) early stops the upstream stream; the call is
then logged as ``cancelled`` with the text received so far.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType

from aigw_lab.types import ChatResponse, StreamEnd, StreamEvent, TextDelta

__all__ = ["ChatStream", "AsyncChatStream"]


class ChatStream:
    """A synchronous stream of text deltas; ``response`` is set once the stream has ended."""

    def __init__(self, events: Iterator[StreamEvent]) -> None:
        self._events = events
        self._parts: list[str] = []
        self.response: ChatResponse | None = None

    def __iter__(self) -> Iterator[str]:
        for event in self._events:
            if isinstance(event, TextDelta):
                self._parts.append(event.text)
                yield event.text
            elif isinstance(event, StreamEnd):
                self.response = event.response

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def until_done(self) -> ChatResponse:
        """Consume the rest of the stream and return the final response."""
        for _ in self:
            pass
        assert self.response is not None
        return self.response

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncChatStream:
    """An asynchronous stream of text deltas; ``response`` is set once the stream has ended."""

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
        return "".join(self._parts)

    async def until_done(self) -> ChatResponse:
        async for _ in self:
            pass
        assert self.response is not None
        return self.response

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
