"""`RedisBudgetStore` against a real redis-server: what the memory store does (reserve on all
accounts or none, settle once, the first account opened wins), then what only a shared store
must do: several budgets (processes) on one set of accounts, leases that free a dead
process's reservations, accounts seeded again after Redis lost them."""

from __future__ import annotations

import pytest

from aigw_lab import Gateway
from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.gateway.budget_limits import _Account
from aigw_lab.gateway.budget_store import Refused
from aigw_lab.gateway.state import RedisBudgetStore, SharedState
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import MockProvider
from tests.gateway.test_budget_primitive import (  # the budget suite's helpers
    MODES,
    OUTPUT_ONLY,
    T0,
    answer,
    run,
    spent_rows,
    state,
)


@pytest.fixture
def clock():
    return T0.timestamp


def test_reserves_on_all_accounts_or_none_and_settles_once(shared, clock):
    store = RedisBudgetStore(shared)
    roomy = _Account(Limit("gateway", 1.0, "day"), None, clock())
    tight = _Account(Limit("tenant", 0.3, "day", id="acme"), "acme", clock())
    store.open([((0, None), roomy), ((1, "acme"), tight)])
    held = store.reserve([(0, None), (1, "acme")], 0.25, clock())
    refused = store.reserve([(0, None), (1, "acme")], 0.25, clock())
    assert type(refused) is Refused and refused.account.limit is tight.limit
    assert (refused.spent, refused.reserved) == (0.0, pytest.approx(0.25))
    assert refused.account.resets_at() is not None  # the refusal can say when it resets
    store.settle(held, 0.2, clock())
    store.settle(held, 0.2, clock())  # only the first settlement counts
    rows = {r["budget"]: r for r in store.snapshot(clock(), [])}
    assert [(r["spent_usd"], r["reserved_usd"], r["in_flight"]) for r in rows.values()] == [
        (pytest.approx(0.2), 0.0, 0)
    ] * 2


def test_the_first_process_to_open_an_account_wins(shared, clock):
    one, two = RedisBudgetStore(shared), RedisBudgetStore(shared)
    limit = Limit("gateway", 1.0, "day")
    first, later = _Account(limit, None, clock()), _Account(limit, None, clock())
    first.spent, later.spent = 0.5, 0.9  # seeded from each process's own log
    assert one.missing([(0, None)]) == [(0, None)]
    one.open([((0, None), first)])
    two.open([((0, None), later)])
    assert one.missing([(0, None)]) == [] and two.missing([(0, None)]) == []
    assert type(two.reserve([(0, None)], 0.4, clock())) is not Refused  # 0.5 + 0.4 fits
    assert type(one.reserve([(0, None)], 0.2, clock())) is Refused  # 0.9 + 0.2 does not


def budgets_on(shared, count, clock, limits):
    return [Budget(limits, clock=clock, store=RedisBudgetStore(shared)) for _ in range(count)]


def gateway(budget, log):
    mock = MockProvider("mock", models=("m1",))
    return Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]), mock


def test_three_processes_share_one_limit(shared, clock, log):
    budgets = budgets_on(shared, 3, clock, [Limit("tenant", 1.0, "day", id="acme")])
    paid = []
    for i in range(6):
        gw, mock = gateway(budgets[i % 3], log)
        mock.enqueue(answer(250))  # $0.25 each
        try:
            paid.append(gw.chat("mock/m1", "hi", tenant="acme", max_tokens=250).cost_usd)
        except Exception as exc:  # noqa: BLE001
            paid.append(type(exc).__name__)
    assert paid == [0.25] * 4 + ["BudgetExceededError"] * 2
    assert state(budgets[2], "tenant:acme/day")["spent_usd"] == pytest.approx(1.0)


def test_a_dead_process_reservation_is_freed_when_its_lease_runs_out(shared):
    now = [T0.timestamp()]
    limit = Limit("gateway", 1.0, "day")
    dead = RedisBudgetStore(shared, lease=60.0)
    alive = RedisBudgetStore(shared, lease=60.0)
    dead.open([((0, None), _Account(limit, None, now[0]))])
    alive.open([((0, None), _Account(limit, None, now[0]))])
    dead.reserve([(0, None)], 0.9, now[0])  # never settled: its process died
    assert type(alive.reserve([(0, None)], 0.2, now[0] + 30)) is Refused
    held = alive.reserve([(0, None)], 0.2, now[0] + 61)
    assert type(held) is not Refused
    (row,) = alive.snapshot(now[0] + 61, [])
    assert (row["reserved_usd"], row["in_flight"]) == (pytest.approx(0.2), 1)


def test_rolling_windows_forget_spend_older_than_the_window(shared):
    start = T0.timestamp()
    store = RedisBudgetStore(shared)
    limit = Limit("gateway", 1.0, 60.0)
    store.open([((0, None), _Account(limit, None, start))])
    store.settle(store.reserve([(0, None)], 0.5, start), 0.8, start)
    assert type(store.reserve([(0, None)], 0.5, start + 30)) is Refused
    assert type(store.reserve([(0, None)], 0.5, start + 61)) is not Refused


def test_a_new_day_starts_from_zero(shared):
    start = T0.timestamp()
    store = RedisBudgetStore(shared)
    limit = Limit("gateway", 1.0, "day")
    store.open([((0, None), _Account(limit, None, start))])
    held = store.reserve([(0, None)], 0.5, start)
    store.settle(held, 0.9, start)
    assert type(store.reserve([(0, None)], 0.5, start)) is Refused
    assert type(store.reserve([(0, None)], 0.5, start + 86_400)) is not Refused


@pytest.mark.parametrize("mode", MODES)
def test_every_call_mode_reserves_and_settles_on_redis(shared, clock, log, mode):
    (budget,) = budgets_on(shared, 1, clock, [Limit("tenant", 1.0, "day", id="acme")])
    gw, mock = gateway(budget, log)
    mock.enqueue(answer(100, "one two"))
    with gw:
        cost = run(gw, mode, tenant="acme", max_tokens=250)
    held = state(budget, "tenant:acme/day")
    assert (held["spent_usd"], held["reserved_usd"], held["in_flight"]) == (
        pytest.approx(cost),
        0.0,
        0,
    )


def test_accounts_lost_by_a_redis_restart_are_seeded_again_from_the_log(
    own_redis_server, clock, new_log_path
):
    state_ = SharedState.from_url(own_redis_server.url, prefix="r:")
    with CallLog(new_log_path) as log:
        spent_rows(log, 0.3)
        budget = Budget(
            [Limit("tenant", 1.0, "day", id="acme")], clock=clock, log=log,
            store=RedisBudgetStore(state_, recheck=0.0),
        )  # fmt: skip
        gw, mock = gateway(budget, log)
        mock.enqueue(answer(250))
        gw.chat("mock/m1", "hi", tenant="acme", max_tokens=250)
        assert state(budget, "tenant:acme/day")["spent_usd"] == pytest.approx(0.55)
        own_redis_server.stop()
        own_redis_server.start()  # empty: no persistence
        budget._store._outage._next_try = 0.0  # noqa: SLF001 (no wait for the retry window)
        mock.enqueue(answer(100))
        gw.chat("mock/m1", "hi", tenant="acme", max_tokens=100)
        # Seeded again from the log's row of the day (the first call's row is stamped with
        # the real date, not the budget's clock): 0.3 + 0.1, where an account simply made
        # afresh would hold 0.1.
        assert state(budget, "tenant:acme/day")["spent_usd"] == pytest.approx(0.4)
    state_.close()


@pytest.mark.parametrize(("seed", "kept"), [(0.5, 0.5), (0.1, 0.2)])
def test_an_account_remade_by_a_reservation_keeps_the_larger_of_its_count_and_the_seed(
    shared, seed, kept
):
    now = T0.timestamp()
    limit = Limit("gateway", 1.0, "day")
    store = RedisBudgetStore(shared, recheck=0.0)
    store.open([((0, None), _Account(limit, None, now))])
    for name in shared.client.scan_iter(match=shared.prefix + "*"):
        shared.client.delete(name)  # Redis lost it (a restart without persistence)
    store.settle(store.reserve([(0, None)], 0.2, now), 0.2, now)  # counted from zero
    assert store.missing([(0, None)]) == [(0, None)]  # not seeded: the budget seeds it
    seeded = _Account(limit, None, now)
    seeded.spent = seed  # what the call log says
    store.open([((0, None), seeded)])
    assert store.missing([(0, None)]) == []
    (row,) = store.snapshot(now, [])
    assert row["spent_usd"] == pytest.approx(kept)
