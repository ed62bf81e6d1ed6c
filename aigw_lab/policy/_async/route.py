"""The route stage's hooks (`PolicyRouter`), one per call mode: written once for asyncio; the
sync ones are generated from this file (`.ci/unasync.py`). Closing a stream beneath goes
through `aigw_lab.gateway.effects`.

A call addressed to a policy runs the policy with a ``send`` that points the call at one
target and runs the rest of the pipeline (`PolicyCall`). A stream goes straight to the
targets the policy names for streams, moving to the next only while no text reached the
caller; a policy that must see answers first (a cascade) runs on drained streams and its
accepted answer is replayed.

Every row a policy's call writes carries the policy's name (``ctx.route_policy``) and the
probability of the decision behind it (``ctx.propensity``). A single-decision policy is
asked for its `RouteDecision` here (its ``call`` is exactly sending to that target), so the
decision's propensity is logged and the policy is told what the call cost
(`Policy.settle`: an exploring policy's budget). A policy that calls several targets
(fallback chain, cascade) is deterministic: its rows carry 1.0; a single-decision policy
that overrides ``call`` hides its decision, so its rows carry NULL. A row the gateway's
`Retry` stage adds (a retry, or a fallback to a target the policy did not name) keeps the
propensity of the decision that led to it: the probability that the policy's choice set
this chain of attempts going, not a probability of the row's own target.
"""

# unasync: route_achat=route_chat, route_astream=route_stream, _astream=_stream
# unasync: _adrain=_drain, astream_targets=stream_targets, adecide=decide

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from aigw_lab.errors import AigwError
from aigw_lab.gateway.effects import AsyncIO
from aigw_lab.gateway.health import should_fall_back
from aigw_lab.gateway.route import POLICY_PROVIDER
from aigw_lab.policy.base import Policy
from aigw_lab.policy.route_call import PolicyCall
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.policy.router import PolicyRouter

__all__ = ["route_achat", "route_astream"]


async def route_achat(
    router: PolicyRouter,
    ctx: CallContext,
    call_next: Callable[[CallContext], Awaitable[ChatResponse]],
) -> ChatResponse:
    """Hand a call addressed to a policy to that policy; pass any other call through."""
    if ctx.provider_name != POLICY_PROVIDER:
        return await call_next(ctx)
    policy = router._policy(ctx)
    call = PolicyCall(router, ctx)

    async def send(target: str, request: ChatRequest) -> ChatResponse:
        try:
            return await call_next(call.point(target, request))
        except AigwError:
            call.failed_target = target
            raise

    try:
        if not policy.single_decision or type(policy).acall is not Policy.acall:
            # Several targets (a chain, a cascade: deterministic, 1.0), or a policy with its
            # own call, whose probabilities the stage cannot see (None: not evaluable).
            call.chosen(1.0 if not policy.single_decision else None)
            return await policy.acall(call.request, send)
        decision = await policy.adecide(call.request)
        call.chosen(decision.propensity)
        cost = None
        try:
            response = await send(decision.target, call.request)
            cost = response.cost_usd
            return response
        finally:
            policy.settle(decision, cost)
    finally:
        call.restore()


def route_astream(
    router: PolicyRouter,
    ctx: CallContext,
    call_next: Callable[[CallContext], AsyncIterator[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    """The stream of a call addressed to a policy (any other stream passes through as it is,
    without a generator of this stage around it)."""
    if ctx.provider_name != POLICY_PROVIDER:
        return call_next(ctx)
    return _astream(router, ctx, call_next)


async def _astream(
    router: PolicyRouter,
    ctx: CallContext,
    call_next: Callable[[CallContext], AsyncIterator[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    policy = router._policy(ctx)
    call = PolicyCall(router, ctx)
    decision = None
    cost = None
    try:
        if policy.single_decision and type(policy).stream_targets is Policy.stream_targets:
            decision = await policy.adecide(call.request)
            call.chosen(decision.propensity)
            targets: Sequence[str] | None = (decision.target,)
        else:
            call.chosen(1.0)
            targets = await policy.astream_targets(call.request)
        if targets is None:
            # The policy must see answers to decide (a cascade): run it on fully consumed
            # streams, then replay the accepted answer.
            async def send(target: str, request: ChatRequest) -> ChatResponse:
                try:
                    return await _adrain(call_next(call.point(target, request)))
                except AigwError:
                    call.failed_target = target
                    raise

            for event in _replay(await policy.acall(call.request, send)):
                yield event
            return
        for index, target in enumerate(targets):
            delivered = False
            events = call_next(call.point(target, call.request))
            try:
                async for event in events:
                    if not delivered and type(event) is TextDelta:
                        delivered = True
                    elif type(event) is StreamEnd:
                        cost = event.response.cost_usd
                    yield event
                return
            except AigwError as exc:
                last = index == len(targets) - 1
                if delivered or last or not should_fall_back(exc):
                    raise
                call.failed_target = target
            finally:
                await AsyncIO.close(events)
    finally:
        if decision is not None:
            policy.settle(decision, cost)
        call.restore()


async def _adrain(events: AsyncIterator[StreamEvent]) -> ChatResponse:
    # Run the stream to its end (not just to its StreamEnd): a stream closed at its last
    # yield would log its attempt as cancelled.
    final: ChatResponse | None = None
    async for event in events:
        if type(event) is StreamEnd:
            final = event.response
    if final is None:  # the attempt stage raises first; kept for safety
        raise AigwError("a stream ended without its final event")
    return final


def _replay(response: ChatResponse) -> Iterable[StreamEvent]:
    if response.text:
        yield TextDelta(response.text)
    yield StreamEnd(response)
