"""The attempt: the innermost stage of a gateway's pipeline, the one that calls the provider.

It counts the attempt, writes its start to the log's spool before the request leaves, calls
the provider, and has the `aigw_lab.gateway.recorder.Recorder` price, time and log the
outcome: the response, or the failure (a cancellation included, with the text a stream had
delivered) before it is raised. Every attempt, each retry and fallback included, is a row.
A stream left early closes the provider's stream at once.

Written once for asyncio; the sync stage is generated from this file.
"""

# unasync: AsyncAttempt=Attempt

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aigw_lab.errors import MalformedResponseError
from aigw_lab.gateway.effects import AsyncIO
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.gateway.recorder import Recorder
    from aigw_lab.providers.base import Provider

__all__ = ["AsyncAttempt"]


class AsyncAttempt:
    """The attempt stage of one gateway. ``target(ctx)`` gives the provider and the request
    for the context's current target (raising for an unknown provider or model)."""

    def __init__(
        self,
        target: Callable[[CallContext], tuple[Provider, ChatRequest]],
        recorder: Recorder,
    ) -> None:
        self._target = target
        self._recorder = recorder

    def _resolve(self, ctx: CallContext) -> tuple[Provider, ChatRequest]:
        """The provider and request for ``ctx``'s target. A target that cannot be called (a
        model its provider does not list, a provider without its key) is refused before it
        counts as an attempt: nothing was sent, so its row says attempt 0."""
        try:
            return self._target(ctx)
        except BaseException as exc:
            self._recorder.log_refused(ctx, exc)
            raise

    def _ready(self, ctx: CallContext, call_id: str, provider: Provider) -> None:
        if self._recorder.spool is not None:
            self._recorder.spool_start(ctx, call_id, provider)  # before the request leaves

    async def achat(self, ctx: CallContext) -> ChatResponse:
        recorder = self._recorder
        provider, request = self._resolve(ctx)
        call_id = recorder.begin(ctx)
        upstream_start = ctx.attempt_started
        try:
            self._ready(ctx, call_id, provider)
            upstream_start = recorder.perf()
            response = await provider.achat(request)
        except BaseException as exc:
            recorder.failed(ctx, exc, upstream_start, call_id=call_id)
            raise
        return recorder.complete(ctx, response, upstream_start, call_id)

    async def astream(self, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        recorder = self._recorder
        provider, request = self._resolve(ctx)
        call_id = recorder.begin(ctx)
        upstream_start = ctx.attempt_started
        parts: list[str] = []
        upstream = None
        try:
            self._ready(ctx, call_id, provider)
            upstream_start = recorder.perf()
            upstream = provider.astream(request)
            async for event in upstream:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    yield event
                else:
                    yield StreamEnd(recorder.complete(ctx, event.response, upstream_start, call_id))
                    return
            raise MalformedResponseError(
                "the stream ended without its final event",
                provider=ctx.provider_name,
                model=ctx.model,
            )
        except BaseException as exc:
            recorder.failed(ctx, exc, upstream_start, "".join(parts), call_id=call_id)
            raise
        finally:
            # The provider's stream is closed now, not when it is collected: an async
            # generator left to the garbage collector holds its connection until the loop
            # gets round to it (and a sync one until its last reference goes).
            await AsyncIO.close(upstream)
