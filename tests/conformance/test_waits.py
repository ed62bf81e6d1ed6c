"""A task cancelled while it waits (in a rate limiter's queue, or as a cache follower of an
identical call in flight) leaves nothing behind: no queue position, no waiter, no budget
reservation, and one ``cancelled`` row. Queue and follower waits: async modes only, since a
thread blocked in a wait cannot be cancelled from outside (its caller's Ctrl-C is covered by
the ``cancel`` of the other tests, which interrupts inside the call). A retry's backoff wait
takes an injected sleep, so there every mode is cancelled: the task, or Ctrl-C in the sleep.

Each test builds its own gateway: a limiter that queues must wait on real timers (its
injected sleeps would return at once), with its clock frozen so that nothing refills."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aigw_lab.gateway import (
    Budget,
    ExactCache,
    Gateway,
    HealthTracker,
    Limit,
    RateLimiter,
    Retry,
)

from .conftest import modes
from .doubles import Step, Upstream, server_error
from .modes import PROMPT, Mode, Seen
from .stacks import PRICE, TOKENS_CAPACITY

ASYNC = modes("achat", "astream")
#: Half the token bucket and a little more: a second such call must queue behind the first.
BIG = TOKENS_CAPACITY // 2 + 1_000


def _frozen() -> float:
    return 1_000.0


class Pipeline:
    """A gateway with the primitives a test asks for, in front of one `Upstream`."""

    def __init__(self, log: Path, *, budget: bool, limiter: bool, cache: bool) -> None:
        self.upstream = Upstream()
        self.budget = Budget([Limit("gateway", 1_000.0, "total")], tokenizer="estimate")
        self.limiter = RateLimiter(
            [{"key": [], "tokens_per_minute": TOKENS_CAPACITY}],
            mode="wait",
            timeout=None,
            clock=_frozen,
        )
        self.cache = ExactCache()
        middleware: list[Any] = []
        for on, primitive in ((budget, self.budget), (limiter, self.limiter), (cache, self.cache)):
            if on:
                middleware.append(primitive)
        self.has_budget = budget
        self.gateway = Gateway(
            [self.upstream],
            log=str(log),
            middleware=middleware,
            prices={"up/m": PRICE},
        )

    def statuses(self) -> list[tuple[int, str]]:
        frame = self.gateway.query("SELECT attempt, status FROM calls ORDER BY timestamp")
        return [(int(a), s) for a, s in zip(frame["attempt"], frame["status"], strict=True)]

    def check_budget_clear(self) -> None:
        if self.has_budget:
            (state,) = self.budget.snapshot()
            assert state["reserved_usd"] == pytest.approx(0.0, abs=1e-12)
            assert state["in_flight"] == 0


@pytest.fixture(params=[False, True], ids=["alone", "behind-a-budget"])
def budget_in_front(request: pytest.FixtureRequest) -> bool:
    return request.param


async def _until(condition: Any, what: str) -> None:
    for _ in range(5_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.fixture
def pipelines(new_log_path: Path) -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for pipeline in made:
        pipeline.gateway.close()


@pytest.mark.parametrize("mode", ASYNC, ids=str)
def test_a_task_cancelled_in_the_rate_limit_queue_gives_up_its_place(
    mode: Mode, budget_in_front: bool, new_log_path: Path, pipelines: list[Pipeline]
) -> None:
    p = Pipeline(new_log_path, budget=budget_in_front, limiter=True, cache=False)
    pipelines.append(p)
    p.upstream.script(Step(hold=True))

    async def scenario() -> Seen:
        first = asyncio.ensure_future(mode.acall(p.gateway, "up/m", max_tokens=BIG))
        await p.upstream.await_entered()
        queued = asyncio.ensure_future(mode.acall(p.gateway, "up/m", "other", max_tokens=BIG))
        await _until(lambda: p.limiter.snapshot()["waiting"] == 1, "the second call queues")
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        snapshot = p.limiter.snapshot()
        assert snapshot["waiting"] == 0
        assert [b["waiting"] for b in snapshot["buckets"]] == [0]
        p.upstream.release()
        return await first

    first = asyncio.run(scenario())
    assert first.error is None
    (bucket,) = p.limiter.snapshot()["buckets"]
    assert bucket["available"] == TOKENS_CAPACITY - first.response.usage.total_tokens
    p.check_budget_clear()
    assert sorted(p.statuses()) == [(0, "cancelled"), (1, "ok")]
    # The place it gave up is free: the next big call goes at once.
    assert asyncio.run(mode.acall(p.gateway, "up/m", "third", max_tokens=BIG)).error is None


@pytest.mark.parametrize("mode", ASYNC, ids=str)
def test_a_cache_follower_cancelled_while_it_waits_leaves_no_waiter(
    mode: Mode, budget_in_front: bool, new_log_path: Path, pipelines: list[Pipeline]
) -> None:
    p = Pipeline(new_log_path, budget=budget_in_front, limiter=False, cache=True)
    pipelines.append(p)
    p.upstream.script(Step(hold=True))
    leader_mode = Mode("achat")  # only plain calls lead a flight; streams follow them

    async def scenario() -> Seen:
        leader = asyncio.ensure_future(leader_mode.acall(p.gateway, "up/m", PROMPT))
        await p.upstream.await_entered()
        follower = asyncio.ensure_future(mode.acall(p.gateway, "up/m", PROMPT))
        await _until(lambda: p.cache.stats().waiting == 1, "the identical call follows")
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        assert p.cache.stats().waiting == 0
        p.upstream.release()
        return await leader

    leader = asyncio.run(scenario())
    assert leader.error is None
    stats = p.cache.stats()
    assert (stats.waiting, stats.in_flight, stats.coalesced) == (0, 0, 0)
    p.check_budget_clear()
    assert sorted(p.statuses()) == [(0, "cancelled"), (1, "ok")]
    again = asyncio.run(mode.acall(p.gateway, "up/m", PROMPT))
    assert again.response is not None and again.response.cache_status == "hit"
    assert len(p.upstream.requests) == 1


@pytest.mark.parametrize("mode", ASYNC, ids=str)
def test_when_the_leader_is_cancelled_a_follower_goes_upstream_itself(
    mode: Mode, budget_in_front: bool, new_log_path: Path, pipelines: list[Pipeline]
) -> None:
    p = Pipeline(new_log_path, budget=budget_in_front, limiter=False, cache=True)
    pipelines.append(p)
    p.upstream.script(Step(hold=True))

    async def scenario() -> Seen:
        leader = asyncio.ensure_future(Mode("achat").acall(p.gateway, "up/m", PROMPT))
        await p.upstream.await_entered()
        follower = asyncio.ensure_future(mode.acall(p.gateway, "up/m", PROMPT))
        await _until(lambda: p.cache.stats().waiting == 1, "the identical call follows")
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        p.upstream.release()
        return await follower

    follower = asyncio.run(scenario())
    assert follower.error is None and follower.text == "alpha beta gamma delta"
    stats = p.cache.stats()
    assert (stats.waiting, stats.in_flight) == (0, 0)
    p.check_budget_clear()
    assert sorted(p.statuses()) == [(1, "cancelled"), (1, "ok")]
    assert len(p.upstream.requests) == 2


class _Backoff:
    """A retry's sleeps: record that the wait began, then never end by themselves (async:
    wait to be cancelled) or be interrupted at once (sync: Ctrl-C during the wait)."""

    def __init__(self) -> None:
        self.began = 0

    def sleep(self, seconds: float) -> None:
        self.began += 1
        raise KeyboardInterrupt

    async def async_sleep(self, seconds: float) -> None:
        self.began += 1
        await asyncio.Event().wait()


class _Top:
    def random(self) -> float:
        return 1.0  # the longest backoff: there is always a wait to cancel


@pytest.mark.parametrize("mode", modes(), ids=str)
def test_a_call_cancelled_in_a_retry_backoff_leaves_nothing_held(
    mode: Mode, budget_in_front: bool, new_log_path: Path, pipelines: list[Pipeline]
) -> None:
    backoff = _Backoff()
    retry = Retry(
        max_attempts=3,
        base_delay=5.0,
        health=HealthTracker(failure_threshold=50, clock=_frozen),
        clock=_frozen,
        sleep=backoff.sleep,
        async_sleep=backoff.async_sleep,
        rng=_Top(),  # type: ignore[arg-type]
    )
    p = Pipeline(new_log_path, budget=budget_in_front, limiter=True, cache=False)
    p.gateway.close()
    p.upstream.default = Step(fail=server_error)
    p.gateway = Gateway(
        [p.upstream],
        log=str(new_log_path),
        middleware=[m for m, on in ((p.budget, budget_in_front), (p.limiter, True)) if on]
        + [retry],
        prices={"up/m": PRICE},
    )
    pipelines.append(p)
    if mode.is_async:

        async def scenario() -> None:
            task = asyncio.ensure_future(mode.acall(p.gateway, "up/m"))
            await _until(lambda: backoff.began == 1, "the retry waits")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
    else:
        with pytest.raises(KeyboardInterrupt):
            mode.call_raising(p.gateway, "up/m")
    assert backoff.began == 1 and len(p.upstream.requests) == 1
    assert p.statuses() == [(1, "error")]  # the failed attempt; nothing else was sent
    p.check_budget_clear()
    (tokens,) = p.limiter.snapshot()["buckets"]
    assert p.limiter.snapshot()["waiting"] == 0
    assert tokens["available"] == TOKENS_CAPACITY  # a failed call gives its estimate back
    (circuit,) = retry.health.snapshot().values()
    assert (circuit["total_failures"], circuit["total_successes"]) == (1, 0)
