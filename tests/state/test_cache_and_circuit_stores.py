"""`RedisCacheStore` and `RedisCircuitStore` against a real redis-server: what the memory
stores do, and what only a shared store must do (an answer one process stored is a hit in
another; a breaker one tracker opened is open for every tracker on the server)."""

from __future__ import annotations

import time

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.cache_stores import CacheStore
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.health_store import CircuitStore
from aigw_lab.gateway.state import RedisCacheStore, RedisCircuitStore
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import ChatResponse, Usage
from tests.gateway.test_reliability_health_store import (
    Clock,
    test_breaker_logic_runs_the_same_over_any_store,
)


def answer(text="hello", **fields):
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=2),
        provider="mock",
        model="m1",
        **fields,
    )


def test_the_stores_follow_their_protocols(shared):
    assert isinstance(RedisCacheStore(shared), CacheStore)
    assert isinstance(RedisCircuitStore(shared), CircuitStore)


def test_cache_entries_round_trip_every_field_between_stores(shared):
    stored = ChatResponse(
        text="é and text",
        finish_reason="tool_calls",
        usage=Usage(
            input_tokens=100, output_tokens=20, cache_read_tokens=30, cache_write_tokens=4,
            reasoning_tokens=5,
        ),
        provider="mock", model="m1-2025", cost_usd=0.25, response_id="resp-1",
        tool_calls=({"id": "c1", "type": "function", "function": {"name": "f"}},),
        simulated=True,
    )  # fmt: skip
    RedisCacheStore(shared).set("k", stored, None)
    assert RedisCacheStore(shared).get("k") == stored  # another process's store


def test_cache_entries_expire_replace_delete_and_clear(shared):
    store = RedisCacheStore(shared)
    store.set("short", answer("s"), 0.05)
    store.set("k", answer("old"), None)
    store.set("k", answer("new"), None)
    assert store.get("k").text == "new"
    time.sleep(0.1)  # Redis's own expiry (no timing is asserted: only that it expired)
    assert store.get("short") is None and len(store) == 1
    assert store.stats().entries == 1 and store.stats().bytes > 0
    assert store.delete("k") and not store.delete("k")
    store.set("a", answer("a"), 60)
    store.clear()
    assert len(store) == 0
    with pytest.raises(Exception, match="ttl"):
        store.set("bad", answer(), 0)


def test_clear_leaves_other_prefixes_alone(redis_server):
    from aigw_lab.gateway.state import SharedState

    mine = SharedState.from_url(redis_server.url, prefix="mine:")
    theirs = SharedState.from_url(redis_server.url, prefix="theirs:")
    RedisCacheStore(theirs).set("k", answer(), None)
    RedisCacheStore(mine).clear()
    assert RedisCacheStore(theirs).get("k") is not None


def test_an_answer_paid_by_one_gateway_is_a_hit_in_another(shared, log):
    prices = {"mock/m1": Price(1.0, 2.0)}
    first, second = MockProvider("mock", models=("m1",)), MockProvider("mock", models=("m1",))
    one = Gateway([first], log=log, prices=prices, middleware=[ExactCache(RedisCacheStore(shared))])
    two = Gateway(
        [second], log=log, prices=prices, middleware=[ExactCache(RedisCacheStore(shared))]
    )
    assert one.chat("mock/m1", "same question").text == two.chat("mock/m1", "same question").text
    assert len(first.requests) == 1 and second.requests == []


def test_breaker_logic_runs_the_same_over_the_redis_store(shared):
    test_breaker_logic_runs_the_same_over_any_store(lambda: RedisCircuitStore(shared))


def test_a_breaker_opened_by_one_tracker_is_open_for_another(shared):
    clock = Clock()
    first = HealthTracker(
        failure_threshold=2, cooldown=5.0, clock=clock, store=RedisCircuitStore(shared)
    )
    second = HealthTracker(
        failure_threshold=2, cooldown=5.0, clock=clock, store=RedisCircuitStore(shared)
    )
    first.record_failure("a/m")
    second.record_failure("a/m")  # the two failures count together
    assert first.state("a/m") == "open" and not second.allow("a/m")
    clock.now += 5.0
    assert second.allow("a/m")  # second takes the probe ...
    assert not first.allow("a/m")  # ... so first may not send one too
    second.record_success("a/m")
    assert first.state("a/m") == "closed"
    assert first.snapshot()["a/m"]["opens"] == 1


def test_concurrent_failures_from_threads_are_all_counted(shared):
    import threading

    health = [
        HealthTracker(failure_threshold=1000, store=RedisCircuitStore(shared)) for _ in range(4)
    ]

    def fail(tracker):
        for _ in range(25):
            tracker.record_failure("a/m")

    threads = [threading.Thread(target=fail, args=(h,)) for h in health]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert health[0].snapshot()["a/m"]["total_failures"] == 100  # no lost update
