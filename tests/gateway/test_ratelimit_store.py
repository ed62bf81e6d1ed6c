"""What a rate limiter's bucket store must do (`aigw_lab.gateway.ratelimit_store`), as a
suite any `BucketStore` can run: parametrized over store factories (the memory store now;
a shared store, issue 14, adds itself to ``STORES``). Each operation is called directly
with explicit times; ``wakes`` records each call of the store's subscriber: the calls it
should wake (None: all of them)."""

import pytest

from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.ratelimit_rules import RateLimitRule, _Waiter
from aigw_lab.gateway.ratelimit_store import MemoryBucketStore
from aigw_lab.types import ChatRequest

STORES = {"memory": MemoryBucketStore}

GLOBAL = RateLimitRule(requests_per_second=2, tokens_per_second=100)
PER_USER = RateLimitRule(key=("user",), requests_per_second=1)


@pytest.fixture(params=list(STORES))
def store(request):
    store = STORES[request.param]()
    store.wakes = []
    store.subscribe(lambda waiters: store.wakes.append(None if waiters is None else [*waiters]))
    return store


def waiter(tokens=10, provider="a", model="m"):
    ctx = CallContext(
        ChatRequest.create(model, "hi"), provider, model, "trace", stream=False, started=0.0,
        started_wall=0.0, gateway=None,
    )  # fmt: skip
    return _Waiter(ctx, tokens, 0)


def arrive(store, w, now=0.0, *, join=True, claims=((0, (), GLOBAL),)):
    return store.arrive(w, claims, now, join=join)


def levels(store, now):
    rows, _ = store.snapshot(now)
    return {(r["rule"], r["key"], r["limit"]): (r["available"], r["waiting"]) for r in rows}


def test_a_call_with_room_takes_from_every_bucket_of_its_claims(store):
    w = waiter(tokens=30)
    assert arrive(store, w, claims=((0, (), GLOBAL), (1, ("ann",), PER_USER))) == 0.0
    assert w.granted and not w.queued and w.ticket >= 0
    assert levels(store, 0.0) == {
        ("global", "", "requests_per_second"): (1.0, 0),
        ("global", "", "tokens_per_second"): (70.0, 0),
        ("user", "user=ann", "requests_per_second"): (0.0, 0),
    }
    assert store.wakes == []  # nothing queued moved


def test_without_join_a_full_bucket_queues_nothing(store):
    arrive(store, waiter(tokens=100))
    late = waiter(tokens=50)
    assert arrive(store, late, join=False) is None
    assert not late.queued and not late.granted
    paused, wait, _, slowest = store.wait_for(late, 0.0)
    assert paused == 0.0 and wait == pytest.approx(0.5)
    assert slowest == "rate limit 'global': 100 tokens per second"


def test_queues_are_first_come_first_served_and_the_head_is_told_to_look(store):
    arrive(store, waiter(tokens=100))
    first, second = waiter(tokens=50), waiter(tokens=10)
    assert arrive(store, first) == pytest.approx(0.5)  # at the head: a time
    assert arrive(store, second) is None  # behind it: until woken
    assert store.wait_for(second, 0.0)[1] == pytest.approx(0.6)  # counts the one ahead
    assert store.step(second, 0.6) is None  # enough for it, but not its turn
    assert store.step(first, 0.6) == 0.0
    assert store.wakes == [[second]]  # the queue moved: its new head looks again
    assert store.step(second, 0.6) == pytest.approx(0.0) and second.granted
    assert levels(store, 0.6)[("global", "", "tokens_per_second")] == (pytest.approx(0.0), 0)


def test_leaving_the_queue_wakes_and_moves_the_next_up(store):
    arrive(store, waiter(tokens=100))
    first, second = waiter(), waiter()
    arrive(store, first)
    arrive(store, second)
    store.leave(first)
    store.leave(first)  # twice is harmless
    assert store.wakes == [[second]] and not first.queued
    assert store.step(second, 0.0) == pytest.approx(0.1)  # now at the head


def test_charge_refunds_up_to_capacity_and_records_debt(store):
    w = waiter(tokens=40)
    arrive(store, w)
    store.charge(w, 1.0, 10.0, 0.0)  # used 10 of 40
    assert levels(store, 0.0)[("global", "", "tokens_per_second")][0] == 90.0
    big = waiter(tokens=40)
    arrive(store, big)
    store.charge(big, 1.0, 200.0, 0.0)  # used 160 more than it reserved
    assert levels(store, 0.0)[("global", "", "tokens_per_second")][0] == -110.0
    store.charge(big, 0.0, 0.0, 10.0)  # a refund never fills past capacity
    assert levels(store, 10.0)[("global", "", "requests_per_second")][0] == 2.0
    assert store.wakes == []  # nobody was queued to tell


def test_a_refund_tells_the_head_of_the_queue_and_a_debt_tells_nobody(store):
    big = waiter(tokens=80)
    arrive(store, big)
    queued = waiter(tokens=50)
    assert arrive(store, queued) == pytest.approx(0.3)  # 30 tokens short at 100 a second
    store.charge(big, 1.0, 30.0, 0.0)  # 50 of its 80 come back
    assert store.wakes == [[queued]]
    assert store.step(queued, 0.0) == 0.0
    late = waiter(tokens=100)
    arrive(store, late)
    store.charge(queued, 1.0, 90.0, 0.0)  # it used 40 more than it reserved
    assert store.wakes == [[queued]]


def test_a_pause_holds_calls_to_its_target_and_steps_them_out_of_queues(store):
    arrive(store, waiter(tokens=100))
    queued = waiter()
    arrive(store, queued)
    behind = waiter(provider="c")
    arrive(store, behind)
    store.pause("a", 5.0)
    assert store.wakes == [None]  # every waiting call looks: it may be the paused target's
    store.pause("a", 3.0)  # a shorter pause changes nothing
    assert store.wakes == [None] and store.has_pauses()
    assert store.step(queued, 1.0) == pytest.approx(4.0) and not queued.queued
    assert store.wakes == [None, [behind]]  # it stepped out: the next leads
    assert store.step(behind, 1.0) == 0.0  # not held behind the paused call
    other = waiter(provider="b")
    assert arrive(store, other, 1.0) == 0.0  # another provider is not held
    paused, _, target, _ = store.wait_for(queued, 1.0)
    assert paused == pytest.approx(4.0) and target == "a"
    assert store.snapshot(1.0)[1] == {"a": pytest.approx(4.0)}
    store.pause("a/m", 9.0)
    assert store.wait_for(queued, 1.0)[2] == "a/m"  # the model's pause is the longer
    assert store.step(queued, 9.0) == 0.0  # both over: it goes


def test_a_call_rejoining_after_a_pause_keeps_its_place(store):
    arrive(store, waiter(tokens=100))
    early, late = waiter(tokens=60, provider="b"), waiter(tokens=60)
    arrive(store, early)
    arrive(store, late)
    store.pause("b", 0.2)
    assert store.step(early, 0.1) == pytest.approx(0.1) and not early.queued  # stepped out
    assert store.step(late, 0.1) == pytest.approx(0.5)  # the head meanwhile
    assert store.step(early, 0.3) == pytest.approx(0.3) and early.queued  # back in front
    assert store.step(late, 0.3) is None  # behind the earlier ticket again


def test_buckets_are_one_per_rule_and_key(store):
    a, b, c = waiter(), waiter(), waiter()
    arrive(store, a, claims=((1, ("ann",), PER_USER),))
    arrive(store, b, claims=((1, ("bob",), PER_USER),))
    assert arrive(store, c, join=False, claims=((1, ("ann",), PER_USER),)) is None
    assert set(levels(store, 0.0)) == {
        ("user", "user=ann", "requests_per_second"),
        ("user", "user=bob", "requests_per_second"),
    }
