"""The budget as a sans-IO primitive (`Budget.admit` / `Budget.settle`) and its store.

The first half drives ``admit`` and ``settle`` by hand, with no driver, thread or event
loop: the verdicts are plain values. The second half runs the async and stream paths
through a gateway: the seeding query is blocking work that must run off the event loop,
and every call mode reserves and settles exactly once through the store.
"""

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import BudgetExceededError, ConfigError, ProviderServerError
from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.gateway.budget_limits import _Account
from aigw_lab.gateway.budget_store import MemoryBudgetStore, Refused
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Work
from aigw_lab.store.records import CallRecord
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from aigw_lab.types import ChatRequest, ChatResponse, Usage

# Output only is priced, so an estimate is exactly max_tokens * 1000 / 1e6 USD.
OUTPUT_ONLY = Price(input_per_mtok=0.0, output_per_mtok=1000.0)
T0 = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
MODES = ("chat", "achat", "stream", "astream")


@pytest.fixture
def clock():
    """Wall time stands still at T0 (nothing here crosses a period)."""
    return T0.timestamp


def answer(output_tokens, text="ok"):
    """A reply costing output_tokens * 1000 / 1e6 USD at OUTPUT_ONLY."""
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=0, output_tokens=output_tokens),
        provider="mock",
        model="m1",
    )


def context(gw, *, max_tokens=250, stream=False, **params) -> CallContext:
    request = ChatRequest.create("m1", "hi", max_tokens=max_tokens, **params)
    return CallContext(
        request, "mock", "m1", "t", stream=stream, started=0.0, started_wall=0.0, gateway=gw
    )


def bare_gateway(log=None) -> Gateway:
    return Gateway([MockProvider("mock", models=("m1",))], log=log, prices={"mock/m1": OUTPUT_ONLY})


def state(budget, name):
    (found,) = [r for r in budget.snapshot() if r["budget"] == name]
    return found


def spent_rows(log, *spends):
    """Rows of earlier calls by tenant acme, each ``spend`` USD, a minute before T0."""
    log.append_many(
        CallRecord(
            call_id=f"seed{i}",
            trace_id=f"seed{i}",
            timestamp=T0 - timedelta(minutes=1),
            provider_name="mock",
            request_model="m1",
            tenant_id="acme",
            cost_usd=usd,
        )
        for i, usd in enumerate(spends)
    )
    log.flush()


# --- admit and settle by hand: no driver, thread or loop ------------------------------------


def test_a_call_no_budget_applies_to_proceeds_with_nothing_to_settle(clock):
    budget = Budget([Limit("tenant", 1.0, "day", id="acme")], clock=clock)
    ctx = context(bare_gateway(), tenant="other")
    assert budget.admit(ctx, None) is PROCEED
    assert ctx.budget_estimate_usd is None


def test_admit_reserves_the_estimate_and_settle_charges_the_cost(clock):
    budget = Budget([Limit("tenant", 1.0, "day", id="acme")], clock=clock)
    ctx = context(bare_gateway(), tenant="acme")
    verdict = budget.admit(ctx, None)
    assert type(verdict) is Proceed and verdict.ticket is not None
    assert ctx.budget_estimate_usd == pytest.approx(0.25)
    held = state(budget, "tenant:acme/day")
    assert (held["reserved_usd"], held["in_flight"]) == (pytest.approx(0.25), 1)
    response = replace(answer(100), cost_usd=0.1)
    budget.settle(ctx, verdict.ticket, Outcome(response=response, answered=True))
    after = state(budget, "tenant:acme/day")
    assert (after["spent_usd"], after["reserved_usd"], after["in_flight"]) == (
        pytest.approx(0.1),
        0.0,
        0,
    )


@pytest.mark.parametrize(
    ("outcome", "charged"),
    [
        (Outcome(error=ProviderServerError("down"), answered=False), 0.0),  # failed: nothing
        (Outcome(error=None, answered=True), 0.25),  # cut after answering: its estimate
        (Outcome(error=asyncio.CancelledError(), answered=True), 0.25),
        (Outcome(response=answer(5), answered=True), 0.25),  # usage never priced: estimate
    ],
    ids=["failed", "cut-after-answering", "cancelled-after-answering", "unpriced-answer"],
)
def test_settle_charges_what_charged_usd_says(clock, outcome, charged):
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    ctx = context(bare_gateway())
    ticket = budget.admit(ctx, None).ticket
    budget.settle(ctx, ticket, outcome)
    assert state(budget, "gateway/day")["spent_usd"] == pytest.approx(charged)
    assert state(budget, "gateway/day")["reserved_usd"] == 0.0


def test_only_the_first_settlement_counts(clock):
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    ctx = context(bare_gateway())
    ticket = budget.admit(ctx, None).ticket
    budget.settle(ctx, ticket, Outcome(error=None, answered=True))
    budget.settle(ctx, ticket, Outcome(error=None, answered=True))
    held = state(budget, "gateway/day")
    assert (held["spent_usd"], held["in_flight"]) == (pytest.approx(0.25), 0)


def test_admit_raises_the_refusal_and_reserves_nothing(clock):
    budget = Budget(
        [Limit("gateway", 1.0, "day"), Limit("tenant", 0.2, "day", id="acme")], clock=clock
    )
    ctx = context(bare_gateway(), tenant="acme")
    with pytest.raises(BudgetExceededError, match="tenant 'acme' budget") as raised:
        budget.admit(ctx, None)
    assert raised.value.budget == "tenant:acme/day"
    assert raised.value.estimate_usd == pytest.approx(0.25)
    assert ctx.budget_estimate_usd is None
    # The gateway-wide account fitted, but a refusal reserves on none of them.
    assert state(budget, "gateway/day")["reserved_usd"] == 0.0


def test_an_account_seeded_from_the_log_is_work_then_a_reservation(log, clock):
    spent_rows(log, 0.5)
    budget = Budget([Limit("tenant", 1.0, "day")], log=log, clock=clock)  # default per tenant
    ctx = context(bare_gateway(), tenant="acme")
    verdict = budget.admit(ctx, None)
    assert type(verdict) is Work
    assert budget.snapshot() == []  # the query has not run: no account yet
    seeded = verdict.run()
    proceed = budget.admit(ctx, seeded)
    assert type(proceed) is Proceed
    held = state(budget, "tenant:acme/day")
    assert (held["spent_usd"], held["reserved_usd"]) == (pytest.approx(0.5), pytest.approx(0.25))
    # Once open, the account needs no more work.
    assert type(budget.admit(context(bare_gateway(), tenant="acme"), None)) is Proceed


def test_seeding_that_finds_the_limit_spent_refuses_after_the_work(log, clock):
    spent_rows(log, 0.6, 0.3)
    budget = Budget([Limit("tenant", 1.0, "day")], log=log, clock=clock)
    ctx = context(bare_gateway(), tenant="acme")
    work = budget.admit(ctx, None)
    with pytest.raises(BudgetExceededError, match=r"\$0\.90 spent"):
        budget.admit(ctx, work.run())


def test_an_in_memory_gateway_log_needs_no_work(clock):
    budget = Budget([Limit("tenant", 1.0, "day")], log="gateway", clock=clock)
    gw = Gateway(
        [MockProvider("mock", models=("m1",))], log=":memory:", prices={"mock/m1": OUTPUT_ONLY}
    )
    with gw:
        assert type(budget.admit(context(gw, tenant="acme"), None)) is Proceed


def test_two_seedings_of_one_account_race_and_the_first_to_finish_wins(log, clock):
    spent_rows(log, 0.1)
    budget = Budget([Limit("tenant", 1.0, "day")], log=log, clock=clock)
    first, second = context(bare_gateway(), tenant="acme"), context(bare_gateway(), tenant="acme")
    work_first, work_second = budget.admit(first, None), budget.admit(second, None)
    seeded_first = work_first.run()
    spent_rows(log, 0.2)  # lands between the two queries: only the second sees it
    seeded_second = work_second.run()
    budget.admit(second, seeded_second)  # the second query finished (opened) first
    budget.admit(first, seeded_first)  # its account is dropped; it reserves on the winner
    held = state(budget, "tenant:acme/day")
    assert (held["spent_usd"], held["reserved_usd"], held["in_flight"]) == (
        pytest.approx(0.3),
        pytest.approx(0.5),
        2,
    )


# --- the store ----------------------------------------------------------------------------


def test_memory_store_reserves_on_all_accounts_or_none(clock):
    store = MemoryBudgetStore()
    roomy = _Account(Limit("gateway", 1.0, "day"), None, clock())
    tight = _Account(Limit("tenant", 0.3, "day", id="acme"), "acme", clock())
    store.open([((0, None), roomy), ((1, "acme"), tight)])
    held = store.reserve([(0, None), (1, "acme")], 0.25, clock())
    refused = store.reserve([(0, None), (1, "acme")], 0.25, clock())
    assert type(refused) is Refused and refused.account is tight
    assert (refused.spent, refused.reserved) == (0.0, pytest.approx(0.25))
    assert (roomy.reserved, roomy.in_flight) == (pytest.approx(0.25), 1)
    store.settle(held, 0.2, clock())
    store.settle(held, 0.2, clock())
    assert (roomy.spent, roomy.reserved, tight.spent, tight.in_flight) == (0.2, 0.0, 0.2, 0)


def test_memory_store_open_keeps_the_first_account(clock):
    store = MemoryBudgetStore()
    limit = Limit("gateway", 1.0, "day")
    first, later = _Account(limit, None, clock()), _Account(limit, None, clock())
    assert store.missing([(0, None)]) == [(0, None)]
    store.open([((0, None), first)])
    store.open([((0, None), later)])
    assert store.missing([(0, None)]) == []
    store.reserve([(0, None)], 0.5, clock())
    assert (first.reserved, later.reserved) == (0.5, 0.0)


def test_a_store_without_the_store_operations_is_a_config_error():
    with pytest.raises(ConfigError, match="BudgetStore") as raised:
        Budget([Limit("gateway", 1.0)], store={"accounts": {}})
    assert "MemoryBudgetStore" in raised.value.hint


class CountingStore(MemoryBudgetStore):
    """The memory store, counting the operations a budget asks of it."""

    def __init__(self):
        super().__init__()
        self.reserved = 0
        self.settled = 0

    def reserve(self, keys, usd, now):
        self.reserved += 1
        return super().reserve(keys, usd, now)

    def settle(self, reservation, cost, now):
        self.settled += 1
        super().settle(reservation, cost, now)


def run(gw, mode, **params):
    if mode == "chat":
        return gw.chat("mock/m1", "hi", **params).cost_usd
    if mode == "achat":
        return asyncio.run(gw.achat("mock/m1", "hi", **params)).cost_usd
    if mode == "stream":
        with gw.stream("mock/m1", "hi", **params) as stream:
            return stream.until_done().cost_usd

    async def consume():
        async with gw.astream("mock/m1", "hi", **params) as stream:
            return (await stream.until_done()).cost_usd

    return asyncio.run(consume())


@pytest.mark.parametrize("mode", MODES)
def test_every_call_mode_reserves_and_settles_once_through_the_given_store(log, clock, mode):
    store = CountingStore()
    budget = Budget([Limit("tenant", 1.0, "day", id="acme")], clock=clock, store=store)
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "one two"))
    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        cost = run(gw, mode, tenant="acme", max_tokens=250)
    assert (store.reserved, store.settled) == (1, 1)
    held = state(budget, "tenant:acme/day")
    assert (held["spent_usd"], held["reserved_usd"], held["in_flight"]) == (
        pytest.approx(cost),
        0.0,
        0,
    )


# --- async paths: the seeding query runs off the event loop --------------------------------


class SlowQueries:
    """A call log whose queries hold until released, noting the thread they ran on."""

    def __init__(self, log):
        self.log = log
        self.release = threading.Event()
        self.started = threading.Event()
        self.threads: list[int] = []

    def execute(self, sql, params=None, *, strict=True):
        self.threads.append(threading.get_ident())
        self.started.set()
        # A bound, not a timing: a query run on the loop would hold it this long, then fail
        # the test below (the loop could not have ticked meanwhile).
        self.release.wait(10)
        return self.log.execute(sql, params, strict=strict)


@pytest.mark.parametrize("mode", ["achat", "astream"])
def test_async_seeding_runs_off_the_loop_while_the_loop_keeps_running(log, clock, mode):
    spent_rows(log, 0.5)
    slow = SlowQueries(log)
    budget = Budget([Limit("tenant", 1.0, "day")], log=slow, clock=clock)
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "one two"))

    async def go(gw):
        loop_thread = threading.get_ident()
        if mode == "achat":
            call = asyncio.ensure_future(gw.achat("mock/m1", "hi", tenant="acme", max_tokens=250))
        else:

            async def consume():
                async with gw.astream("mock/m1", "hi", tenant="acme", max_tokens=250) as s:
                    return await s.until_done()

            call = asyncio.ensure_future(consume())
        ticks = 0
        while not slow.started.is_set():  # the loop runs until the query starts...
            await asyncio.sleep(0.001)
        while ticks < 5:  # ...and keeps running while it is held
            await asyncio.sleep(0)
            ticks += 1
        assert not call.done()
        slow.release.set()
        response = await call
        return loop_thread, ticks, response

    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        loop_thread, ticks, response = asyncio.run(go(gw))
    assert ticks == 5 and slow.threads and loop_thread not in slow.threads
    held = state(budget, "tenant:acme/day")
    assert held["spent_usd"] == pytest.approx(0.5 + response.cost_usd)


@pytest.mark.parametrize("mode", ["chat", "stream"])
def test_sync_seeding_runs_inline_on_the_calling_thread(log, clock, mode):
    spent_rows(log, 0.5)
    slow = SlowQueries(log)
    slow.release.set()
    budget = Budget([Limit("tenant", 1.0, "day")], log=slow, clock=clock)
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "one two"))
    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        run(gw, mode, tenant="acme", max_tokens=250)
    assert slow.threads and set(slow.threads) == {threading.get_ident()}


# --- async streams: abandoned, cancelled, failed --------------------------------------------


def test_an_abandoned_async_stream_counts_its_estimate_and_its_attempt_is_logged(log, clock):
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "one two three four"))

    async def go(gw):
        stream = gw.astream("mock/m1", "hi", max_tokens=250)
        it = stream.__aiter__()
        first = await it.__anext__()
        assert state(budget, "gateway/day")["reserved_usd"] == pytest.approx(0.25)
        await stream.aclose()
        return first

    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        assert asyncio.run(go(gw))
        statuses = gw.query("SELECT status, budget_usd FROM calls").to_dict("records")
    held = state(budget, "gateway/day")
    assert (held["spent_usd"], held["reserved_usd"], held["in_flight"]) == (
        pytest.approx(0.25),
        0.0,
        0,
    )
    assert statuses == [{"status": "cancelled", "budget_usd": pytest.approx(0.25)}]


def test_a_cancelled_async_stream_task_is_settled_at_its_estimate(log, clock):
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    release = asyncio.Event()
    mock = MockProvider("mock", models=("m1",))

    async def go(gw):
        got_first = asyncio.Event()

        async def consume():
            async for _ in gw.astream("mock/m1", "hi", max_tokens=250):
                got_first.set()
                await release.wait()  # never set: the task is cancelled here

        task = asyncio.ensure_future(consume())
        await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    mock.enqueue(answer(100, "one two three"))
    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        asyncio.run(go(gw))
    held = state(budget, "gateway/day")
    assert (held["spent_usd"], held["in_flight"]) == (pytest.approx(0.25), 0)


@pytest.mark.parametrize("mode", MODES)
def test_a_call_failing_before_any_answer_counts_nothing(log, clock, mode):
    def boom(request):
        raise ProviderServerError("upstream down")

    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    provider = FunctionProvider(boom, "mock", models=("m1",))
    gw = Gateway([provider], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget])
    with gw, pytest.raises(ProviderServerError):
        run(gw, mode, max_tokens=250)
    held = state(budget, "gateway/day")
    assert (held["spent_usd"], held["reserved_usd"], held["in_flight"]) == (0.0, 0.0, 0)


def test_async_calls_racing_to_seed_one_account_all_reserve_on_the_winner(log, clock):
    spent_rows(log, 0.5)
    slow = SlowQueries(log)
    budget = Budget([Limit("tenant", 10.0, "day")], log=slow, clock=clock)
    callers = 6
    mock = MockProvider("mock", models=("m1",)).enqueue(*(answer(100) for _ in range(callers)))

    async def go(gw):
        calls = [
            asyncio.ensure_future(gw.achat("mock/m1", "hi", tenant="acme", max_tokens=250))
            for _ in range(callers)
        ]
        # Every call is admitted up to its seeding work before any query may finish.
        while len(slow.threads) < callers:
            await asyncio.sleep(0.001)
        slow.release.set()
        return await asyncio.gather(*calls)

    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        responses = asyncio.run(go(gw))
    held = state(budget, "tenant:acme/day")
    # One account won; no call's reservation or cost went to an account that lost.
    assert (held["reserved_usd"], held["in_flight"]) == (0.0, 0)
    assert held["spent_usd"] == pytest.approx(0.5 + sum(r.cost_usd for r in responses))


def test_an_async_call_cancelled_while_seeding_holds_nothing(log, clock):
    spent_rows(log, 0.5)
    slow = SlowQueries(log)
    budget = Budget([Limit("tenant", 1.0, "day")], log=slow, clock=clock)
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100))

    async def go(gw):
        call = asyncio.ensure_future(gw.achat("mock/m1", "hi", tenant="acme", max_tokens=250))
        while not slow.started.is_set():
            await asyncio.sleep(0.001)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        slow.release.set()  # the abandoned query ends; what it built is dropped
        return await gw.achat("mock/m1", "hi", tenant="acme", max_tokens=250)

    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        response = asyncio.run(go(gw))
        rows = gw.query("SELECT status FROM calls WHERE call_id NOT LIKE 'seed%'")
    held = state(budget, "tenant:acme/day")
    assert (held["reserved_usd"], held["in_flight"]) == (0.0, 0)
    assert held["spent_usd"] == pytest.approx(0.5 + response.cost_usd)
    assert len(mock.requests) == 1 and rows["status"].tolist().count("ok") == 1


def test_threads_racing_to_seed_one_account_all_reserve_on_the_winner(log, clock):
    spent_rows(log, 0.5)
    slow = SlowQueries(log)
    budget = Budget([Limit("tenant", 10.0, "day")], log=slow, clock=clock)
    callers = 4
    mock = MockProvider("mock", models=("m1",)).enqueue(*(answer(100) for _ in range(callers)))
    costs = []

    def call(gw):
        costs.append(gw.chat("mock/m1", "hi", tenant="acme", max_tokens=250).cost_usd)

    with Gateway([mock], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget]) as gw:
        threads = [threading.Thread(target=call, args=(gw,)) for _ in range(callers)]
        for t in threads:
            t.start()
        for _ in range(1000):  # every thread is in its seeding query before any may finish
            if len(slow.threads) == callers:
                break
            threading.Event().wait(0.01)
        slow.release.set()
        for t in threads:
            t.join(10)
    assert len(set(slow.threads)) == callers and len(costs) == callers
    held = state(budget, "tenant:acme/day")
    assert (held["reserved_usd"], held["in_flight"]) == (0.0, 0)
    assert held["spent_usd"] == pytest.approx(0.5 + sum(costs))
