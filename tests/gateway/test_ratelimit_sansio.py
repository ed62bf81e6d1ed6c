"""The rate limiter as a sans-IO primitive (`aigw_lab.gateway.ratelimit`): ``admit``,
``withdraw``, ``observe`` and ``settle`` called directly, in sequences, with a fake clock:
no thread, no event loop, no gateway. What a driver would do is done by hand here (waiting
means moving the clock and asking again), so each verdict is checked as a value."""

from concurrent.futures import Future

import pytest

from aigw_lab.errors import AllAttemptsFailedError, RateLimitedError
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Wait
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.gateway.ratelimit_store import MemoryBucketStore
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, TextDelta, Usage


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):  # never called here: no driver runs
        raise AssertionError("a sans-IO test never sleeps")


def call(prompt="hi", provider="a", model="m", **params):
    request = ChatRequest.create(model, prompt, **params)
    return CallContext(
        request, provider, model, "trace", stream=False, started=0.0, started_wall=0.0,
        gateway=None,
    )  # fmt: skip


def answer(input_tokens, output_tokens):
    return ChatResponse(
        text="ok",
        finish_reason="stop",
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        provider="a",
        model="m",
    )


def available(limiter, limit):
    (row,) = [r for r in limiter.snapshot()["buckets"] if r["limit"] == limit]
    return row["available"]


def upstream_429(seconds):
    return RateLimitedError("slow down", retry_after=seconds, provider="a", model="m", status=429)


def limiter(*rules, clock, **kwargs):
    return RateLimiter(rules, clock=clock, sleep=clock.sleep, **kwargs)


# --- admission ------------------------------------------------------------------------------


def test_a_call_with_capacity_proceeds_with_its_claim_and_takes_it():
    clock = Clock()
    rl = limiter({"requests_per_minute": 2}, clock=clock)
    verdict = rl.admit(call(), None)
    assert type(verdict) is Proceed and verdict.ticket is not None
    assert available(rl, "requests_per_minute") == 1.0


def test_a_queued_call_waits_with_a_wake_future_and_goes_when_the_clock_allows():
    clock = Clock()
    rl = limiter({"requests_per_second": 1}, clock=clock)
    assert type(rl.admit(call(), None)) is Proceed
    second, third = call("second"), call("third")
    wait2 = rl.admit(second, None)
    assert type(wait2) is Wait and wait2.seconds == pytest.approx(1.0)
    assert isinstance(wait2.wake, Future) and not wait2.wake.done()
    assert wait2.sleep == clock.sleep  # the injected sleep travels with the verdict
    wait3 = rl.admit(third, None)
    assert wait3.seconds == pytest.approx(30.0) and wait3.sleep is None  # behind: until woken
    assert rl.snapshot()["waiting"] == 2
    clock.now += 0.5
    again = rl.admit(second, wait2.state)
    assert type(again) is Wait and again.seconds == pytest.approx(0.5)
    clock.now += 0.5
    assert type(rl.admit(second, again.state)) is Proceed
    assert wait3.wake.done()  # the queue moved: the next in line is told to look again
    head = rl.admit(third, wait3.state)
    assert type(head) is Wait and head.seconds == pytest.approx(1.0)
    assert rl.snapshot()["waiting"] == 1


def test_reject_mode_raises_at_once_and_queues_nothing():
    clock = Clock()
    rl = limiter({"requests_per_second": 1}, clock=clock, mode="reject")
    rl.admit(call(), None)
    with pytest.raises(RateLimitedError, match="1 requests per second reached") as info:
        rl.admit(call(), None)
    assert info.value.retry_after == pytest.approx(1.0)
    state = rl.snapshot()
    assert state["waiting"] == 0 and state["buckets"][0]["waiting"] == 0


def test_the_deadline_refuses_a_waiter_and_takes_it_out_of_the_queue():
    clock = Clock()
    rl = limiter({"requests_per_minute": 1}, clock=clock, timeout=2.0)
    rl.admit(call(), None)
    wait = rl.admit(call(), None)
    assert wait.seconds == pytest.approx(2.0)  # the wait is capped by what is left
    clock.now += 2.0
    with pytest.raises(RateLimitedError, match="after waiting 2s") as info:
        rl.admit(wait.state.ctx, wait.state)
    assert info.value.retry_after == pytest.approx(58.0)
    state = rl.snapshot()
    assert state["waiting"] == 0 and state["buckets"][0]["waiting"] == 0


def test_withdraw_gives_up_the_place_and_wakes_the_next():
    clock = Clock()
    rl = limiter({"requests_per_second": 1}, clock=clock, timeout=None)
    rl.admit(call(), None)
    first = rl.admit(call("first"), None)
    second = rl.admit(call("second"), None)
    assert second.seconds is None  # no timeout, behind another: only a wake ends it
    rl.withdraw(first.state.ctx, first.state)
    assert second.wake.done()
    assert rl.snapshot()["waiting"] == 1
    head = rl.admit(second.state.ctx, second.state)
    assert head.seconds == pytest.approx(1.0)  # it has the first one's place now
    rl.withdraw(second.state.ctx, second.state)
    rl.withdraw(second.state.ctx, second.state)  # twice is harmless
    state = rl.snapshot()
    assert state["waiting"] == 0 and state["buckets"][0]["waiting"] == 0
    assert state["buckets"][0]["available"] == pytest.approx(0.0)  # nothing was taken


def test_a_call_no_rule_covers_passes_with_a_ticket_only_to_learn_a_429():
    clock = Clock()
    rl = limiter({"match": {"provider": "b"}, "requests_per_second": 1}, clock=clock)
    verdict = rl.admit(call(), None)
    assert type(verdict) is Proceed and verdict is not PROCEED and verdict.ticket is not None
    quiet = limiter({"match": {"provider": "b"}, "requests_per_second": 1}, clock=clock,
                    pause_on_429="off")  # fmt: skip
    assert quiet.admit(call(), None) is PROCEED  # nothing to settle at all


def test_a_request_no_bucket_can_hold_is_refused_without_a_claim():
    clock = Clock()
    rl = limiter({"key": ["user"], "tokens_per_minute": 50}, clock=clock)
    with pytest.raises(RateLimitedError, match=r"'user' \(user=ann\): 50 tokens per minute"):
        rl.admit(call(max_tokens=100, user="ann"), None)
    assert rl.snapshot()["waiting"] == 0


# --- settling -------------------------------------------------------------------------------


def test_settle_charges_real_usage_and_a_failure_gives_tokens_back():
    clock = Clock()
    rl = limiter({"requests_per_minute": 10, "tokens_per_minute": 1000}, clock=clock)
    ctx = call("x" * 40, max_tokens=90)  # estimate 10 + 90
    ticket = rl.admit(ctx, None).ticket
    assert available(rl, "tokens_per_minute") == 900
    ctx.attempt = 1
    rl.settle(ctx, ticket, Outcome(response=answer(10, 5), answered=True))
    assert available(rl, "tokens_per_minute") == 985
    failed = call("x" * 40, max_tokens=90)
    ticket = rl.admit(failed, None).ticket
    failed.attempt = 1
    rl.settle(failed, ticket, Outcome(error=RuntimeError("boom")))
    assert available(rl, "tokens_per_minute") == 985  # all 100 came back
    assert available(rl, "requests_per_minute") == 8  # both reached the provider


def test_a_call_that_never_reached_a_provider_gives_everything_back():
    clock = Clock()
    rl = limiter({"requests_per_minute": 10, "tokens_per_minute": 1000}, clock=clock)
    ctx = call(max_tokens=10)
    ticket = rl.admit(ctx, None).ticket
    rl.settle(ctx, ticket, Outcome(response=answer(5, 5), answered=True))  # attempt 0: a hit
    assert available(rl, "requests_per_minute") == 10
    assert available(rl, "tokens_per_minute") == 1000


def test_observed_text_of_a_cut_stream_is_paid_for():
    clock = Clock()
    rl = limiter({"tokens_per_minute": 1000}, clock=clock)
    assert rl.observes  # token limits look at streams
    ctx = call("x" * 40, max_tokens=300)  # prompt 10 + allowance 300
    ticket = rl.admit(ctx, None).ticket
    ctx.attempt = 1
    rl.observe(ctx, ticket, TextDelta(text="word "))
    rl.observe(ctx, ticket, TextDelta(text="more "))  # 10 characters: 3 tokens
    rl.settle(ctx, ticket, Outcome(error=GeneratorExit(), answered=True))
    assert available(rl, "tokens_per_minute") == 1000 - (10 + 3)
    assert not limiter({"requests_per_minute": 1}, clock=clock).observes


def test_a_stream_end_settles_with_its_usage():
    clock = Clock()
    rl = limiter({"tokens_per_minute": 1000}, clock=clock)
    ctx = call(max_tokens=200)
    ticket = rl.admit(ctx, None).ticket
    ctx.attempt = 1
    end = StreamEnd(response=answer(7, 3))
    rl.observe(ctx, ticket, end)
    rl.settle(ctx, ticket, Outcome(response=end.response, answered=True))
    assert available(rl, "tokens_per_minute") == 990


def test_a_refund_wakes_a_waiter_at_once():
    clock = Clock()
    rl = limiter({"tokens_per_minute": 600}, clock=clock, estimate=lambda r: r.max_tokens)
    first = call(max_tokens=500)
    ticket = rl.admit(first, None).ticket
    wait = rl.admit(call(max_tokens=300), None)
    assert wait.seconds == pytest.approx(20.0)
    first.attempt = 1
    rl.settle(first, ticket, Outcome(response=answer(5, 5), answered=True))
    assert wait.wake.done()
    assert type(rl.admit(wait.state.ctx, wait.state)) is Proceed  # no time passed


def test_an_upstream_429_pauses_the_provider_and_wakes_waiters_to_look():
    clock = Clock()
    rl = limiter({"requests_per_second": 1}, clock=clock)
    ctx = call()
    ticket = rl.admit(ctx, None).ticket
    waiting = rl.admit(call(), None)
    ctx.attempt = 1
    errors = AllAttemptsFailedError("all failed", errors=[upstream_429(5.0)])
    rl.settle(ctx, ticket, Outcome(error=errors))
    assert rl.snapshot()["paused"] == {"a": pytest.approx(5.0)}
    assert waiting.wake.done()
    paused = rl.admit(waiting.state.ctx, waiting.state)
    assert paused.seconds == pytest.approx(5.0)  # the pause, not the bucket
    assert rl.snapshot()["buckets"][0]["waiting"] == 0  # it stepped out of the queue
    other = rl.admit(call(provider="b"), None)  # another provider on the same bucket
    assert other.seconds == pytest.approx(1.0)  # at the head: not behind the paused call


def test_an_unclaimed_call_meeting_a_429_pauses_its_provider():
    clock = Clock()
    rl = limiter(clock=clock, mode="reject")  # no rules at all
    ctx = call()
    ticket = rl.admit(ctx, None).ticket
    rl.settle(ctx, ticket, Outcome(error=upstream_429(3.0)))
    with pytest.raises(RateLimitedError, match="a is paused") as info:
        rl.admit(call(), None)
    assert info.value.retry_after == pytest.approx(3.0)
    clock.now += 3.0
    assert type(rl.admit(call(), None)) is Proceed


# --- the store ------------------------------------------------------------------------------


class CountingStore(MemoryBucketStore):
    """A store that records which operations the limiter asked of it."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def arrive(self, waiter, claims, now, *, join):
        self.ops.append("arrive")
        return super().arrive(waiter, claims, now, join=join)

    def step(self, waiter, now, *, join=True):
        self.ops.append("step")
        return super().step(waiter, now, join=join)

    def leave(self, waiter):
        self.ops.append("leave")
        super().leave(waiter)

    def charge(self, waiter, requests, tokens, now):
        self.ops.append("charge")
        super().charge(waiter, requests, tokens, now)

    def pause(self, target, until):
        self.ops.append("pause")
        super().pause(target, until)


def test_all_state_lives_in_the_given_store():
    clock = Clock()
    store = CountingStore()
    rl = limiter({"requests_per_second": 1}, clock=clock, store=store)
    ctx = call()
    ticket = rl.admit(ctx, None).ticket
    waiting = rl.admit(call(), None)
    rl.withdraw(waiting.state.ctx, waiting.state)
    ctx.attempt = 1
    rl.settle(ctx, ticket, Outcome(error=upstream_429(2.0)))
    assert store.ops == ["arrive", "arrive", "step", "leave", "charge", "pause"]
    rows, paused = store.snapshot(clock())
    assert rl.snapshot()["buckets"] == rows and paused == {"a": pytest.approx(2.0)}
    # Two limiters on one store share its buckets (as processes would share a remote one).
    twin = limiter({"requests_per_second": 1}, clock=clock, store=store, mode="reject")
    with pytest.raises(RateLimitedError):
        twin.admit(call(provider="b"), None)


def test_a_wait_that_ended_unwoken_keeps_its_armed_future():
    clock = Clock()
    rl = limiter({"requests_per_second": 1}, clock=clock)
    rl.admit(call(), None)
    first = rl.admit(call(), None)
    clock.now += 0.5  # its timer ran out early (a driver's timeout): nobody woke it
    again = rl.admit(first.state.ctx, first.state)
    assert again.wake is first.wake and not again.wake.done()
    rl.withdraw(first.state.ctx, first.state)
    assert rl.snapshot()["waiting"] == 0
