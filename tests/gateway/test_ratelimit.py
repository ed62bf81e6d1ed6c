"""Rate limits (`aigw_lab.gateway.ratelimit`): token buckets, reject and wait modes, FIFO
queues, token reconciliation, upstream 429 pauses, cancellation, threads and asyncio.

Time never really passes: a fake clock moves only when a test or a fake sleep moves it, and
asyncio tests run under `VirtualTime`, which jumps to the next timer whenever every task is
blocked. The bound checked throughout is the token bucket's: over any window of W seconds, a
bucket of capacity C refilling at r per second admits at most C + r * W.
"""

import asyncio
import heapq
import itertools
import threading
import time
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab import Gateway
from aigw_lab.errors import (
    AllAttemptsFailedError,
    ConfigError,
    ProviderServerError,
    RateLimitedError,
)
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.ratelimit import RateLimiter, RateLimitRule, estimate_tokens
from aigw_lab.gateway.reliability import Retry
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from aigw_lab.types import ChatRequest, ChatResponse, Usage

EPS = 1e-6

pytestmark = pytest.mark.filterwarnings("ignore::aigw_lab.pricing.UnknownPriceWarning")


class FakeClock:
    """Monotonic seconds that move only when advanced; its ``sleep`` advances it (safe to call
    from several threads)."""

    def __init__(self, now=100.0):
        self.now = now
        self.sleeps = []
        self._lock = threading.Lock()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        with self._lock:
            self.now += seconds

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.advance(seconds)


class VirtualTime:
    """A clock and an ``async_sleep`` for asyncio tests: `run` lets the tasks go as far as
    they can, then moves the clock to the earliest pending timer and fires it."""

    def __init__(self, now=100.0):
        self.now = now
        self._timers = []
        self._order = itertools.count()

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def run(self, tasks):
        while True:
            for _ in range(30):  # let every runnable task go as far as it can
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                return [t.result() if not t.cancelled() else None for t in tasks]
            while self._timers:
                when, _, future = heapq.heappop(self._timers)
                if not future.done():  # a cancelled sleep is skipped
                    self.now = max(self.now, when)
                    future.set_result(None)
                    break
            else:
                raise AssertionError("tasks are blocked with no timer pending: a lost wake-up")


def sync_limiter(clock, *rules, **kwargs):
    return RateLimiter(rules, clock=clock, sleep=clock.sleep, **kwargs)


def async_limiter(vt, *rules, **kwargs):
    return RateLimiter(rules, clock=vt, async_sleep=vt.sleep, **kwargs)


def mocks():
    return [MockProvider("a", models=("m", "n")), MockProvider("b", models=("m",))]


def gateway(limiter, providers=None, log=None, more=()):
    return Gateway(providers or mocks(), log=log, middleware=[limiter, *more])


def answering(usage_of, name="a", record=None):
    """A provider whose answers use ``usage_of(request)`` tokens; ``record`` gets each request."""

    def answer(request):
        if record is not None:
            record(request)
        return ChatResponse(
            text="ok",
            finish_reason="stop",
            usage=usage_of(request),
            provider=name,
            model=request.model,
        )

    return FunctionProvider(answer, name, models=("m", "n"))


def bucket(limiter, limit):
    (row,) = [r for r in limiter.snapshot()["buckets"] if r["limit"] == limit]
    return row


def rate_limited_upstream(retry_after, provider="a", model="m"):
    return RateLimitedError(
        "slow down", retry_after=retry_after, provider=provider, model=model, status=429
    )


def check_bucket_bound(admitted, capacity, rate):
    """No window [t_i, t_j] of admissions holds more than capacity + rate * (t_j - t_i)."""
    admitted = sorted(admitted)
    for i, (start, _) in enumerate(admitted):
        total = 0.0
        for when, amount in admitted[i:]:
            total += amount
            assert total <= capacity + rate * (when - start) + EPS, (start, when, total)


def was_full(admitted, when, amount, capacity, rate):
    """True when admitting ``amount`` at ``when`` would break the bound for some window."""
    if amount > capacity - EPS:
        return True
    for start, _ in admitted:
        if start <= when:
            used = sum(a for t, a in admitted if start <= t <= when)
            if used + amount > capacity + rate * (when - start) - EPS:
                return True
    return False


# --- rules, config and the estimate --------------------------------------------------------


def test_estimate_is_a_quarter_of_the_characters_plus_the_output_allowance():
    request = ChatRequest.create("m", "y" * 30, system="x" * 9)
    assert estimate_tokens(request, 100) == 10 + 100  # 39 characters, rounded up
    assert estimate_tokens(ChatRequest.create("m", "y" * 8, max_tokens=7)) == 2 + 7


def test_from_config_builds_the_documented_table():
    table = tomllib.loads(
        """
        [rate_limits]
        mode = "reject"
        timeout = 10.0
        default_output_tokens = 128
        pause_on_429 = "model"

        [[rate_limits.rule]]
        key = ["tenant", "model"]
        requests_per_minute = 60
        tokens_per_minute = 100000

        [[rate_limits.rule]]
        name = "openai-global"
        match = { provider = "openai" }
        requests_per_second = 5
        """
    )["rate_limits"]
    limiter = RateLimiter.from_config(table)
    assert limiter.mode == "reject" and limiter.timeout == 10.0
    assert limiter.pause_on_429 == "model" and limiter.default_output_tokens == 128
    assert [r.label for r in limiter.rules] == ["tenant+model", "openai-global"]
    assert limiter.rules[0].limits == (
        ("requests_per_minute", 60.0, 60.0),
        ("tokens_per_minute", 100000.0, 60.0),
    )
    assert dict(limiter.rules[1].match) == {"provider": ("openai",)}


@pytest.mark.parametrize(
    "table, named",
    [
        ({"mode": "wait", "timout": 3}, "'timout'"),
        ({"rule": [{"requests_per_minit": 5}]}, "'requests_per_minit'"),
        ({"rule": [{"key": ["team"], "requests_per_minute": 5}]}, "'team'"),
        ({"rule": [{"match": {"region": "eu"}, "requests_per_minute": 5}]}, "'region'"),
        ({"rule": [{"key": ["user"]}]}, "sets no limit"),
        ({"rule": [{"requests_per_minute": 0}]}, "requests_per_minute=0"),
        ({"rule": [{"tokens_per_hour": "lots"}]}, "tokens_per_hour='lots'"),
        ({"rule": "user"}, "rule = 'user' must be a list"),
        ({"mode": "queue"}, "'queue'"),
        ({"timeout": -1}, "timeout=-1"),
        ({"pause_on_429": "all"}, "'all'"),
    ],
)
def test_bad_config_is_a_config_error_naming_what_is_wrong(table, named):
    with pytest.raises(ConfigError) as info:
        RateLimiter.from_config(table)
    assert named in str(info.value)


def test_a_misspelt_key_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'requests_per_minute'"):
        RateLimiter.from_config({"rule": [{"requests_per_minit": 5}]})


# --- reject mode ---------------------------------------------------------------------------


def test_reject_mode_retry_after_is_the_time_until_capacity():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_minute": 60}, mode="reject")
    gw = gateway(limiter)
    for _ in range(60):
        gw.chat("a/m", "hi")
    with pytest.raises(RateLimitedError) as info:
        gw.chat("a/m", "hi")
    exc = info.value
    assert exc.retry_after == pytest.approx(1.0) and exc.status is None
    assert (exc.provider, exc.model) == ("a", "m")
    assert "rate limit 'global': 60 requests per minute reached" in str(exc)
    clock.advance(0.25)
    with pytest.raises(RateLimitedError) as info:
        gw.chat("b/m", "hi")
    assert info.value.retry_after == pytest.approx(0.75)
    clock.advance(0.75)
    assert gw.chat("a/m", "hi").text == "ok"
    assert clock.sleeps == []  # reject mode never waits


def test_reject_mode_retry_after_for_tokens_counts_the_estimate():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"tokens_per_minute": 600}, mode="reject")  # 10 tokens/s
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=10, output_tokens=90))])
    for _ in range(6):
        gw.chat("a/m", "x" * 40, max_tokens=90)  # estimate 10 + 90: exactly what it uses
    with pytest.raises(RateLimitedError) as info:
        gw.chat("a/m", "x" * 40, max_tokens=90)
    assert info.value.retry_after == pytest.approx(10.0)
    with pytest.raises(RateLimitedError) as info:
        gw.chat("a/m", "x" * 40, max_tokens=20)  # a smaller call needs less refill
    assert info.value.retry_after == pytest.approx(3.0)


def test_a_call_must_pass_every_rule_that_applies():
    clock = FakeClock()
    limiter = sync_limiter(
        clock,
        {"key": ["user"], "requests_per_hour": 2},
        {"requests_per_hour": 3},
        {"match": {"provider": "b"}, "requests_per_hour": 1},
        mode="reject",
    )
    gw = gateway(limiter)
    gw.chat("a/m", "hi", user="ann")
    gw.chat("a/m", "hi", user="ann")
    with pytest.raises(RateLimitedError, match=r"'user' \(user=ann\)"):
        gw.chat("a/m", "hi", user="ann")
    gw.chat("a/m", "hi", user="bob")
    with pytest.raises(RateLimitedError, match="'global'"):
        gw.chat("a/m", "hi", user="bob")
    rows = {(r["rule"], r["key"]): r["available"] for r in limiter.snapshot()["buckets"]}
    assert rows == {("user", "user=ann"): 0.0, ("user", "user=bob"): 1.0, ("global", ""): 0.0}


def test_only_matching_calls_use_a_matching_rule():
    clock = FakeClock()
    limiter = sync_limiter(
        clock, {"key": ["model"], "match": {"provider": ["b"]}, "requests_per_hour": 1}
    )
    gw = gateway(limiter)
    for _ in range(3):
        gw.chat("a/m", "hi")  # provider a: no rule applies
    gw.chat("b/m", "hi")
    limiter.mode, limiter._reject = "reject", True
    with pytest.raises(RateLimitedError, match=r"model=b/m"):
        gw.chat("b/m", "hi")


def test_a_request_larger_than_a_token_limit_is_refused_at_once():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"tokens_per_minute": 50})
    gw = gateway(limiter)
    with pytest.raises(RateLimitedError, match="can never pass") as info:
        gw.chat("a/m", "hi", max_tokens=100)
    assert info.value.retry_after is None and clock.sleeps == []
    assert limiter.snapshot()["waiting"] == 0


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(1, 60)), min_size=1, max_size=50),
    per_second=st.sampled_from([1, 3, 40, 100]),
    counts_tokens=st.booleans(),
)
def test_admissions_never_exceed_the_bucket_and_refusals_are_never_spurious(
    arrivals, per_second, counts_tokens
):
    """Random gaps and sizes in reject mode: admitted amounts respect C + r * W over every
    window, and every refused call really would have broken that bound."""
    clock = FakeClock()
    rule = {("tokens_per_second" if counts_tokens else "requests_per_second"): per_second}
    limiter = RateLimiter([rule], mode="reject", clock=clock, estimate=lambda r: r.max_tokens)
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=0, output_tokens=r.max_tokens))])
    admitted = []
    for gap, size in arrivals:
        clock.advance(gap)
        amount = size if counts_tokens else 1
        try:
            gw.chat("a/m", "hi", max_tokens=size)
        except RateLimitedError:
            assert was_full(admitted, clock.now, amount, per_second, per_second)
        else:
            admitted.append((clock.now, amount))
    check_bucket_bound(admitted, per_second, per_second)


# --- token reconciliation ------------------------------------------------------------------


def test_tokens_are_reconciled_with_the_real_usage():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_minute": 100, "tokens_per_minute": 1000})
    usage = [Usage(input_tokens=10, output_tokens=5), Usage(input_tokens=10, output_tokens=500)]
    gw = gateway(limiter, [answering(lambda r: usage.pop(0))])
    gw.chat("a/m", "x" * 40, max_tokens=90)  # reserves 100, uses 15: 85 come back
    assert bucket(limiter, "tokens_per_minute")["available"] == 985
    gw.chat("a/m", "x" * 40, max_tokens=90)  # reserves 100, uses 510: 410 more are charged
    assert bucket(limiter, "tokens_per_minute")["available"] == 475
    assert bucket(limiter, "requests_per_minute")["available"] == 98


def test_a_failed_call_gives_back_its_tokens_but_not_its_request():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_minute": 100, "tokens_per_minute": 1000})
    provider = MockProvider("a", models=("m",)).enqueue(ProviderServerError("boom", status=500))
    gw = gateway(limiter, [provider])
    with pytest.raises(ProviderServerError):
        gw.chat("a/m", "hi", max_tokens=50)
    assert bucket(limiter, "tokens_per_minute")["available"] == 1000
    assert bucket(limiter, "requests_per_minute")["available"] == 99  # it reached the provider


def test_usage_beyond_the_estimate_becomes_debt_that_delays_the_next_call():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"tokens_per_minute": 60}, mode="reject")  # 1 token/s
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=1, output_tokens=79))])
    gw.chat("a/m", "hi", max_tokens=19)  # reserves 1 + 19 = 20, uses 80
    assert bucket(limiter, "tokens_per_minute")["available"] == -20
    with pytest.raises(RateLimitedError) as info:
        gw.chat("a/m", "hi", max_tokens=19)
    assert info.value.retry_after == pytest.approx(40.0)


def test_a_cache_hit_gives_back_its_request_and_tokens():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_minute": 2, "tokens_per_minute": 1000})
    gw = gateway(limiter, more=[ExactCache()])
    for _ in range(4):
        gw.chat("a/m", "same question", max_tokens=10)  # one miss, then hits
    assert bucket(limiter, "requests_per_minute")["available"] == 1
    tokens_used = 1000 - bucket(limiter, "tokens_per_minute")["available"]
    assert (
        tokens_used == Usage(input_tokens=4, output_tokens=1).total_tokens
    )  # the miss's real usage, nothing more


def test_every_attempt_is_a_request_and_a_retried_429_pauses_the_provider():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_minute": 10})
    provider = MockProvider("a", models=("m",))
    provider.enqueue(rate_limited_upstream(2.0), rate_limited_upstream(3.0))
    retry = Retry(max_attempts=2, clock=clock, sleep=lambda seconds: None)
    gw = gateway(limiter, [provider], more=[retry])
    with pytest.raises(AllAttemptsFailedError):
        gw.chat("a/m", "hi")
    assert bucket(limiter, "requests_per_minute")["available"] == 8
    assert limiter.snapshot()["paused"] == {"a": pytest.approx(3.0)}


# --- streams -------------------------------------------------------------------------------


def test_a_stream_is_reconciled_at_its_end():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"tokens_per_minute": 1000})
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=7, output_tokens=3))])
    with gw.stream("a/m", "hello there", max_tokens=200) as stream:
        assert "".join(stream) == "ok"
    assert bucket(limiter, "tokens_per_minute")["available"] == 990


def test_an_abandoned_stream_pays_for_its_prompt_and_the_text_it_delivered():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"tokens_per_minute": 1000})
    reply = "word " * 40  # 200 characters
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=3, output_tokens=50))])
    gw._providers["a"].function = lambda r: ChatResponse(
        text=reply,
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=50),
        provider="a",
        model="m",
    )
    with gw.stream("a/m", "x" * 40, max_tokens=300) as stream:
        first = next(iter(stream))  # "word " (5 characters): 2 tokens at most
    assert first == "word "
    assert bucket(limiter, "tokens_per_minute")["available"] == 1000 - (10 + 2)


async def test_an_async_stream_is_reconciled_and_refused_streams_are_logged(tmp_path):
    vt = VirtualTime()
    limiter = async_limiter(vt, {"requests_per_hour": 1, "tokens_per_hour": 500}, mode="reject")
    with CallLog(tmp_path / "calls.duckdb") as log:
        gw = gateway(
            limiter, [answering(lambda r: Usage(input_tokens=2, output_tokens=2))], log=log
        )
        assert await gw.astream("a/m", "hi", max_tokens=100).until_done()
        assert bucket(limiter, "tokens_per_hour")["available"] == 496
        with pytest.raises(RateLimitedError):
            await gw.astream("a/m", "hi").until_done()
        df = log.query("SELECT attempt, status, error_type, stream FROM calls ORDER BY attempt")
    assert list(df.attempt) == [0, 1] and list(df.status) == ["error", "ok"]
    assert df.error_type[0] == "rate_limited" and df.stream.all()


# --- the call log --------------------------------------------------------------------------


def test_a_refused_call_is_logged_as_attempt_zero(tmp_path):
    clock = FakeClock()
    limiter = sync_limiter(clock, {"key": ["tenant"], "requests_per_minute": 1}, mode="reject")
    with CallLog(tmp_path / "calls.duckdb") as log:
        gw = gateway(limiter, log=log)
        gw.chat("a/m", "hi", tenant="acme")
        with pytest.raises(RateLimitedError):
            gw.chat("a/m", "hi", tenant="acme")
        with pytest.raises(RateLimitedError):
            list(gw.stream("a/m", "hi", tenant="acme"))
        df = log.query(
            "SELECT provider_name, request_model, attempt, status, error_type, error_message, stream "
            "FROM calls ORDER BY stream, attempt"
        )
    assert list(df.attempt) == [0, 1, 0]
    assert list(df.status) == ["error", "ok", "error"]
    assert list(df.error_type.fillna("")) == ["rate_limited", "", "rate_limited"]
    assert set(df.provider_name) == {"a"} and set(df.request_model) == {"m"}
    assert "tenant=acme" in df.error_message[0]


# --- upstream 429 ---------------------------------------------------------------------------


def test_an_upstream_429_pauses_the_provider_for_every_caller():
    clock = FakeClock()
    limiter = sync_limiter(clock, mode="reject")  # no rules: only the pause
    providers = mocks()
    providers[0].enqueue(rate_limited_upstream(5.0))
    gw = gateway(limiter, providers)
    with pytest.raises(RateLimitedError) as info:
        gw.chat("a/m", "hi", user="ann")
    assert info.value.status == 429  # the provider's own error, unchanged
    with pytest.raises(RateLimitedError, match="a is paused") as info:
        gw.chat("a/n", "hi", user="bob")
    assert info.value.retry_after == pytest.approx(5.0)
    assert gw.chat("b/m", "hi").text == "ok"
    clock.advance(5.0)
    assert gw.chat("a/m", "hi").text == "ok"
    assert len(providers[0].requests) == 2  # the paused call never reached it


def test_a_model_scoped_pause_leaves_the_providers_other_models_alone():
    clock = FakeClock()
    limiter = sync_limiter(clock, mode="reject", pause_on_429="model", max_pause=4.0)
    providers = mocks()
    providers[0].enqueue(rate_limited_upstream(60.0))
    gw = gateway(limiter, providers)
    with pytest.raises(RateLimitedError):
        gw.chat("a/m", "hi")
    assert gw.chat("a/n", "hi").text == "ok"
    with pytest.raises(RateLimitedError) as info:
        gw.chat("a/m", "hi")
    assert info.value.retry_after == pytest.approx(4.0)  # capped by max_pause


def test_in_wait_mode_callers_wait_out_the_pause():
    clock = FakeClock()
    limiter = sync_limiter(clock)
    providers = mocks()
    providers[0].enqueue(rate_limited_upstream(5.0))
    gw = gateway(limiter, providers)
    with pytest.raises(RateLimitedError):
        gw.chat("a/m", "hi")
    assert gw.chat("a/m", "hi").text == "ok"
    assert clock.sleeps == [5.0]


def test_a_429_without_retry_after_or_our_own_refusal_pauses_nothing():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"key": ["user"], "requests_per_hour": 1}, mode="reject")
    providers = mocks()
    local = RateLimitedError("an inner limiter said no", retry_after=9.0, provider="a", model="m")
    providers[0].enqueue(rate_limited_upstream(None), local)
    gw = gateway(limiter, providers)
    with pytest.raises(RateLimitedError):
        gw.chat("a/m", "hi", user="ann")
    with pytest.raises(RateLimitedError):
        gw.chat("a/m", "hi", user="cy")  # no HTTP 429: not the provider's word
    with pytest.raises(RateLimitedError):
        gw.chat("a/m", "hi", user="ann")  # refused by the limiter itself
    assert limiter.snapshot()["paused"] == {}
    assert gw.chat("a/m", "hi", user="bob").text == "ok"


async def test_a_paused_waiter_does_not_hold_up_a_shared_bucket():
    vt = VirtualTime()
    limiter = async_limiter(vt, {"requests_per_second": 1})
    providers = mocks()
    providers[0].enqueue(rate_limited_upstream(30.0))
    gw = gateway(limiter, providers)
    with pytest.raises(RateLimitedError):
        await gw.achat("a/m", "hi")
    admitted = {}

    async def call(address):
        await gw.achat(address, "hi")
        admitted[address] = vt.now

    start = vt.now
    await vt.run([asyncio.create_task(call("a/m")), asyncio.create_task(call("b/m"))])
    assert admitted == {"b/m": pytest.approx(start + 1.0), "a/m": pytest.approx(start + 30.0)}


async def test_a_waiter_paused_in_the_queue_steps_aside_for_the_calls_behind_it():
    vt = VirtualTime()
    limiter = async_limiter(vt, {"match": {"tenant": "t"}, "requests_per_second": 1}, timeout=None)
    providers = mocks()
    gw = gateway(limiter, providers)
    await gw.achat("a/m", "drain", tenant="t")
    admitted = {}

    async def call(address, at, tenant="t"):
        await vt.sleep(at)
        try:
            await gw.achat(address, "hi", tenant=tenant)
        finally:
            admitted[address, tenant] = vt.now - 100.0

    async def upstream_429():  # a call outside the rule meets a 429 while the others queue
        await vt.sleep(0.5)
        providers[0].enqueue(rate_limited_upstream(30.0))
        with pytest.raises(RateLimitedError):
            await gw.achat("a/m", "hi")

    await vt.run(
        [
            asyncio.create_task(call("a/m", 0.0)),
            asyncio.create_task(call("b/m", 0.1)),
            asyncio.create_task(upstream_429()),
        ]
    )
    assert admitted == {("b/m", "t"): pytest.approx(1.0), ("a/m", "t"): pytest.approx(30.5)}


# --- wait mode, fairness and cancellation ---------------------------------------------------


async def test_waiters_are_served_in_arrival_order_as_capacity_comes():
    vt = VirtualTime()
    order = []
    limiter = async_limiter(vt, {"requests_per_second": 2})
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=1, output_tokens=1), record=lambda r: order.append(
        (r.messages[0].text, vt.now)))])  # fmt: skip
    tasks = [asyncio.create_task(gw.achat("a/m", f"call {i}")) for i in range(6)]
    await vt.run(tasks)
    assert [text for text, _ in order] == [f"call {i}" for i in range(6)]
    assert [when - 100.0 for _, when in order] == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0])


async def test_a_small_call_does_not_overtake_a_large_one_waiting_ahead_of_it():
    vt = VirtualTime()
    admitted = []
    limiter = RateLimiter(
        [{"tokens_per_minute": 600}],
        clock=vt,
        async_sleep=vt.sleep,
        estimate=lambda r: r.max_tokens,
    )  # 10 tokens a second
    record = lambda r: admitted.append((r.messages[0].text, vt.now - 100.0))  # noqa: E731
    gw = gateway(
        limiter,
        [answering(lambda r: Usage(input_tokens=0, output_tokens=r.max_tokens), record=record)],
    )
    await gw.achat("a/m", "drain", max_tokens=600)

    async def call(text, at, size):
        await vt.sleep(at)
        await gw.achat("a/m", text, max_tokens=size)

    # At 10 s the bucket holds 100 tokens: enough for the small call, but the large one came
    # first, so the small one waits behind it (no barging, so large calls never starve).
    await vt.run(
        [asyncio.create_task(call("large", 0, 300)), asyncio.create_task(call("small", 10, 50))]
    )
    assert admitted[1:] == [("large", pytest.approx(30.0)), ("small", pytest.approx(35.0))]


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=30),
    per_second=st.sampled_from([1, 2, 5]),
)
def test_waiting_calls_keep_the_bound_and_their_order_and_go_as_soon_as_allowed(gaps, per_second):
    async def scenario():
        vt = VirtualTime()
        admitted = []
        limiter = async_limiter(vt, {"requests_per_second": per_second}, timeout=None)
        record = lambda r: admitted.append((vt.now, int(r.messages[0].text)))  # noqa: E731
        gw = gateway(
            limiter, [answering(lambda r: Usage(input_tokens=1, output_tokens=1), record=record)]
        )
        arrivals = list(itertools.accumulate(gaps))

        async def call(i, at):
            await vt.sleep(at)
            await gw.achat("a/m", str(i))

        await vt.run([asyncio.create_task(call(i, at)) for i, at in enumerate(arrivals)])
        return vt, arrivals, admitted

    vt, arrivals, admitted = asyncio.run(scenario())
    assert [i for _, i in admitted] == list(range(len(gaps)))  # first come, first served
    times = [(when, 1) for when, _ in admitted]
    check_bucket_bound(times, per_second, per_second)
    for k, (when, i) in enumerate(admitted):
        assert when >= arrivals[i] + 100.0 - EPS
        if when > arrivals[i] + 100.0 + EPS:  # it waited: for no longer than it had to
            assert was_full(times[:k], when - 1e-4, 1, per_second, per_second)


async def test_a_cancelled_waiter_leaves_no_slot_and_no_queue_position_behind():
    vt = VirtualTime()
    limiter = async_limiter(vt, {"requests_per_second": 1})
    gw = gateway(limiter)
    await gw.achat("a/m", "hi")  # the bucket is now empty
    first = asyncio.create_task(gw.achat("a/m", "first"))
    second = asyncio.create_task(gw.achat("a/m", "second"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert limiter.snapshot()["waiting"] == 2
    first.cancel()
    start = vt.now
    await vt.run([first, second])
    assert first.cancelled() and second.result().text == "ok"
    assert vt.now == pytest.approx(start + 1.0)  # the second took the first's place
    state = limiter.snapshot()
    assert state["waiting"] == 0 and state["buckets"][0]["waiting"] == 0
    assert state["buckets"][0]["available"] == pytest.approx(0.0)


async def test_an_admitted_call_cancelled_in_flight_gives_back_its_tokens():
    vt = VirtualTime()
    entered = asyncio.Event()

    class Hanging(MockProvider):
        async def achat(self, request):
            entered.set()
            await asyncio.Event().wait()

    limiter = async_limiter(vt, {"requests_per_hour": 5, "tokens_per_hour": 1000})
    gw = gateway(limiter, [Hanging("a", models=("m",))])
    task = asyncio.create_task(gw.achat("a/m", "hi", max_tokens=100))
    await entered.wait()
    assert bucket(limiter, "tokens_per_hour")["available"] == 899
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket(limiter, "tokens_per_hour")["available"] == 1000
    assert bucket(limiter, "requests_per_hour")["available"] == 4


async def test_tokens_given_back_wake_the_waiter_at_once():
    vt = VirtualTime()
    release = asyncio.Event()

    class Slow(MockProvider):
        async def achat(self, request):
            if request.max_tokens == 490:
                await release.wait()
            return ChatResponse(
                text="ok",
                finish_reason="stop",
                usage=Usage(input_tokens=5, output_tokens=5),
                provider="a",
                model=request.model,
            )

    limiter = RateLimiter(
        [{"tokens_per_minute": 600}],
        clock=vt,
        async_sleep=vt.sleep,
        estimate=lambda r: r.max_tokens + 10,
    )  # 10 tokens a second
    gw = gateway(limiter, [Slow("a", models=("m",))])
    done = {}

    async def call(size, at):
        await vt.sleep(at)
        await gw.achat("a/m", "hi", max_tokens=size)
        done[size] = vt.now - 100.0

    async def finish_the_first():
        await vt.sleep(5.0)
        release.set()

    # The first reserves 500 of 600 and uses 10; the second needs 300: without the refund it
    # would wait 20 s, with it it goes the moment the first ends.
    tasks = [call(490, 0.0), call(290, 1.0), finish_the_first()]
    await vt.run([asyncio.create_task(t) for t in tasks])
    assert done == {490: pytest.approx(5.0), 290: pytest.approx(5.0)}


def test_a_thread_that_times_out_raises_with_retry_after_and_leaves_the_queue():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_minute": 1}, timeout=2.0)
    gw = gateway(limiter)
    gw.chat("a/m", "hi")
    with pytest.raises(RateLimitedError, match="after waiting 2s") as info:
        gw.chat("a/m", "hi")
    assert info.value.retry_after == pytest.approx(58.0) and clock.sleeps == [2.0]
    assert limiter.snapshot()["waiting"] == 0 and bucket(limiter, "requests_per_minute")[
        "waiting"] == 0  # fmt: skip
    clock.advance(58.0)
    assert gw.chat("a/m", "hi").text == "ok" and clock.sleeps == [2.0]


async def test_a_task_that_times_out_behind_others_leaves_the_queue():
    vt = VirtualTime()
    limiter = async_limiter(vt, {"requests_per_minute": 1}, timeout=5.0)
    gw = gateway(limiter)
    await gw.achat("a/m", "hi")

    async def call(at):
        await vt.sleep(at)
        with pytest.raises(RateLimitedError) as info:
            await gw.achat("a/m", "hi")
        return info.value.retry_after, limiter.snapshot()["buckets"][0]["waiting"]

    # The first gives up at 5 s (a 55 s wait ahead), the second at 6 s, by then at the head.
    outcomes = await vt.run([asyncio.create_task(call(0.0)), asyncio.create_task(call(1.0))])
    assert outcomes == [(pytest.approx(55.0), 1), (pytest.approx(54.0), 0)]
    assert limiter.snapshot()["waiting"] == 0 and limiter.snapshot()["buckets"][0]["waiting"] == 0


# --- threads --------------------------------------------------------------------------------


def wait_until(condition):
    for _ in range(5000):
        if condition():
            return
        time.sleep(0.001)
    raise AssertionError("condition not reached")


def test_waiting_threads_are_served_first_come_first_served():
    clock = FakeClock()
    seen = []
    # The leader polls (1 ms real sleeps) while the test moves the clock a second at a time:
    # each second frees exactly one slot, so only the head of the queue can take it.
    limiter = RateLimiter(
        [{"requests_per_second": 1}], clock=clock, sleep=lambda s: time.sleep(0.001), timeout=60
    )
    gw = gateway(limiter, [answering(lambda r: Usage(input_tokens=1, output_tokens=1), record=lambda r: seen.append(
        r.messages[0].text))])  # fmt: skip
    gw.chat("a/m", "first")
    threads = []
    for i in range(4):
        threads.append(threading.Thread(target=gw.chat, args=("a/m", f"t{i}")))
        threads[-1].start()
        wait_until(lambda i=i: limiter.snapshot()["waiting"] == i + 1)
    for i in range(4):
        clock.advance(1.0)
        threads[i].join(timeout=10)
        assert not threads[i].is_alive()
        assert seen == ["first", *(f"t{k}" for k in range(i + 1))]
    assert limiter.snapshot()["waiting"] == 0


def test_threads_in_reject_mode_never_admit_more_than_the_bucket_holds():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_hour": 50}, mode="reject")
    gw = gateway(limiter)
    outcomes = []

    def worker():
        for _ in range(20):
            try:
                gw.chat("a/m", "hi")
                outcomes.append("ok")
            except RateLimitedError:
                outcomes.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 50 and outcomes.count("refused") == 110
    assert bucket(limiter, "requests_per_hour")["available"] == 0


def test_threads_in_wait_mode_all_pass_at_the_configured_rate():
    clock = FakeClock()
    limiter = sync_limiter(clock, {"requests_per_second": 5}, timeout=None)
    provider = MockProvider("a", models=("m",))
    gw = gateway(limiter, [provider])
    threads = [
        threading.Thread(target=lambda: [gw.chat("a/m", "hi") for _ in range(10)]) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(provider.requests) == 60 and not any(t.is_alive() for t in threads)
    assert clock.now - 100.0 >= (60 - 5) / 5 - EPS  # 5 at once, then 5 a second
    assert limiter.snapshot()["waiting"] == 0


def test_a_thread_is_woken_when_a_waiter_ahead_of_it_gives_up():
    # Real clock and real Condition waits (no injected sleep): the head's timeout wakes the
    # next thread, which then has the queue to itself.
    limiter = RateLimiter([{"requests_per_hour": 1}], timeout=0.02)
    gw = gateway(limiter)
    gw.chat("a/m", "hi")
    errors = []

    def call():
        try:
            gw.chat("a/m", "hi")
        except RateLimitedError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(errors) == 3 and not any(t.is_alive() for t in threads)
    assert limiter.snapshot()["waiting"] == 0
    assert limiter.snapshot()["buckets"][0]["waiting"] == 0


# --- snapshot -------------------------------------------------------------------------------


def test_snapshot_shows_buckets_queues_and_pauses():
    clock = FakeClock()
    limiter = sync_limiter(
        clock, RateLimitRule(key=("tenant", "model"), requests_per_minute=60, name="tm")
    )
    gw = gateway(limiter)
    gw.chat("a/m", "hi", tenant="acme")
    gw.chat("b/m", "hi")
    clock.advance(0.5)
    state = limiter.snapshot()
    assert state["mode"] == "wait" and state["waiting"] == 0 and state["paused"] == {}
    assert state["buckets"] == [
        {"rule": "tm", "key": "tenant=acme, model=a/m", "limit": "requests_per_minute",
         "capacity": 60.0, "available": 59.5, "waiting": 0, "full_in": pytest.approx(0.5)},
        {"rule": "tm", "key": "tenant=-, model=b/m", "limit": "requests_per_minute",
         "capacity": 60.0, "available": 59.5, "waiting": 0, "full_in": pytest.approx(0.5)},
    ]  # fmt: skip
    assert limiter.describe() == {
        "kind": "rate_limit", "type": "RateLimiter", "mode": "wait", "rules": ["tm"]
    }  # fmt: skip
    assert gw.pipeline[0] == "rate_limit"
