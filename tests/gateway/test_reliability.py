"""Retries, fallbacks and circuit breaking (`aigw_lab.gateway.reliability` and `.health`).

Time never really passes: every test injects a fake clock whose sleeps only move it on, and
a fake random source, so backoff schedules are exact.
"""

import asyncio
import random
import threading

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import (
    AllAttemptsFailedError,
    AuthenticationError,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    NetworkError,
    OverloadedError,
    ProviderServerError,
    QuotaExceededError,
    RateLimitedError,
    StreamInterruptedError,
)
from aigw_lab.gateway.health import CircuitOpenError, HealthTracker
from aigw_lab.gateway.middleware import Middleware
from aigw_lab.gateway.reliability import Fallbacks, Retry, RetryPolicy
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from tests._call_modes import CutAfterText
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


# --- the backoff schedule -----------------------------------------------------------------


def test_backoff_caps_grow_exponentially_up_to_max_delay():
    policy = RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=3.0)
    assert [policy.backoff_cap(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert RetryPolicy(max_delay=7.0).backoff_cap(100_000) == 7.0  # no overflow


def test_full_jitter_stays_within_zero_and_the_cap():
    policy = RetryPolicy(base_delay=1.0, multiplier=3.0, max_delay=50.0)
    rng = random.Random(7)
    error = server_error()
    for n in range(1, 8):
        waits = [policy.delay(n, error, rng.random()) for _ in range(200)]
        cap = policy.backoff_cap(n)
        assert all(0.0 <= w < cap for w in waits)
        assert max(waits) > 0.8 * cap and min(waits) < 0.2 * cap  # the whole range is used
    assert policy.delay(2, error, 0.0) == 0.0 and policy.delay(2, error, 0.5) == 1.5


def test_retry_after_is_a_floor_and_too_long_a_retry_after_gives_up():
    policy = RetryPolicy(base_delay=1.0, max_retry_after=10.0)
    asked = RateLimitedError("slow", retry_after=4.0)
    assert policy.delay(1, asked, 0.99) == 4.0  # jitter alone would wait < 1s
    assert policy.delay(5, asked, 0.9) == pytest.approx(14.4)  # backoff above it wins
    assert policy.delay(1, RateLimitedError("slow", retry_after=11.0), 0.5) is None


@pytest.mark.parametrize(
    "settings",
    [
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"base_delay": -1},
        {"multiplier": 0.5},
        {"deadline": 0},
        {"attempt_timeout": -3},
    ],
)
def test_invalid_policies_are_config_errors(settings):
    with pytest.raises(ConfigError):
        RetryPolicy(**settings)


# --- retries through the gateway, as rows of the call log ---------------------------------


def test_rate_limit_then_success_is_two_rows_and_waits_retry_after(log, time_):
    (a,) = mocks("a")
    a.enqueue(RateLimitedError("slow", retry_after=2.0, provider="a", model="m", status=429))
    gw = gateway(log, [a], retry(time_, draw=0.1))
    response = gw.chat("a/m", "hi")
    assert response.text == "ok" and response.attempts == 2
    assert time_.sleeps == [2.0]  # the jitter (0.05 s) would have been shorter
    df = rows(log)
    assert list(df.attempt) == [1, 2]
    assert list(df.status) == ["error", "ok"]
    assert df.error_type[0] == "rate_limited" and df.error_type.isna()[1]
    assert df.fallback_from.isna().all()


def test_retries_follow_the_jittered_exponential_schedule(log, time_):
    (a,) = mocks("a")
    a.enqueue(server_error(), NetworkError("reset"), server_error())
    gw = gateway(log, [a], retry(time_, draw=0.5, max_attempts=4, base_delay=1.0))
    assert gw.chat("a/m", "hi").attempts == 4
    assert time_.sleeps == [0.5, 1.0, 2.0]


def test_exhausted_retries_raise_all_attempts_failed_with_every_error(log, time_):
    (a,) = mocks("a")
    errors = [server_error(), RateLimitedError("slow", provider="a", model="m"), server_error()]
    a.enqueue(*errors)
    gw = gateway(log, [a], retry(time_, max_attempts=3))
    with pytest.raises(AllAttemptsFailedError) as info:
        gw.chat("a/m", "hi")
    exc = info.value
    assert exc.errors == errors and exc.__cause__ is errors[-1]
    assert "a/m: 3 attempt(s) failed" in str(exc)
    assert "a/m: server_error, rate_limited, server_error" in str(exc)
    assert len(time_.sleeps) == 2 and len(a.requests) == 3
    assert list(rows(log).status) == ["error"] * 3


def test_a_single_attempt_raises_its_own_error(log, time_):
    (a,) = mocks("a")
    a.enqueue(server_error())
    gw = gateway(log, [a], retry(time_, max_attempts=1))
    with pytest.raises(ProviderServerError):
        gw.chat("a/m", "hi")


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad temperature", status=400),
        AuthenticationError("bad key", status=401),
        ContentFilteredError("refused", status=400),
        ProviderServerError("not this time", status=500, retryable=False),
    ],
)
def test_errors_of_the_request_itself_are_never_retried_nor_fallen_back(log, time_, error):
    a, b = mocks("a", "b")
    a.enqueue(error)
    health = HealthTracker(failure_threshold=1, clock=time_.clock)
    gw = gateway(log, [a, b], retry(time_, fallbacks={"default": ["b/m"]}, health=health))
    with pytest.raises(type(error)) as info:
        gw.chat("a/m", "hi")
    assert info.value is error  # unchanged, not wrapped
    assert len(a.requests) == 1 and b.requests == [] and time_.sleeps == []
    assert health.state("a/m") == "closed"  # and it says nothing about a's health
    assert len(rows(log)) == 1


def test_a_misconfigured_fallback_target_is_a_clear_error_when_the_gateway_is_built(log, time_):
    # Issue 9 §7: checked before any call, not in the outage the fallback was meant for.
    (a,) = mocks("a")
    with pytest.raises(ConfigError, match="'nope/m' names no configured provider"):
        gateway(log, [a], retry(time_, fallbacks={"a/m": ["nope/m"]}))


# --- timeouts and the deadline ------------------------------------------------------------


def slow_failures(time_, seconds, name="a"):
    """A provider that takes ``seconds`` of fake time, then fails with a 500."""

    def answer(request):
        time_.now += seconds
        raise server_error(name)

    return FunctionProvider(answer, name=name, models=("m",))


def test_each_attempt_gets_its_timeout_cut_to_what_remains_of_the_deadline(log, time_):
    seen = []
    provider = slow_failures(time_, 3.0)
    inner = provider.function
    provider.function = lambda request: seen.append(request.timeout) or inner(request)
    policy = dict(max_attempts=5, attempt_timeout=5.0, deadline=12.0, base_delay=1.0)
    gw = gateway(log, [provider], retry(time_, draw=0.5, **policy))
    with pytest.raises(AllAttemptsFailedError) as info:
        gw.chat("a/m", "hi")
    # t=0: 5 (attempt cap); t=3.5: 5; t=7.5: 12-7.5 = 4.5; then 10.5 + 2.0 would pass 12.
    assert seen == [5.0, 5.0, 4.5]
    assert time_.sleeps == [0.5, 1.0]
    assert "deadline of 12.0s reached" in str(info.value)


def test_the_requests_own_shorter_timeout_wins_and_the_caller_sees_its_request(log, time_):
    after = []

    class Outer(Middleware):
        kind = "route"

        def handle(self, ctx, call_next):
            response = call_next(ctx)
            after.append(ctx.request.timeout)
            return response

    a = MockProvider("a", models=("m",)).enqueue(server_error())
    gw = Gateway(
        [a],
        log=log,
        middleware=[retry(time_, attempt_timeout=9.0), Outer()],
        prices={"a/m": Price(1.0, 2.0)},
    )
    gw.chat("a/m", "hi", timeout=2.0)
    gw.chat("a/m", "hi")
    assert [r.timeout for r in a.requests] == [2.0, 2.0, 9.0]
    assert after == [2.0, None]  # the per-attempt timeout does not leak out


def test_without_timeouts_configured_the_request_passes_unchanged(log, time_):
    (a,) = mocks("a")
    gw = gateway(log, [a], retry(time_))
    gw.chat("a/m", "hi")
    assert a.requests[0].timeout is None


# --- fallbacks ----------------------------------------------------------------------------


def test_fallbacks_run_in_order_and_each_row_names_where_it_fell_back_from(log, time_):
    a, b, c, d = mocks("a", "b", "c", "d")
    a.enqueue(server_error(), server_error())
    b.enqueue(QuotaExceededError("out of credit", status=402))
    fallbacks = {"a/m": ["b/m", "c/m"], "default": ["d/m"]}  # a's own chain wins
    gw = gateway(log, [a, b, c, d], retry(time_, max_attempts=2, fallbacks=fallbacks))
    response = gw.chat("a/m", "hi")
    assert response.provider == "c" and response.attempts == 4 and not d.requests
    assert len(time_.sleeps) == 1  # between a's two tries; a quota is never retried
    df = rows(log)
    assert list(df.provider_name) == ["a", "a", "b", "c"]
    assert list(df.error_type[:3]) == ["server_error", "server_error", "quota_exceeded"]
    assert df.fallback_from.tolist()[2:] == ["a/m", "b/m"] and df.fallback_from[:2].isna().all()


def test_the_default_chain_serves_models_without_their_own(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(QuotaExceededError("out of credit"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"default": ["b/m"]}))
    assert gw.chat("a/m", "hi").provider == "b"


def test_overloaded_falls_back_at_once_but_is_retried_where_nothing_else_is(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(OverloadedError("busy", status=529), OverloadedError("busy", status=529))
    gw = gateway(log, [a, b], retry(time_, max_attempts=3, fallbacks={"a/m": ["b/m"]}))
    assert gw.chat("a/m", "hi").provider == "b"
    assert len(a.requests) == 1 and time_.sleeps == []
    assert gw.chat("b/m", "hi").provider == "b"  # b has no fallback of its own
    lonely = gateway(None, [a], retry(time_, max_attempts=3))
    assert lonely.chat("a/m", "hi").attempts == 2 and len(time_.sleeps) == 1


def test_a_prompt_too_long_goes_to_a_model_with_a_larger_window(log, time_):
    a, b, c, d = mocks("a", "b", "c", "d")
    a.enqueue(ContextLengthExceededError("too long", status=400))
    windows = {"a/m": 16_000, "b/m": 8_000, "c/m": 16_000, "d/m": 128_000}
    fallbacks = {"a/m": ["b/m", "c/m", "d/m"], "context_windows": windows}
    health = HealthTracker(failure_threshold=1, clock=time_.clock)
    gw = gateway(log, [a, b, c, d], retry(time_, fallbacks=fallbacks, health=health))
    assert gw.chat("a/m", "hi").provider == "d"
    assert b.requests == [] and c.requests == [] and time_.sleeps == []
    assert rows(log).fallback_from.tolist()[1] == "a/m"
    assert health.state("a/m") == "closed"  # the prompt's fault, not a's


def test_without_windows_a_prompt_too_long_follows_the_chain_order(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(ContextLengthExceededError("too long"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}))
    assert gw.chat("a/m", "hi").provider == "b"


def test_a_retry_after_beyond_the_cap_moves_to_the_fallback_without_waiting(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(RateLimitedError("slow", retry_after=300.0))
    gw = gateway(log, [a, b], retry(time_, max_retry_after=30.0, fallbacks={"a/m": ["b/m"]}))
    assert gw.chat("a/m", "hi").provider == "b" and time_.sleeps == []


def test_all_attempts_failed_lists_every_target_and_error_type(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(server_error(), NetworkError("reset"))
    b.enqueue(QuotaExceededError("no credit"))
    gw = gateway(log, [a, b], retry(time_, max_attempts=2, fallbacks={"a/m": ["b/m"]}))
    with pytest.raises(AllAttemptsFailedError) as info:
        gw.chat("a/m", "hi")
    exc = info.value
    assert [e.error_type for e in exc.errors] == ["server_error", "network_error", "quota_exceeded"]
    assert exc.__cause__ is exc.errors[-1]
    assert "a/m: server_error, network_error; b/m: quota_exceeded" in str(exc)
    (trace_id,) = log.query("SELECT DISTINCT trace_id FROM calls").trace_id
    assert trace_id in exc.hint


def test_fallbacks_config_is_validated():
    with pytest.raises(ConfigError, match="not a target"):
        Fallbacks({"a/m": ["b-without-model"]})
    with pytest.raises(ConfigError, match="list of targets"):
        Fallbacks.from_mapping({"a/m": "b/m"})
    chain = Fallbacks({"a/m": ["b/m", "a/m", "b/m", "c/x/y"]}).chain("a/m")
    assert chain == ("a/m", "b/m", "c/x/y")


def test_from_config_maps_plain_tables_onto_the_middleware(time_):
    mw = Retry.from_config(
        {"max_attempts": 5, "base_delay": 0.1, "deadline": 30},
        fallbacks={"a/m": ["b/m"], "default": ["c/m"], "context_windows": {"b/m": 8000}},
        health={"failure_threshold": 3, "cooldown": 10},
        clock=time_.clock,
    )
    assert mw.policy == RetryPolicy(max_attempts=5, base_delay=0.1, deadline=30)
    assert mw.fallbacks.chain("x/y") == ("x/y", "c/m")
    assert mw.fallbacks.context_windows["b/m"] == 8000
    assert mw.health.failure_threshold == 3 and mw.health.cooldown == 10.0
    assert mw.describe()["health"] is True
    with pytest.raises(ConfigError, match="did you mean 'max_attempts'"):
        Retry.from_config({"max_attempt": 3})
    with pytest.raises(ConfigError, match="did you mean 'cooldown'"):
        Retry.from_config(health={"cooldown_s": 3})


# --- the circuit breaker ------------------------------------------------------------------


def test_circuit_opens_after_consecutive_failures_then_probes_and_closes(time_):
    health = HealthTracker(failure_threshold=3, cooldown=10.0, clock=time_.clock)
    for _ in range(2):
        health.record_failure("a/m")
    health.record_success("a/m")  # a success resets the count
    for _ in range(3):
        assert health.allow("a/m")
        health.record_failure("a/m")
    assert health.state("a/m") == "open" and not health.allow("a/m")
    snap = health.snapshot()["a/m"]
    assert (snap["state"], snap["failures"], snap["opened_at"]) == ("open", 3, 1000.0)
    assert snap["retry_in"] == 10.0 and snap["opens"] == 1
    time_.now += 9.9
    assert not health.allow("a/m")
    time_.now += 0.1
    assert health.state("a/m") == "half_open"
    assert health.allow("a/m")  # the probe
    assert not health.allow("a/m") and health.is_open("a/m")  # only one at a time
    health.record_success("a/m")
    assert health.state("a/m") == "closed" and health.allow("a/m")
    assert health.snapshot()["a/m"]["opened_at"] is None


def test_a_failed_probe_reopens_for_another_cooldown(time_):
    health = HealthTracker(failure_threshold=1, cooldown=5.0, clock=time_.clock)
    health.record_failure("a/m")
    time_.now += 5.0
    assert health.allow("a/m")
    health.record_failure("a/m")
    snap = health.snapshot()["a/m"]
    assert (snap["state"], snap["opened_at"], snap["opens"]) == ("open", 1005.0, 2)


def test_a_released_or_lost_probe_lets_another_one_through(time_):
    health = HealthTracker(failure_threshold=1, cooldown=5.0, clock=time_.clock)
    health.record_failure("a/m")
    time_.now += 5.0
    assert health.allow("a/m") and not health.allow("a/m")
    health.release("a/m")
    assert health.allow("a/m") and not health.allow("a/m")
    time_.now += 5.0  # that probe never reported back
    assert health.allow("a/m")


def test_failure_rate_opens_once_enough_calls_are_in(time_):
    health = HealthTracker(
        failure_threshold=None, failure_rate=0.5, window=4, min_calls=4, clock=time_.clock
    )
    for outcome in ["ok", "fail", "ok", "fail"][:3]:
        getattr(health, "record_success" if outcome == "ok" else "record_failure")("a/m")
    assert health.state("a/m") == "closed"  # 1 of 3: too few calls to judge anyway
    health.record_failure("a/m")
    assert health.state("a/m") == "open"  # 2 of 4
    assert health.snapshot()["a/m"]["failure_rate"] == 0.5


def test_health_settings_are_validated():
    with pytest.raises(ConfigError):
        HealthTracker(failure_threshold=None, failure_rate=None)
    with pytest.raises(ConfigError):
        HealthTracker(failure_rate=1.5)
    with pytest.raises(ConfigError):
        HealthTracker(window=3, min_calls=5)


def test_reset_closes_circuits(time_):
    health = HealthTracker(failure_threshold=1, clock=time_.clock)
    health.record_failure("a/m")
    health.record_failure("b/m")
    health.reset(["a/m"])
    assert list(health.snapshot()) == ["b/m"]
    health.reset()
    assert health.snapshot() == {}


def test_an_open_circuit_is_skipped_without_a_request(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(server_error(), server_error())
    health = HealthTracker(failure_threshold=2, cooldown=30.0, clock=time_.clock)
    mw = retry(time_, max_attempts=5, fallbacks={"a/m": ["b/m"]}, health=health)
    gw = gateway(log, [a, b], mw)
    assert gw.chat("a/m", "hi").provider == "b"  # a opened after 2 tries, not 5
    assert len(a.requests) == 2 and len(time_.sleeps) == 1
    assert gw.chat("a/m", "again").provider == "b"
    assert len(a.requests) == 2  # skipped
    assert health.snapshot()["b/m"]["total_successes"] == 2
    last = log.query("SELECT attempt, fallback_from FROM calls ORDER BY timestamp, attempt")
    assert last.attempt.tolist()[-1] == 1 and last.fallback_from.tolist()[-1] == "a/m"
    time_.now += 30.0
    assert gw.chat("a/m", "probe").provider == "a"  # the probe succeeds: closed again
    assert health.state("a/m") == "closed"


def test_when_every_circuit_is_open_the_call_fails_fast_and_is_still_logged(log, time_):
    a, b = mocks("a", "b")
    health = HealthTracker(failure_threshold=1, cooldown=30.0, clock=time_.clock)
    health.record_failure("a/m")
    health.record_failure("b/m")
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}, health=health))
    with pytest.raises(AllAttemptsFailedError) as info:
        gw.chat("a/m", "hi")
    errors = info.value.errors
    assert [type(e) for e in errors] == [CircuitOpenError, CircuitOpenError]
    assert [e.target for e in errors] == ["a/m", "b/m"] and errors[0].retry_in == 30.0
    assert "0 attempt(s) failed" in str(info.value) and "b/m: circuit_open" in str(info.value)
    assert a.requests == [] and b.requests == []
    df = log.query("SELECT attempt, status, error_type, provider_name FROM calls")
    assert df.values.tolist() == [[0, "error", "all_attempts_failed", "a"]]


def test_health_tracker_is_thread_safe(time_):
    health = HealthTracker(failure_threshold=10**9, cooldown=1.0, clock=time_.clock)

    def hammer():
        for _ in range(2000):
            health.record_failure("a/m")
            health.record_success("b/m")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = health.snapshot()
    assert snap["a/m"]["failures"] == snap["a/m"]["total_failures"] == 16_000

    health = HealthTracker(failure_threshold=1, cooldown=1.0, clock=time_.clock)
    health.record_failure("a/m")
    time_.now += 1.0
    barrier = threading.Barrier(16)
    granted = []

    def race():
        barrier.wait()
        granted.append(health.allow("a/m"))

    threads = [threading.Thread(target=race) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 1  # exactly one probe


# --- streams ------------------------------------------------------------------------------


def test_a_stream_that_fails_before_its_first_token_is_retried(log, time_):
    (a,) = mocks("a")
    a.enqueue(server_error(), "hello there")
    gw = gateway(log, [a], retry(time_))
    with gw.stream("a/m", "hi") as stream:
        assert list(stream) == ["hello ", "there"]  # once, not repeated
    assert stream.response.attempts == 2 and len(time_.sleeps) == 1
    df = rows(log)
    assert list(df.status) == ["error", "ok"] and df.stream.all()


def test_a_stream_falls_back_before_its_first_token(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(QuotaExceededError("no credit"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}))
    assert gw.stream("a/m", "hi").until_done().provider == "b"
    assert rows(log).fallback_from.tolist()[1] == "a/m"


def test_once_text_was_delivered_a_stream_failure_propagates(log, time_):
    a = CutAfterText("a", models=("m",))
    (b,) = mocks("b")
    health = HealthTracker(failure_threshold=1, clock=time_.clock)
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}, health=health))
    received = []
    with pytest.raises(StreamInterruptedError):
        for text in gw.stream("a/m", "hi"):
            received.append(text)
    assert received == ["partial "] and b.requests == [] and time_.sleeps == []
    assert health.state("a/m") == "open"  # it still counts against a
    assert list(rows(log).error_type) == ["stream_interrupted"]


def test_a_stream_closed_by_the_caller_is_logged_cancelled_and_not_retried(log, time_):
    (a,) = mocks("a")
    a.enqueue("one two three")
    health = HealthTracker(failure_threshold=1, clock=time_.clock)
    gw = gateway(log, [a], retry(time_, health=health))
    stream = gw.stream("a/m", "hi")
    iterator = iter(stream)
    assert next(iterator) == "one "
    stream.close()
    iterator.close()
    assert list(rows(log).status) == ["cancelled"] and len(a.requests) == 1
    assert health.state("a/m") == "closed"


# --- asyncio ------------------------------------------------------------------------------


async def test_async_chat_retries_with_the_async_sleep(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(RateLimitedError("slow", retry_after=1.5), server_error())
    gw = gateway(log, [a, b], retry(time_, max_attempts=2, fallbacks={"a/m": ["b/m"]}))
    response = await gw.achat("a/m", "hi")
    assert response.provider == "b" and response.attempts == 3
    assert time_.async_sleeps == [1.5] and time_.sleeps == []
    assert rows(log).fallback_from.tolist()[2] == "a/m"


async def test_async_chat_never_retries_an_invalid_request(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(InvalidRequestError("bad"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"default": ["b/m"]}))
    with pytest.raises(InvalidRequestError):
        await gw.achat("a/m", "hi")
    assert b.requests == []


async def test_async_all_attempts_failed(log, time_):
    (a,) = mocks("a")
    a.enqueue(server_error(), server_error())
    gw = gateway(log, [a], retry(time_, max_attempts=2))
    with pytest.raises(AllAttemptsFailedError) as info:
        await gw.achat("a/m", "hi")
    assert len(info.value.errors) == 2 and time_.async_sleeps == [0.25]


async def test_cancelling_during_a_backoff_wait_cancels_the_call(log, time_):
    waiting = asyncio.Event()

    async def never_ending_sleep(seconds):
        waiting.set()
        await asyncio.Event().wait()

    (a,) = mocks("a")
    a.enqueue(server_error())
    mw = Retry(clock=time_.clock, async_sleep=never_ending_sleep, rng=Draws(0.5))
    task = asyncio.create_task(gateway(log, [a], mw).achat("a/m", "hi"))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(a.requests) == 1 and list(rows(log).status) == ["error"]


async def test_async_stream_retries_before_the_first_token_only(log, time_):
    a, b = mocks("a", "b")
    a.enqueue(OverloadedError("busy"))
    gw = gateway(log, [a, b], retry(time_, fallbacks={"a/m": ["b/m"]}))
    stream = gw.astream("a/m", "hi")
    assert [t async for t in stream] == ["ok"] and stream.response.provider == "b"

    cut = gateway(
        log, [CutAfterText("a", models=("m",)), b], retry(time_, fallbacks={"a/m": ["b/m"]})
    )
    received = []
    with pytest.raises(StreamInterruptedError):
        async for text in cut.astream("a/m", "hi"):
            received.append(text)
    assert received == ["partial "] and len(b.requests) == 1
    assert time_.async_sleeps == [] and time_.sleeps == []


async def test_async_stream_closed_by_the_caller_is_logged_cancelled(log, time_):
    (a,) = mocks("a")
    a.enqueue("one two three")
    gw = gateway(log, [a], retry(time_))
    stream = gw.astream("a/m", "hi")
    iterator = stream.__aiter__()
    assert await iterator.__anext__() == "one "
    await iterator.aclose()
    await stream.aclose()
    assert list(rows(log).status) == ["cancelled"]


def test_retry_sits_innermost_in_the_pipeline(log, time_):
    gw = gateway(log, mocks("a"), retry(time_))
    assert gw.pipeline == ["retry", "provider", "cost", "log"]
