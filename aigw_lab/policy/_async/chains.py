"""How the policies that call several targets answer one request (`FallbackChain`,
`Cascade`): written once for asyncio; their sync ``call`` is generated from this file
(`.ci/unasync.py`). Every target is called through ``send``, so each is a logged attempt.
"""

# unasync: fallback_acall=fallback_call, cascade_acall=cascade_call, _ascore=_score
# unasync: AsyncSend=Send

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab.errors import AigwError
from aigw_lab.gateway.health import should_fall_back

if TYPE_CHECKING:
    from aigw_lab.policy.base import AsyncSend
    from aigw_lab.policy.cascade import Cascade
    from aigw_lab.policy.fallback import FallbackChain
    from aigw_lab.types import ChatRequest, ChatResponse

__all__ = ["fallback_acall", "cascade_acall"]


async def fallback_acall(
    chain: FallbackChain,
    request: ChatRequest,
    send: AsyncSend,
) -> ChatResponse:
    """Try the chain's targets in order; the first answer wins."""
    errors: list[AigwError] = []
    for target in chain.chain:
        try:
            return await send(target, request)
        except AigwError as exc:
            if not should_fall_back(exc):
                raise
            errors.append(exc)
    raise chain._all_failed(errors)


async def cascade_acall(
    cascade: Cascade,
    request: ChatRequest,
    send: AsyncSend,
) -> ChatResponse:
    """Ask each step's target in turn until one's answer is accepted; the last step always
    answers. The answer returned carries what the whole cascade cost."""
    paid: list[ChatResponse] = []
    for step in cascade.steps[:-1]:
        response = await send(step.target, request)
        paid.append(response)
        consistency = cascade._self_consistency(step)
        if consistency is not None:
            sample = consistency.sample_request(request)
            others = [await send(step.target, sample) for _ in range(consistency.k - 1)]
            paid.extend(others)
            value = consistency.agreement(response, others)
        else:
            value = await cascade._ascore(step, request, response)
        if value >= step.threshold:  # type: ignore[operator]
            return cascade._finish(response, paid)
    response = await send(cascade.steps[-1].target, request)
    paid.append(response)
    return cascade._finish(response, paid)
