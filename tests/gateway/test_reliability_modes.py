"""Retry, fallback and circuit breaking in every call mode (chat, achat, stream, astream).

The loops over attempts are written once for asyncio and the sync ones generated
(`aigw_lab.gateway._async.retry`); these tests hold all four to the same behaviour. Time
never passes: the clock moves only when a fake sleep is called, and the sync modes must use
the injected ``sleep`` and the async ones the injected ``async_sleep``.
"""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab.errors import (
    AllAttemptsFailedError,
    InvalidRequestError,
    QuotaExceededError,
    RateLimitedError,
    StreamInterruptedError,
)
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.reliability import Retry
from tests._call_modes import (
    MODES,
    STREAM_MODES,
    CutAfterText,
    call_in_mode,
    read_until_error,
)
from tests.gateway._retry_helpers import (
    Draws,
    FakeTime,
    gateway,
    mocks,
    retry,
    rows,
    server_error,
)


@pytest.fixture
def time_():
    return FakeTime()


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def test_a_transient_failure_is_retried_after_the_backoff(log, time_, mode):
    (a,) = mocks("a")
    a.enqueue(server_error(), "hello there")
    response, texts = call_in_mode(gateway(log, [a], retry(time_)), mode, "a/m")
    assert "".join(texts) == "hello there" and response.attempts == 2
    assert time_.waits(mode) == [0.25]  # draw 0.5 of the first cap, 0.5 s
    df = rows(log)
    assert list(df.status) == ["error", "ok"]
    assert df.stream.tolist() == [mode in STREAM_MODES] * 2


def test_retry_after_is_waited_with_the_modes_sleep(log, time_, mode):
    (a,) = mocks("a")
    a.enqueue(RateLimitedError("slow", retry_after=4.0), "ok")
    response, _ = call_in_mode(gateway(log, [a], retry(time_)), mode, "a/m")
    assert response.text == "ok" and time_.waits(mode) == [4.0]


def test_a_fallback_follows_the_chain_and_is_named_in_the_log(log, time_, mode):
    a, b = mocks("a", "b")
    a.enqueue(QuotaExceededError("no credit"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}))
    response, texts = call_in_mode(gw, mode, "a/m")
    assert response.provider == "b" and texts == ["ok"]
    assert rows(log).fallback_from.tolist()[1:] == ["a/m"]
    assert time_.waits(mode) == []  # a quota moves on at once


def test_every_target_failing_raises_all_attempts_failed(log, time_, mode):
    a, b = mocks("a", "b")
    a.enqueue(server_error(), server_error())
    b.enqueue(server_error("b"), server_error("b"))
    gw = gateway(log, [a, b], retry(time_, max_attempts=2, fallbacks={"a/m": ["b/m"]}))
    with pytest.raises(AllAttemptsFailedError) as info:
        call_in_mode(gw, mode, "a/m")
    assert len(info.value.errors) == 4
    assert len(time_.waits(mode)) == 2  # one backoff per target
    assert rows(log).provider_name.tolist() == ["a", "a", "b", "b"]


def test_an_invalid_request_is_neither_retried_nor_fallen_back(log, time_, mode):
    a, b = mocks("a", "b")
    a.enqueue(InvalidRequestError("bad"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"default": ["b/m"]}))
    with pytest.raises(InvalidRequestError):
        call_in_mode(gw, mode, "a/m")
    assert b.requests == [] and time_.waits(mode) == []


def test_no_wait_is_started_that_would_end_past_the_deadline(log, time_, mode):
    a, b = mocks("a", "b")
    a.enqueue(RateLimitedError("slow", retry_after=8.0))
    gw = gateway(log, [a, b], retry(time_, deadline=5.0, fallbacks={"a/m": ["b/m"]}))
    response, _ = call_in_mode(gw, mode, "a/m")
    assert response.provider == "b" and time_.waits(mode) == []
    assert b.requests[0].timeout == 5.0  # what remains of the deadline (no time passed)


def test_an_open_circuit_is_skipped_without_a_request(log, time_, mode):
    a, b = mocks("a", "b")
    health = HealthTracker(failure_threshold=1, cooldown=30.0, clock=time_.clock)
    health.record_failure("a/m")
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}, health=health))
    response, _ = call_in_mode(gw, mode, "a/m")
    assert response.provider == "b" and a.requests == []
    assert health.state("b/m") == "closed" and health.state("a/m") == "open"


@pytest.mark.parametrize("mode", STREAM_MODES)
def test_a_retry_never_repeats_text_already_delivered(log, time_, mode):
    a = CutAfterText("a", models=("m",))
    (b,) = mocks("b")
    health = HealthTracker(failure_threshold=1, clock=time_.clock)
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}, health=health))
    received = []
    with pytest.raises(StreamInterruptedError):
        read_until_error(gw, mode, "a/m", received)
    assert received == ["partial "] and b.requests == [] and time_.waits(mode) == []
    assert health.state("a/m") == "open"  # the failure still counts against a


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_the_same_provider_failing_without_text_falls_back_in_chat_modes(log, time_, mode):
    a = CutAfterText("a", models=("m",))
    (b,) = mocks("b")
    gw = gateway(log, [a, b], retry(time_, max_attempts=1, fallbacks={"a/m": ["b/m"]}))
    response, _ = call_in_mode(gw, mode, "a/m")
    assert response.provider == "b" and len(a.requests) == 1


def test_an_abandoned_async_stream_closes_its_attempt_and_frees_the_probe(log, time_):
    (a,) = mocks("a")
    a.enqueue("one two three")
    health = HealthTracker(failure_threshold=1, cooldown=1.0, clock=time_.clock)
    health.record_failure("a/m")
    time_.now += 2.0  # past the cooldown: the next call is the probe
    gw = gateway(log, [a], retry(time_, health=health))

    async def run():
        stream = gw.astream("a/m", "hi")
        iterator = stream.__aiter__()
        assert await iterator.__anext__() == "one "
        await iterator.aclose()
        await stream.aclose()

    asyncio.run(run())
    assert list(rows(log).status) == ["cancelled"]
    assert health.allow("a/m")  # the probe slot was given back, not held for a cooldown


def test_a_cancelled_async_call_during_backoff_ends_with_its_failure_counted(log, time_):
    (a,) = mocks("a")
    a.enqueue(server_error())
    started = []

    async def never_ending_sleep(seconds):
        started.append(seconds)
        await asyncio.Event().wait()

    health = HealthTracker(failure_threshold=5, clock=time_.clock)
    mw = Retry(clock=time_.clock, async_sleep=never_ending_sleep, rng=Draws(0.5), health=health)
    gw = gateway(log, [a], mw)

    async def run():
        task = asyncio.create_task(gw.achat("a/m", "hi"))
        while not started and not task.done():
            await asyncio.sleep(0)
        assert started == [0.25], "the backoff wait never started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert len(a.requests) == 1
    assert health.snapshot()["a/m"]["failures"] == 1  # the failure before the wait counted
