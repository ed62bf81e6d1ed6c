"""`Retry`'s loops over attempts, one per call mode: written once for asyncio; the sync loops
are generated from this file (`.ci/unasync.py`). The decisions (which target, how long to
wait, when the call is over) are `RetryRun`'s; these loops only call, wait and close, through
`aigw_lab.gateway.effects`.
"""

# unasync: _async_sleep=_sleep, retry_achat=retry_chat, retry_astream=retry_stream

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from aigw_lab.errors import AigwError
from aigw_lab.gateway.effects import AsyncIO
from aigw_lab.gateway.retry_run import RetryRun
from aigw_lab.types import ChatResponse, StreamEvent, TextDelta

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.gateway.reliability import Retry

__all__ = ["retry_achat", "retry_astream"]


async def retry_achat(
    retry: Retry, ctx: CallContext, call_next: Callable[[CallContext], Awaitable[ChatResponse]]
) -> ChatResponse:
    """Call ``call_next`` until an attempt answers or ``retry``'s run says the call is over."""
    run = RetryRun(retry, ctx)
    io = retry.health_io  # the breakers' store waits on the network: not on the loop
    while True:
        if io is None:
            run.begin(ctx)
        else:
            await AsyncIO.offload(io, run.begin, ctx)
        try:
            response = await call_next(ctx)
        except AigwError as exc:
            ctx.request = run.request
            if io is None:
                wait = run.failed(ctx, exc)
            else:
                wait = await AsyncIO.offload(io, run.failed, ctx, exc)
            if wait > 0.0:
                await AsyncIO.sleep(wait, retry._async_sleep)
            continue
        except BaseException:
            ctx.request = run.request
            run.abandoned(ctx)
            raise
        ctx.request = run.request
        if io is None:
            run.succeeded(ctx)
        else:
            await AsyncIO.offload(io, run.succeeded, ctx)
        return response


async def retry_astream(
    retry: Retry, ctx: CallContext, call_next: Callable[[CallContext], AsyncIterator[StreamEvent]]
) -> AsyncIterator[StreamEvent]:
    """Stream from ``call_next``, starting again on the next attempt when one fails before
    any text reached the caller (once text went out, a retry would repeat it: the error
    propagates)."""
    run = RetryRun(retry, ctx)
    io = retry.health_io
    while True:
        if io is None:
            run.begin(ctx)
        else:
            await AsyncIO.offload(io, run.begin, ctx)
        events: AsyncIterator[StreamEvent] | None = None
        delivered = False
        try:
            events = call_next(ctx)
            async for event in events:
                if not delivered and isinstance(event, TextDelta):
                    delivered = True
                yield event
        except AigwError as exc:
            ctx.request = run.request
            if io is None:
                wait = run.failed(ctx, exc, text_delivered=delivered)
            else:
                failed = partial(run.failed, text_delivered=delivered)
                wait = await AsyncIO.offload(io, failed, ctx, exc)
            if wait > 0.0:
                await AsyncIO.sleep(wait, retry._async_sleep)
            continue
        except BaseException:
            # The caller closed the stream (or was interrupted): stop the attempt too, so it
            # is logged as cancelled now rather than whenever it is collected.
            await AsyncIO.close(events)
            ctx.request = run.request
            run.abandoned(ctx)
            raise
        ctx.request = run.request
        if io is None:
            run.succeeded(ctx)
        else:
            await AsyncIO.offload(io, run.succeeded, ctx)
        return
