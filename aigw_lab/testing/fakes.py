"""Public test doubles: providers that answer without any network, for your own tests.

- `MockProvider`: enqueue replies (text, a `ChatResponse`, or an exception) and it serves them
  in order; it records every request it saw.
- `FunctionProvider`: answers with a function of the request.

Both stream too (the text is split into word-sized deltas) and mark their answers
``simulated=True``, so they never pass for a real provider in the log.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace

from aigw_lab.providers.base_provider import BaseProvider
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta, Usage

__all__ = ["MockProvider", "FunctionProvider", "approx_tokens"]

Reply = str | ChatResponse | BaseException


def approx_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for fake usage numbers."""
    return max(1, (len(text) + 3) // 4) if text else 0


class _FakeBase(BaseProvider):
    simulated = True

    def __init__(self, name: str, models: tuple[str, ...] = ()) -> None:
        self.name = name
        self.models = models
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()

    def _answer(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def _respond(self, request: ChatRequest) -> ChatResponse:
        with self._lock:
            self.requests.append(request)
        return self._answer(request)

    def _as_response(self, request: ChatRequest, reply: Reply) -> ChatResponse:
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ChatResponse):
            return replace(reply, provider=self.name, simulated=True)
        prompt = " ".join(m.text for m in request.messages)
        return ChatResponse(
            text=reply,
            finish_reason="stop",
            usage=Usage(input_tokens=approx_tokens(prompt), output_tokens=approx_tokens(reply)),
            provider=self.name,
            model=request.model,
            simulated=True,
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        return self._respond(request)

    async def achat(self, request: ChatRequest) -> ChatResponse:
        return self._respond(request)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        response = self._respond(request)
        for piece in _pieces(response.text):
            yield TextDelta(piece)
        yield StreamEnd(response)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = self._respond(request)
        for piece in _pieces(response.text):
            await asyncio.sleep(0)
            yield TextDelta(piece)
        yield StreamEnd(response)


def _pieces(text: str) -> list[str]:
    """Word-sized deltas that join back to exactly ``text`` (spacing kept)."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


class MockProvider(_FakeBase):
    """Serves enqueued replies in order; with an empty queue it answers ``default`` (or raises
    `LookupError` when ``default`` is None, so a test notices a call it did not expect)."""

    def __init__(
        self, name: str = "mock", *, default: str | None = "ok", models: tuple[str, ...] = ()
    ) -> None:
        super().__init__(name, models)
        self.default = default
        self._queue: deque[Reply] = deque()

    def enqueue(self, *replies: Reply) -> MockProvider:
        """Add replies to serve, in order; returns self for chaining."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def _answer(self, request: ChatRequest) -> ChatResponse:
        with self._lock:
            reply: Reply | None = self._queue.popleft() if self._queue else None
        if reply is None:
            if self.default is None:
                raise LookupError(f"MockProvider {self.name!r} got a request with no reply queued")
            reply = self.default
        return self._as_response(request, reply)


class FunctionProvider(_FakeBase):
    """Answers each request with ``function(request)``: a string, a response, or it raises."""

    def __init__(
        self,
        function: Callable[[ChatRequest], str | ChatResponse],
        name: str = "function",
        *,
        models: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, models)
        self.function = function

    def _answer(self, request: ChatRequest) -> ChatResponse:
        return self._as_response(request, self.function(request))
