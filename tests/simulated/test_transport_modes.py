"""The in-process transport's waiting in both modes. It is written once for asyncio
(`aigw_lab/sim/_async/transport.py`) with the blocking version generated, so each case runs
through an ``httpx.Client`` and an ``httpx.AsyncClient``, and checks that each mode waits
with its own sleep only (a blocking sleep on an event loop would stall every task)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aigw_lab.sim.fleet import SimCall

from .helpers import SleepRecorder, chat_body, make_fleet

LONG = "Explain the water cycle to a curious ten-year-old"
MODES = ("sync", "async")


def _fleet(**kwargs: Any):
    blocking, awaited = SleepRecorder(), SleepRecorder()
    fleet = make_fleet(sleep=blocking, async_sleep=awaited.async_, **kwargs)
    return fleet, blocking, awaited


async def _post(fleet, mode: str, body: dict[str, Any], **client: Any) -> httpx.Response:
    if mode == "sync":
        with httpx.Client(transport=fleet.transport(), base_url="http://sim.test", **client) as c:
            response = c.post("/v1/chat/completions", json=body)
            response.read()
            return response
    async with httpx.AsyncClient(
        transport=fleet.transport(), base_url="http://sim.test", **client
    ) as c:
        response = await c.post("/v1/chat/completions", json=body)
        await response.aread()
        return response


def _waits(mode: str, blocking: SleepRecorder, awaited: SleepRecorder) -> list[float]:
    used, unused = (blocking, awaited) if mode == "sync" else (awaited, blocking)
    assert unused.calls == [], "a mode slept with the other mode's sleep"
    return used.calls


@pytest.mark.parametrize("mode", MODES)
async def test_a_whole_answer_waits_ttft_plus_generation_in_both_modes(mode):
    fleet, blocking, awaited = _fleet(time_scale=2.0, seed=9)
    response = await _post(fleet, mode, chat_body("sim-large", LONG))
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
    plan = make_fleet(seed=9).plan(SimCall("openai", "sim-large", (("user", LONG),)))
    expected = 2.0 * (plan.ttft_s + plan.output_tokens / plan.tokens_per_s)
    assert _waits(mode, blocking, awaited) == [pytest.approx(expected)]


@pytest.mark.parametrize("mode", MODES)
async def test_a_stream_is_paced_token_by_token_in_both_modes(mode):
    fleet, blocking, awaited = _fleet(time_scale=1.0, seed=9)
    response = await _post(fleet, mode, chat_body("sim-large", LONG, stream=True))
    assert response.text.rstrip().endswith("data: [DONE]")
    call = SimCall("openai", "sim-large", (("user", LONG),), stream=True)
    plan = make_fleet(seed=9).plan(call)
    waits = _waits(mode, blocking, awaited)
    assert waits[0] == pytest.approx(plan.ttft_s * 0.3)  # before the headers
    assert waits[2:] == [pytest.approx(1 / plan.tokens_per_s)] * (plan.output_tokens - 1)
    assert sum(waits) == pytest.approx(plan.ttft_s + (plan.output_tokens - 1) / plan.tokens_per_s)


@pytest.mark.parametrize("mode", MODES)
async def test_a_hang_waits_the_read_timeout_or_hang_s_then_times_out_in_both_modes(mode):
    fleet, blocking, awaited = _fleet(faults={"timeout": 1.0}, time_scale=0.5)
    with pytest.raises(httpx.ReadTimeout, match="simulated timeout"):
        await _post(fleet, mode, chat_body("sim-small", "hi"), timeout=httpx.Timeout(5.0, read=3.0))
    assert _waits(mode, blocking, awaited) == [1.5]

    fleet, blocking, awaited = _fleet(faults={"timeout": 1.0}, time_scale=1.0, hang_s=42.0)
    with pytest.raises(httpx.ReadTimeout):
        await _post(fleet, mode, chat_body("sim-small", "hi"), timeout=None)
    assert _waits(mode, blocking, awaited) == [42.0]


def test_the_transport_waits_through_the_generated_functions():
    # A hand-written method shadowing one of them would escape the unasync check.
    from aigw_lab.sim._async import transport as awaited
    from aigw_lab.sim._sync import transport as blocking
    from aigw_lab.sim.transport import PacedStream, SimulatedTransport

    assert SimulatedTransport.handle_request is blocking.handle_request
    assert SimulatedTransport.handle_async_request is awaited.handle_async_request
    assert (PacedStream.__iter__, PacedStream.__aiter__) == (
        blocking.iter_paced,
        awaited.aiter_paced,
    )
