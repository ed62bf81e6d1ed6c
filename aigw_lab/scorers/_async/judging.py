"""An LLM judge's scoring and its calls, written once for asyncio; the blocking versions
(`aigw_lab.scorers._sync.judging`) are generated from this file by ``.ci/unasync.py``.
`JudgeScorer` takes these functions as its methods (their first parameter is the judge).

What differs between the modes is in `aigw_lab.scorers.judge_io` (one class per mode):
an async baseline function, the two pairwise calls run concurrently, a log query off the
event loop.
"""

# unasync: ascore=score, acompare=compare, aask=ask, _aask=_ask, AsyncJudgeIO=SyncJudgeIO

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab.errors import AigwError
from aigw_lab.scorers.judge_io import AsyncJudgeIO, single_attempt, trace_cost

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.scorers.judge import JudgeScorer, _Asked
    from aigw_lab.types import ChatResponse, Score

__all__ = ["ascore", "acompare", "aask"]


async def ascore(judge: JudgeScorer, item: DatasetItem, response: ChatResponse) -> Score:
    """Grade ``response``, the answer a target gave to ``item``: one judge call, or for a
    pairwise judge a comparison with the baseline's answer (a baseline function that is
    async works only in async code). Experiments use the async version; the blocking one
    is for notebooks and scripts."""
    if judge.mode == "pairwise":
        baseline = await AsyncJudgeIO.baseline(judge._baseline_answer(item))
        return await judge.acompare(item, response.text, baseline, judged_call_id=response.call_id)
    system, user = judge._single_prompt(item, response)
    try:
        asked = await judge._aask(system, user, item, response.call_id)
    except AigwError as exc:
        return judge._failed(exc)
    return judge._graded(*asked)


async def acompare(
    judge: JudgeScorer,
    item: DatasetItem,
    answer: str,
    baseline: str | None,
    *,
    judged_call_id: str | None = None,
) -> Score:
    """Compare ``answer`` with ``baseline`` on ``item``: two judge calls, the answers in
    both orders (run concurrently when awaited). Value 1.0 (win: preferred in both orders),
    0.0 (loss: the baseline preferred in both), 0.5 (tie: a tie, or the two orders
    disagree, which is position bias at work). Identical answers tie without a call;
    no baseline answer scores None."""
    if (done := judge._settled(item, answer, baseline)) is not None:
        return done
    assert baseline is not None
    first, swapped = judge._pair_prompts(item, answer, baseline)
    try:
        asked_1, asked_2 = await AsyncJudgeIO.both(
            judge._aask(*first, item, judged_call_id, order="answer_first"),
            judge._aask(*swapped, item, judged_call_id, order="baseline_first"),
        )
    except AigwError as exc:
        return judge._failed(exc)
    return judge._compared(asked_1, asked_2)


async def aask(
    judge: JudgeScorer,
    system: str,
    user: str,
    item: DatasetItem,
    judged_call_id: str | None,
    *,
    order: str | None = None,
) -> _Asked:
    """Send one judge prompt; return the reply, its trace id (when the gateway logs) and
    the logical call's cost, retries included."""
    request = judge._request(system, user, item, judged_call_id, order)
    reply = await judge.gateway.achat(judge.model, **request)
    if single_attempt(reply):
        return judge._traced(reply, reply.cost_usd)
    # A query flushes the log first, which waits on the writer thread: off the loop.
    cost = await AsyncJudgeIO.off_loop(trace_cost, judge.gateway.log, reply)
    return judge._traced(reply, cost)
