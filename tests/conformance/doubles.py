"""The upstream of the conformance suite: a provider double that follows a script and
records what a real upstream would see (requests, and how each stream it served ended).

It is written to the public `BaseProvider` interface only, so the suite judges the gateway
by what any provider can observe: a stream the gateway stops early is *closed* (the
generator's ``close``/``aclose`` runs now, not when the garbage collector finds it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from aigw_lab.errors import ProviderServerError
from aigw_lab.providers.base_provider import BaseProvider
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta, Usage

__all__ = ["Step", "Upstream", "server_error", "interrupt", "HOLD_LIMIT_S"]

#: The longest a held call waits for its release (a test that forgets to release fails
#: instead of hanging).
HOLD_LIMIT_S = 10.0
#: Input and output tokens of every answer: fixed, so charges are exact.
INPUT_TOKENS = 9
OUTPUT_TOKENS = 6


def server_error(request: ChatRequest) -> BaseException:
    """A retryable upstream failure (HTTP 500), as a fallback would see it."""
    return ProviderServerError("upstream broke", provider="up", model=request.model, status=500)


def interrupt(request: ChatRequest) -> BaseException:
    """What a sync caller's cancellation looks like from inside a call: Ctrl-C."""
    return KeyboardInterrupt()


@dataclass(frozen=True)
class Step:
    """One scripted answer. ``fail``: raised before any text; ``fail_after``: pieces sent
    before ``mid_error`` is raised mid-stream (a plain call then fails whole); ``hold``: wait
    for `Upstream.release` before answering (the call is *in flight* meanwhile)."""

    text: str = "alpha beta gamma delta"
    fail: Callable[[ChatRequest], BaseException] | None = None
    fail_after: int | None = None
    mid_error: Callable[[ChatRequest], BaseException] = server_error
    hold: bool = False


class Upstream(BaseProvider):
    """A scripted provider named ``up`` serving models ``m``, ``m2`` and ``fb``.

    ``steps`` are used in order, then ``default``. ``requests`` lists what arrived;
    ``stream_ends`` how each stream ended: ``"end"`` (its `StreamEnd` was taken),
    ``"closed"`` (the consumer closed it early), ``"failed"`` (it raised).
    """

    simulated = True

    def __init__(self, name: str = "up", models: tuple[str, ...] = ("m", "m2", "fb")) -> None:
        self.name = name
        self.models = models
        self.default = Step()
        self.steps: deque[Step] = deque()
        self.requests: list[ChatRequest] = []
        self.stream_ends: list[str] = []
        self.entered = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()

    # --- scripting --------------------------------------------------------------------------

    def script(self, *steps: Step) -> Upstream:
        self.steps.extend(steps)
        return self

    def release(self) -> None:
        """Let held calls answer."""
        self._release.set()

    def wait_entered(self, timeout: float = HOLD_LIMIT_S) -> None:
        if not self.entered.wait(timeout):
            raise AssertionError("no call reached the upstream")

    async def await_entered(self, timeout: float = HOLD_LIMIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.entered.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("no call reached the upstream")
            await asyncio.sleep(0.001)

    # --- the provider -----------------------------------------------------------------------

    def _take(self, request: ChatRequest) -> Step:
        with self._lock:
            self.requests.append(request)
            step = self.steps.popleft() if self.steps else self.default
        self.entered.set()
        return step

    def _response(self, request: ChatRequest, text: str) -> ChatResponse:
        return ChatResponse(
            text=text,
            finish_reason="stop",
            usage=Usage(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS),
            provider=self.name,
            model=request.model,
            simulated=True,
        )

    def _hold(self) -> None:
        if not self._release.wait(HOLD_LIMIT_S):
            raise AssertionError("a held call was never released")

    async def _ahold(self) -> None:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not self._release.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("a held call was never released")
            await asyncio.sleep(0.001)

    def chat(self, request: ChatRequest) -> ChatResponse:
        step = self._take(request)
        if step.hold:
            self._hold()
        return self._answer(request, step)

    async def achat(self, request: ChatRequest) -> ChatResponse:
        step = self._take(request)
        if step.hold:
            await self._ahold()
        return self._answer(request, step)

    def _answer(self, request: ChatRequest, step: Step) -> ChatResponse:
        if step.fail is not None:
            raise step.fail(request)
        if step.fail_after is not None:
            raise step.mid_error(request)
        return self._response(request, step.text)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        step = self._take(request)
        ending = "failed"
        try:
            if step.hold:
                self._hold()
            if step.fail is not None:
                raise step.fail(request)
            for i, piece in enumerate(self.pieces(step.text)):
                if i == step.fail_after:
                    raise step.mid_error(request)
                yield TextDelta(piece)
            ending = "end"  # once suspended here, the consumer holds the end
            yield StreamEnd(self._response(request, step.text))
        except GeneratorExit:
            if ending != "end":
                ending = "closed"
            raise
        finally:
            with self._lock:
                self.stream_ends.append(ending)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        step = self._take(request)
        ending = "failed"
        try:
            if step.hold:
                await self._ahold()
            if step.fail is not None:
                raise step.fail(request)
            for i, piece in enumerate(self.pieces(step.text)):
                if i == step.fail_after:
                    raise step.mid_error(request)
                await asyncio.sleep(0)
                yield TextDelta(piece)
            ending = "end"
            yield StreamEnd(self._response(request, step.text))
        except (GeneratorExit, asyncio.CancelledError):
            if ending != "end":
                ending = "closed"
            raise
        finally:
            with self._lock:
                self.stream_ends.append(ending)
