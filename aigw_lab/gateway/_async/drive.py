"""The drivers: how a sans-IO primitive (`aigw_lab.gateway.middleware.Primitive`) runs as a
stage of the pipeline, one function per call mode. They are the only code that waits for a
primitive, runs its blocking work, replays what it serves and closes the stream beneath it.

Written once for asyncio; the sync drivers are generated from this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aigw_lab.gateway.cache_common import replay_as_stream
from aigw_lab.gateway.effects import AsyncIO
from aigw_lab.gateway.primitive import Outcome, Proceed, Serve, Verdict, Wait, Work
from aigw_lab.types import ChatResponse, StreamEnd, StreamEvent

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext, Primitive

__all__ = ["admit_async", "drive_achat", "drive_astream"]


async def admit_async(stage: Primitive, ctx: CallContext, verdict: Verdict) -> Proceed | Serve:
    """Given ``stage``'s first verdict on ``ctx``, ask again until it says `Proceed` or
    `Serve`, doing each wait and each piece of work it asks for in between. If the waiting
    or work fails or is cancelled, the stage is told (``withdraw``) before the error goes
    on. (The drivers take a first `Proceed` themselves: the common case costs one call.)"""
    while True:
        kind = type(verdict)
        if kind is Proceed or kind is Serve:
            return verdict  # type: ignore[return-value]
        if kind is Wait:
            try:
                await AsyncIO.wait(verdict)  # type: ignore[arg-type]
            except BaseException:
                stage.withdraw(ctx, verdict.state)  # type: ignore[union-attr]
                raise
            state = verdict.state  # type: ignore[union-attr]
        elif kind is Work:
            try:
                state = await AsyncIO.work(verdict)  # type: ignore[arg-type]
            except BaseException:
                stage.withdraw(ctx, verdict.state)  # type: ignore[union-attr]
                raise
        else:
            raise TypeError(f"{type(stage).__name__}.admit returned {verdict!r}, not a verdict")
        if stage.io is None:
            verdict = stage.admit(ctx, state)
        else:
            verdict = await AsyncIO.offload(stage.io, stage.admit, ctx, state)


async def drive_achat(
    stage: Primitive, ctx: CallContext, call_next: Callable[[CallContext], Awaitable[ChatResponse]]
) -> ChatResponse:
    """Run ``stage`` around ``call_next`` for one non-streaming call."""
    if stage.io is None:
        verdict = stage.admit(ctx, None)
    else:
        verdict = await AsyncIO.offload(stage.io, stage.admit, ctx, None)
    if type(verdict) is not Proceed:
        verdict = await admit_async(stage, ctx, verdict)
        if type(verdict) is Serve:
            return verdict.response  # type: ignore[union-attr]
    ticket = verdict.ticket  # type: ignore[union-attr]
    if ticket is None:
        return await call_next(ctx)
    try:
        response = await call_next(ctx)
    except BaseException as exc:
        failed = Outcome(error=exc)
        if stage.io is None or not isinstance(exc, Exception):
            stage.settle(ctx, ticket, failed)  # a cancelled task settles without waiting
        else:
            await AsyncIO.offload(stage.io, stage.settle, ctx, ticket, failed)
        raise
    outcome = Outcome(response=response, answered=True)
    if stage.io is None:
        stage.settle(ctx, ticket, outcome)
    else:
        await AsyncIO.offload(stage.io, stage.settle, ctx, ticket, outcome)
    return response


async def drive_astream(
    stage: Primitive,
    ctx: CallContext,
    call_next: Callable[[CallContext], AsyncIterator[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    """Run ``stage`` around ``call_next`` for one streaming call. Admission happens on the
    first iteration, so a stream never read takes nothing. The ticket is settled at the
    final event (before it goes out) or, when the stream breaks or is abandoned, after the
    stream beneath has been closed (so its attempt is logged at once)."""
    if stage.io is None:
        verdict = stage.admit(ctx, None)
    else:
        verdict = await AsyncIO.offload(stage.io, stage.admit, ctx, None)
    if type(verdict) is not Proceed:
        verdict = await admit_async(stage, ctx, verdict)
        if type(verdict) is Serve:
            for event in replay_as_stream(verdict.response):  # type: ignore[union-attr]
                yield event
            return
    ticket = verdict.ticket  # type: ignore[union-attr]
    events = None
    if ticket is None:
        try:
            events = call_next(ctx)
            async for event in events:
                yield event
        finally:
            await AsyncIO.close(events)
        return
    observe = stage.observe if stage.observes else None
    answered = settled = False
    error: BaseException | None = None
    try:
        events = call_next(ctx)
        async for event in events:
            answered = True
            if observe is not None:
                observe(ctx, ticket, event)
            if type(event) is StreamEnd:
                settled = True
                outcome = Outcome(response=event.response, answered=True)
                if stage.io is None:
                    stage.settle(ctx, ticket, outcome)
                else:
                    await AsyncIO.offload(stage.io, stage.settle, ctx, ticket, outcome)
            yield event
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            await AsyncIO.close(events)
        finally:
            if not settled:
                ended = Outcome(error=error, answered=answered)
                if stage.io is None or not isinstance(error, Exception):
                    stage.settle(ctx, ticket, ended)  # abandoned or cancelled: no waiting
                else:
                    await AsyncIO.offload(stage.io, stage.settle, ctx, ticket, ended)
