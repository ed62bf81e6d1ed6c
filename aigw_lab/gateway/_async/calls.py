"""A gateway's calls, from the entry point to the end of the pipeline: the answer, the
stream handed to the caller, and the row of a call that ended before any stage logged it
(refused by a middleware, cancelled while it waited). Also closing what a gateway holds.

Written once for asyncio; the sync code is generated from this file.
"""

# unasync: AsyncCalls=Calls, AsyncAttempt=Attempt, AsyncChatStream=ChatStream
# unasync: aclose_all=close_all

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING

from aigw_lab.gateway._async.stream import AsyncChatStream
from aigw_lab.gateway.effects import AsyncIO
from aigw_lab.gateway.middleware import compose
from aigw_lab.types import ChatResponse, StreamEnd, StreamEvent

if TYPE_CHECKING:
    from aigw_lab.gateway._async.attempt import AsyncAttempt
    from aigw_lab.gateway.middleware import CallContext, Middleware
    from aigw_lab.gateway.recorder import Recorder
    from aigw_lab.gateway.shadow import Shadow
    from aigw_lab.providers.base import HttpClients, Provider

__all__ = ["AsyncCalls", "aclose_all"]


class AsyncCalls:
    """One gateway's pipeline (``middleware``, outermost first, around ``attempt``) in this
    family of call modes, run for a call's context. ``shadow``: offered each answered call
    (`aigw_lab.gateway.shadow.Shadow.offer`: returns at once, never raises)."""

    def __init__(
        self,
        middleware: Sequence[Middleware],
        attempt: AsyncAttempt,
        recorder: Recorder,
        shadow: Shadow | None = None,
    ) -> None:
        self._run = compose(list(middleware), attempt.achat, "ahandle")
        self._run_stream = compose(list(middleware), attempt.astream, "ahandle_stream")
        self._recorder = recorder
        self._shadow = shadow

    async def achat(self, ctx: CallContext) -> ChatResponse:
        """Run the call; a call that raised before any row was logged for it gets one."""
        try:
            response = await self._run(ctx)
        except BaseException as exc:
            self._recorder.log_if_unlogged(ctx, exc)
            if self._recorder.observes_calls:
                self._recorder.call_ended(ctx, exc=exc)
            raise
        if self._recorder.observes_calls:
            self._recorder.call_ended(ctx, response)
        if self._shadow is not None:
            self._shadow.offer(ctx, response)
        return response

    def astream(self, ctx: CallContext) -> AsyncChatStream:
        """The caller's stream of the call (the pipeline starts on its first iteration)."""
        return AsyncChatStream(self._guarded(ctx))

    async def _guarded(self, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        # The pipeline starts inside the generator, so a middleware that refuses at once
        # is caught (and logged) here too.
        events = None
        answer: ChatResponse | None = None  # the final event's response, once it passed
        try:
            events = self._run_stream(ctx)
            # (Not `yield from` once generated: the loop is what asyncio needs.)
            async for event in events:  # noqa: UP028
                if type(event) is StreamEnd:
                    answer = event.response
                    if self._recorder.observes_calls:
                        # Before the last event goes out: the caller may stop there.
                        self._recorder.call_ended(ctx, answer)
                    if self._shadow is not None:
                        self._shadow.offer(ctx, event.response)
                yield event
        except BaseException as exc:
            # Close the pipeline's stream first (at once, not at collection): a cancelled
            # attempt logs itself and releases its connection; then, only if nothing was
            # logged for this call yet, log it here.
            await AsyncIO.close(events)
            self._recorder.log_if_unlogged(ctx, exc)
            if answer is None and self._recorder.observes_calls:
                self._recorder.call_ended(ctx, exc=exc)
            raise


async def aclose_all(providers: Iterable[Provider], clients: HttpClients | None) -> None:
    """Close ``providers``, then ``clients`` (None: clients the gateway does not own)."""
    for provider in providers:
        await provider.aclose()
    if clients is not None:
        await clients.aclose()
