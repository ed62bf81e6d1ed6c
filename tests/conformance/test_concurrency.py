"""Calls in parallel (threads for the sync modes, tasks for the async ones), half of them
identical so caches coalesce them: each is still logged, each attempt once, and every
primitive is left settled (no reservation, queue place, waiter or flight behind)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from .checks import check_budget_settled, check_one_row_per_attempt
from .modes import Mode, Seen
from .stacks import Stack

CALLS = 12


def prompts() -> list[str]:
    return [f"question {i}" if i % 2 else "the same question" for i in range(CALLS)]


def run_parallel(mode: Mode, stack: Stack) -> list[Seen]:
    if mode.is_async:

        async def all_at_once() -> list[Seen]:
            calls = [mode.acall(stack.gateway, stack.address, p) for p in prompts()]
            return list(await asyncio.gather(*calls))

        return asyncio.run(all_at_once())
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda p: mode.call(stack.gateway, stack.address, p), prompts()))


def test_parallel_calls_are_each_logged_and_leave_nothing_held(mode: Mode, stack: Stack) -> None:
    seen = run_parallel(mode, stack)
    assert [s.error for s in seen] == [None] * CALLS
    assert all(s.text == "alpha beta gamma delta" for s in seen)
    traces = check_one_row_per_attempt(stack, calls=CALLS)
    assert all(trace[-1]["status"] == "ok" for trace in traces.values())
    if stack.budget is not None:
        assert check_budget_settled(stack) > 0.0
    if stack.limiter is not None:
        assert stack.limiter.snapshot()["waiting"] == 0
        requests = stack.buckets()["requests_per_minute"]
        assert requests == pytest.approx(1000 - len(stack.upstream.requests))
    if stack.cache is not None:
        stats = stack.cache_stats()
        assert getattr(stats, "waiting", 0) == 0 and getattr(stats, "in_flight", 0) == 0
    # Never more than one request per call and step (how many identical calls a cache
    # shares depends on timing, and streams never lead a shared flight: not checked).
    per_call = 2 if stack.name == "route-cascade" else 1
    assert len(stack.upstream.requests) <= CALLS * per_call
