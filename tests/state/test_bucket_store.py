"""`RedisBucketStore` against a real redis-server: the bucket-store suite every store runs
(tests/gateway/test_ratelimit_store.py, with the limiter's explicit times), then what only a
shared store must do: one set of buckets for several stores (processes), fair queues across
them, and a dead process's place in a queue given up."""

from __future__ import annotations

import pytest

from aigw_lab.gateway.ratelimit_rules import RateLimitRule
from aigw_lab.gateway.state import RedisBucketStore
from tests.gateway.test_ratelimit_store import (  # noqa: F401  (the suite, re-run here)
    arrive,
    levels,
    test_a_call_rejoining_after_a_pause_keeps_its_place,
    test_a_call_with_room_takes_from_every_bucket_of_its_claims,
    test_a_pause_holds_calls_to_its_target_and_steps_them_out_of_queues,
    test_a_refund_tells_the_head_of_the_queue_and_a_debt_tells_nobody,
    test_buckets_are_one_per_rule_and_key,
    test_charge_refunds_up_to_capacity_and_records_debt,
    test_leaving_the_queue_wakes_and_moves_the_next_up,
    test_queues_are_first_come_first_served_and_the_head_is_told_to_look,
    test_without_join_a_full_bucket_queues_nothing,
    waiter,
)

PER_MINUTE = RateLimitRule(requests_per_minute=10)


def make(shared, **options):
    options.setdefault("times", "caller")
    options.setdefault("poll", None)
    options.setdefault("lease", 1e9)
    store = RedisBucketStore(shared, **options)
    store.wakes = []
    store.subscribe(lambda waiters: store.wakes.append(None if waiters is None else [*waiters]))
    return store


@pytest.fixture
def store(shared):
    return make(shared)


def test_two_stores_on_one_server_share_their_buckets(shared):
    one, two = make(shared, times="server"), make(shared, times="server")
    claims = ((0, (), PER_MINUTE),)
    granted = [
        (one if i % 2 else two).arrive(waiter(), claims, 0.0, join=False) == 0.0 for i in range(15)
    ]
    assert granted == [True] * 10 + [False] * 5


def test_queues_are_fair_across_stores_and_a_waiter_behind_another_process_polls(shared):
    one, two = make(shared, poll=0.25), make(shared, poll=0.25)
    claims = ((0, (), RateLimitRule(requests_per_second=1)),)
    assert one.arrive(waiter(), claims, 0.0, join=True) == 0.0
    first, second = waiter(), waiter()
    assert one.arrive(first, claims, 0.0, join=True) == pytest.approx(1.0)
    assert two.arrive(second, claims, 0.0, join=True) == 0.25  # behind: it looks again
    assert two.step(second, 1.0) == 0.25  # there is room, but it is not its turn
    assert one.step(first, 1.0) == 0.0
    assert two.step(second, 1.0) == pytest.approx(1.0)  # now it leads
    assert two.step(second, 2.0) == 0.0


def test_a_queued_call_whose_process_died_loses_its_place_after_the_lease(shared):
    one, two = make(shared, lease=5.0), make(shared, lease=5.0)
    claims = ((0, (), RateLimitRule(requests_per_second=1)),)
    one.arrive(waiter(), claims, 0.0, join=True)
    dead, alive = waiter(), waiter()
    one.arrive(dead, claims, 0.0, join=True)  # its process stops looking from here
    assert two.arrive(alive, claims, 0.0, join=True) is None
    assert two.step(alive, 4.0) is None  # still within the dead one's lease
    assert two.step(alive, 5.5) == 0.0  # dropped: the live call leads and goes


def test_two_limiters_on_one_server_serve_waiting_calls_in_arrival_order(shared):
    from aigw_lab.gateway.primitive import Proceed, Wait
    from aigw_lab.gateway.ratelimit import RateLimiter

    now = [0.0]

    def limiter():
        store = RedisBucketStore(shared, times="caller", poll=0.25, lease=1e9)
        return RateLimiter([{"requests_per_second": 1}], clock=lambda: now[0], store=store)

    one, two = limiter(), limiter()  # two processes
    ctx = waiter().ctx
    assert isinstance(one.admit(ctx, None), Proceed)
    first = one.admit(ctx, None)  # arrives first, in process one
    second = two.admit(ctx, None)  # then process two
    assert isinstance(first, Wait) and first.seconds == pytest.approx(1.0)
    # Behind another process's call: a timed look again, never an endless wait (process
    # one cannot wake a call of process two).
    assert isinstance(second, Wait) and second.seconds == 0.25
    now[0] = 1.0
    again = two.admit(ctx, second.state)  # capacity is back, but it is not its turn
    assert isinstance(again, Wait)
    assert isinstance(one.admit(ctx, first.state), Proceed)
    now[0] = 2.0
    assert isinstance(two.admit(ctx, again.state), Proceed)
