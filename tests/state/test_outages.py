"""Redis unreachable, then back (a real redis-server killed and restarted empty): each
primitive fails open or closed as configured, logs one line when the outage starts and one
when it ends (never one per call), never crashes, and uses Redis again once it answers."""

from __future__ import annotations

import logging

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import AllAttemptsFailedError, RateLimitedError, SharedStateUnavailableError
from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.gateway.reliability import Retry
from aigw_lab.gateway.state import (
    Outage,
    RedisBucketStore,
    RedisBudgetStore,
    RedisCacheStore,
    RedisCircuitStore,
    SharedState,
)
from aigw_lab.server.errors import error_headers, http_error
from aigw_lab.testing.fakes import MockProvider

PRICES = {"mock/m1": Price(1.0, 2.0), "mock/m2": Price(1.0, 2.0)}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def down(own_redis_server):
    """A state on a server of this test; ``down.stop()``/``down.start()`` kill and restart."""
    state = SharedState.from_url(own_redis_server.url, prefix="o:", timeout=0.5)
    own_redis_server.state = state
    yield own_redis_server
    state.close()


def outage_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "aigw_lab.state"]


def gateway(*middleware, provider=None):
    provider = provider or MockProvider("mock", models=("m1", "m2"))
    return Gateway([provider], log=None, prices=PRICES, middleware=list(middleware)), provider


def test_rate_limits_failing_open_admit_during_the_outage_and_limit_again_after(down, caplog):
    clock = Clock()
    store = RedisBucketStore(down.state, outage=Outage("rate limits", "open", clock=clock))
    limiter = RateLimiter([{"requests_per_minute": 1}], mode="reject", store=store)
    gw, provider = gateway(limiter)
    gw.chat("mock/m1", "first")
    with pytest.raises(RateLimitedError):
        gw.chat("mock/m1", "over the limit")
    down.stop()
    with caplog.at_level(logging.WARNING, logger="aigw_lab.state"):
        for i in range(5):
            gw.chat("mock/m1", f"during {i}")  # admitted: no crash, no refusal
            clock.now += 0.3  # some calls inside the retry window, some after it
        assert len(provider.requests) == 6
        (line,) = outage_lines(caplog)
        assert "unreachable" in line and "rate limits fails open" in line
        down.start()  # empty: the buckets start full again
        clock.now += 5
        gw.chat("mock/m1", "back")
        with pytest.raises(RateLimitedError):
            gw.chat("mock/m1", "limited again")
    assert len(outage_lines(caplog)) == 2 and "reachable again" in outage_lines(caplog)[1]


def test_budgets_failing_closed_refuse_without_sending_and_recover(down, caplog):
    clock = Clock()
    store = RedisBudgetStore(down.state, outage=Outage("budgets", "closed", clock=clock))
    budget = Budget([Limit("gateway", 1.0, "day")], store=store)
    gw, provider = gateway(budget)
    gw.chat("mock/m1", "before")
    down.stop()
    with caplog.at_level(logging.WARNING, logger="aigw_lab.state"):
        for _ in range(3):
            with pytest.raises(SharedStateUnavailableError) as raised:
                gw.chat("mock/m1", "during")
        assert len(provider.requests) == 1  # nothing was sent
        assert len(outage_lines(caplog)) == 1
        down.start()
        clock.now += 5
        gw.chat("mock/m1", "after")
    assert len(provider.requests) == 2
    with caplog.at_level(logging.WARNING, logger="aigw_lab.server"):
        error = http_error(raised.value)  # what a client of `serve` sees
    assert error.kind == "busy" and error.retry_after and error.retry_after > 0
    assert b"retry-after" in {k.lower() for k, _ in error_headers(error)}
    assert not [r for r in caplog.records if r.name == "aigw_lab.server"]  # no line per call


def test_budgets_failing_open_admit_and_settle_nothing(down):
    store = RedisBudgetStore(down.state, outage=Outage("budgets", "open"))
    budget = Budget([Limit("gateway", 1.0, "day")], store=store)
    gw, provider = gateway(budget)
    down.stop()
    gw.chat("mock/m1", "during")
    assert len(provider.requests) == 1


def test_the_cache_failing_open_is_a_miss_and_keeps_nothing(down, caplog):
    clock = Clock()
    store = RedisCacheStore(down.state, outage=Outage("the exact cache", "open", clock=clock))
    gw, provider = gateway(ExactCache(store))
    down.stop()
    with caplog.at_level(logging.WARNING, logger="aigw_lab.state"):
        assert [gw.chat("mock/m1", "same").cache_status for _ in range(2)] == ["miss"] * 2
    assert len(provider.requests) == 2 and len(outage_lines(caplog)) == 1


def test_the_cache_failing_closed_refuses(down):
    store = RedisCacheStore(down.state, outage=Outage("the exact cache", "closed"))
    gw, provider = gateway(ExactCache(store))
    down.stop()
    with pytest.raises(SharedStateUnavailableError):
        gw.chat("mock/m1", "same")
    assert provider.requests == []


@pytest.mark.parametrize(("fail", "sent"), [("open", 1), ("closed", 0)])
def test_breakers_fail_open_as_closed_circuits_and_closed_as_open_ones(down, fail, sent):
    store = RedisCircuitStore(down.state, outage=Outage("circuit breakers", fail))
    health = HealthTracker(failure_threshold=1, cooldown=60.0, store=store)
    retry = Retry(max_attempts=1, fallbacks={"mock/m1": ["mock/m2"]}, health=health)
    gw, provider = gateway(retry)
    down.stop()
    if sent:
        assert gw.chat("mock/m1", "hi").model == "m1"
    else:
        with pytest.raises(AllAttemptsFailedError) as raised:
            gw.chat("mock/m1", "hi")
        assert {e.error_type for e in raised.value.errors} == {"circuit_open"}
    assert len(provider.requests) == sent
