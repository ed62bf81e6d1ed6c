"""Shared state on Redis in async modes: the stores' round trips run on the shared state's
threads (`SharedState.io`, through `AsyncIO.offload`), never on the event loop, so a slow
Redis holds up the calls that need it and nothing else; and a cache miss costs fewer round
trips. A loopback proxy in front of a real redis-server holds replies and counts them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.gateway.reliability import Retry
from aigw_lab.gateway.state import SharedState, StateSettings
from aigw_lab.testing.fakes import MockProvider
from tests.gateway.test_cache_modes import MODES, Callers, Gated, status_counts, wait_for
from tests.state.redis_proxy import RedisProxy

PRICES = {"mock/m1": Price(1.0, 2.0), "mock/m2": Price(1.0, 2.0)}


@pytest.fixture
def proxy(redis_server):
    proxy = RedisProxy(redis_server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def stores(proxy, request):
    # A long timeout: a store must wait for a held reply, never count Redis as down.
    settings = StateSettings.from_table(
        {"backend": "redis", "url_env": "U", "prefix": f"ol{id(request)}:", "timeout": 30},
        {"U": proxy.url},
    )
    shared = settings.stores()
    yield shared
    shared.state.close()


def shared_gateway(shared) -> Gateway:
    """Every Redis-backed primitive: a rate limit, a budget, the exact cache, breakers."""
    health = HealthTracker(failure_threshold=5, store=shared.circuits())
    middleware = [
        RateLimiter(
            [{"requests_per_second": 1e6, "tokens_per_second": 1e9}], store=shared.buckets()
        ),
        Budget([Limit("gateway", 1e6, "day")], store=shared.budgets()),
        ExactCache(shared.cache()),
        Retry(max_attempts=1, fallbacks={"mock/m1": ["mock/m2"]}, health=health),
    ]
    return Gateway(
        [MockProvider("mock", models=("m1", "m2"))], log=None, prices=PRICES, middleware=middleware
    )


def test_the_loop_serves_other_calls_while_redis_holds_a_reply(stores, proxy):
    shared = shared_gateway(stores)
    local = Gateway([MockProvider("mock", models=("m1",))], log=None, prices=PRICES)

    async def main():
        await shared.achat("mock/m1", "warm up", max_tokens=8)  # scripts loaded, pool open
        proxy.hold()
        call = asyncio.ensure_future(shared.achat("mock/m1", "held", max_tokens=8))
        # This loop runs only if the call above does not block it while Redis holds it.
        while proxy.held == 0:
            await asyncio.sleep(0.001)
        others = [await local.achat("mock/m1", f"other {i}", max_tokens=8) for i in range(20)]
        still_waiting = not call.done() and proxy.held > 0
        proxy.release()
        return still_waiting, others, await call

    still_waiting, others, answer = asyncio.run(main())
    assert still_waiting
    assert len(others) == 20 and all(o.finish_reason == "stop" for o in others)
    assert answer.finish_reason == "stop" and answer.text
    shared.close()
    local.close()


@pytest.mark.parametrize("mode", ["achat", "astream"])
def test_a_failed_call_settles_off_the_loop_too(stores, proxy, mode):
    """An upstream failing every call (an outage) must not put Redis back on the loop: the
    stores settle a failure on their threads as they settle a success."""
    from aigw_lab.errors import InvalidRequestError
    from aigw_lab.testing.fakes import FunctionProvider

    def fail(request):
        if "held" in request.messages[-1].content:
            proxy.hold()  # from here on Redis holds its replies: the settlements wait
        raise InvalidRequestError("no")

    middleware = [
        RateLimiter([{"requests_per_second": 1e6}], store=stores.buckets()),
        Budget([Limit("gateway", 1e6, "day")], store=stores.budgets()),
        ExactCache(stores.cache()),
    ]
    shared = Gateway([FunctionProvider(fail, "mock", models=("m1",))], log=None,
                     prices=PRICES, middleware=middleware)  # fmt: skip
    local = Gateway([MockProvider("mock", models=("m1",))], log=None, prices=PRICES)

    async def call(prompt):
        if mode == "achat":
            return await shared.achat("mock/m1", prompt, max_tokens=8)
        async for _ in shared.astream("mock/m1", prompt, max_tokens=8):
            pass

    async def main():
        with pytest.raises(InvalidRequestError):
            await call("warm up")
        failing = asyncio.ensure_future(call("held"))
        while proxy.held == 0:
            await asyncio.sleep(0.001)
        others = [await local.achat("mock/m1", f"other {i}", max_tokens=8) for i in range(20)]
        still_waiting = not failing.done() and proxy.held > 0
        proxy.release()
        with pytest.raises(InvalidRequestError):
            await failing
        return still_waiting, others

    still_waiting, others = asyncio.run(main())
    assert still_waiting and len(others) == 20
    shared.close()
    local.close()


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_a_cache_miss_costs_eight_round_trips_and_a_hit_five(stores, proxy, mode):
    gw = shared_gateway(stores)

    def call(prompt):
        if mode == "chat":
            return gw.chat("mock/m1", prompt, max_tokens=8)
        return asyncio.run(gw.achat("mock/m1", prompt, max_tokens=8))

    call("warm up")
    call("first miss")  # the budget's account and the breaker's record exist from here on
    proxy.reset()
    for i in range(5):
        call(f"miss {i}")
    misses = proxy.sends / 5
    proxy.reset()
    for _ in range(5):
        call("miss 0")
    hits = proxy.sends / 5
    gw.close()
    # Budget reserve, limit arrive, cache get, breaker peek, breaker record, cache set,
    # limit charge, budget settle: one round trip each. Before this, a leader looked in the
    # cache twice (9). A hit: reserve, arrive, get, charge, settle.
    assert (misses, hits) == (8.0, 5.0)


@pytest.mark.parametrize("leader", ["chat", "achat"])
def test_one_flight_on_a_shared_cache_whichever_mode_leads(stores, leader):
    """The leader's `admit` runs on a store thread in async modes: its flight still belongs
    to its loop, so threads and tasks share one upstream call as with a memory store."""
    provider = Gated("shared answer")
    cache = ExactCache(stores.cache())
    with Gateway([provider], middleware=[cache], prices=PRICES) as gw:
        callers = Callers(gw)
        callers.start("leader", leader)
        wait_for(lambda: cache.stats().in_flight == 1, "the leader's flight")
        followers = [f"{mode}-{i}" for mode in MODES for i in range(2)]
        for name in followers:
            callers.start(name, name.split("-")[0])
        wait_for(lambda: cache.stats().waiting == len(followers), "every follower waiting")
        provider.gate.set()
        results = callers.finish()
        counts = status_counts(gw)
    assert results == dict.fromkeys(["leader", *followers], "shared answer")
    assert len(provider.requests) == 1
    assert counts == {("miss", "ok"): 1, ("hit", "ok"): 8}


def test_a_shared_state_runs_store_calls_on_its_own_threads(redis_server):
    state = SharedState.from_url(redis_server.url, prefix="threads:")
    assert state.io is not None
    name = state.io.submit(lambda: threading.current_thread().name).result()
    assert name.startswith("aigw-redis")
    state.close()
    state.close()  # idempotent
    with pytest.raises(RuntimeError):
        state.io.submit(print)


def test_threads_of_one_process_never_lose_a_breaker_change_to_each_other(shared):
    """The async drivers record outcomes from many store threads at once: changes of one
    target queue in the process instead of racing each other's compare-and-set (which cost
    CPU and, at 64 calls in flight, gave up after 50 tries)."""
    from concurrent.futures import ThreadPoolExecutor

    from aigw_lab.gateway.health import HealthTracker
    from aigw_lab.gateway.state import RedisCircuitStore

    store = RedisCircuitStore(shared)
    swaps = []
    swap = store._swap

    def counted(*args, **kwargs):
        swaps.append(1)
        return swap(*args, **kwargs)

    store._swap = counted
    tracker = HealthTracker(failure_threshold=5, store=store)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: tracker.record_success("mock/m1"), range(400)))
    assert tracker.snapshot()["mock/m1"]["total_successes"] == 400
    assert len(swaps) == 400  # one compare-and-set per change: none lost and run again
