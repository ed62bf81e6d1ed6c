"""Spending limits (`aigw_lab.gateway.budget`).

Time never really passes: budgets read an injected wall clock that tests move by hand.
Estimates in these tests are computed from the documented rule (ceil(chars / 4) + 4 tokens
per message, plus max_tokens, at the model's price), not copied from the implementation.
"""

import asyncio
import math
import pickle
import threading
from datetime import UTC, datetime, timedelta

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import BudgetExceededError, ConfigError, ProviderServerError
from aigw_lab.gateway.budget import (
    Budget,
    Limit,
    estimate_cost,
    estimate_input_tokens,
)
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.pricing import PriceBook, UnknownPriceWarning
from aigw_lab.store import CallLog
from aigw_lab.store.records import CallRecord
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, TextDelta, Usage

# Output only is priced, so an estimate is exactly max_tokens * 1000 / 1e6 USD.
OUTPUT_ONLY = Price(input_per_mtok=0.0, output_per_mtok=1000.0)
T0 = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start=T0):
        self.now = start.timestamp()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds

    def set(self, when):
        self.now = when.timestamp()


@pytest.fixture
def clock():
    return FakeClock()


def answer(output_tokens, text="ok"):
    """A reply costing output_tokens * 1000 / 1e6 USD at OUTPUT_ONLY."""
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=0, output_tokens=output_tokens),
        provider="mock",
        model="m1",
    )


def make_gateway(log, provider, budget, *more, price=OUTPUT_ONLY, clock=None):
    return Gateway(
        [provider],
        log=log,
        prices={f"{provider.name}/m1": price},
        middleware=[budget, *more],
        clock=clock or (lambda: T0.timestamp()),
    )


def documented_estimate(prompt, max_tokens, price, messages=1):
    input_tokens = math.ceil(len(prompt) / 4) + 4 * messages
    return (input_tokens * price.input_per_mtok + max_tokens * price.output_per_mtok) / 1e6


def row(budget, name):
    (found,) = [r for r in budget.snapshot() if r["budget"] == name]
    return found


# --- estimates ----------------------------------------------------------------------------


def test_input_estimate_is_four_characters_a_token_plus_framing():
    request = ChatRequest.create("m1", [{"role": "user", "content": "x" * 10}], system="abcd")
    assert estimate_input_tokens(request) == math.ceil(14 / 4) + 2 * 4
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    with_tools = ChatRequest.create("m1", "x" * 10, tools=[tool])
    assert estimate_input_tokens(with_tools) > estimate_input_tokens(
        ChatRequest.create("m1", "x" * 10)
    )


def test_cost_estimate_uses_max_tokens_or_the_default_allowance():
    price = Price(input_per_mtok=3.0, output_per_mtok=15.0)
    prices = PriceBook({"p/m": price}, use_genai_prices=False)
    prompt = "y" * 401
    with_max = estimate_cost(ChatRequest.create("m", prompt, max_tokens=50), prices, "p", "m")
    assert with_max.usd == pytest.approx(documented_estimate(prompt, 50, price))
    default = estimate_cost(
        ChatRequest.create("m", prompt), prices, "p", "m", default_output_tokens=300
    )
    assert (default.output_tokens, default.usd) == (
        300,
        pytest.approx(documented_estimate(prompt, 300, price)),
    )


# --- refusal before sending ---------------------------------------------------------------


def test_a_call_over_budget_is_refused_before_sending_and_logged_as_attempt_0(log, clock):
    mock = MockProvider("mock", models=("m1",))
    budget = Budget([Limit("tenant", 0.1, "day", id="acme")], clock=clock)
    gw = make_gateway(log, mock, budget)
    with pytest.raises(BudgetExceededError) as raised:
        gw.chat("mock/m1", "hello", tenant="acme", max_tokens=250)
    assert mock.requests == []  # never sent
    err = raised.value
    text = str(err)
    assert "mock/m1" in text and "tenant 'acme' budget of $0.10 per day (UTC)" in text
    assert "estimated at $0.25" in text and "$0.00 spent" in text
    assert "250 output tokens allowed" in text
    assert "2025-06-16 00:00 UTC" in err.hint and "max_tokens" in err.hint
    assert (err.budget, err.limit_usd, err.spent_usd, err.estimate_usd) == (
        "tenant:acme/day",
        0.1,
        0.0,
        pytest.approx(0.25),
    )
    assert pickle.loads(pickle.dumps(err)).budget == "tenant:acme/day"
    got = log.query(
        "SELECT attempt, status, error_type, tenant_id, cost_usd IS NULL AS unpriced FROM calls"
    )
    assert got.to_dict("records") == [
        {
            "attempt": 0,
            "status": "error",
            "error_type": "budget_exceeded",
            "tenant_id": "acme",
            "unpriced": True,
        }
    ]
    # Another tenant has no limit here, and the gateway-wide budget is not configured.
    assert gw.chat("mock/m1", "hello", tenant="other", max_tokens=250).text == "ok"
    assert len(mock.requests) == 1


def test_actual_cost_replaces_the_estimate_after_each_call(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100), answer(100), answer(100))
    budget = Budget([Limit("user", 0.5, "month")], clock=clock)  # default per-user limit
    gw = make_gateway(log, mock, budget)
    costs = []
    for _ in range(3):  # spent before each: 0, 0.1, 0.2; each estimated at 0.25
        costs.append(gw.chat("mock/m1", "hi", user="bob", max_tokens=250).cost_usd)
    assert costs == [pytest.approx(0.1)] * 3
    state = row(budget, "user:bob/month")
    assert state["spent_usd"] == pytest.approx(sum(costs))
    assert (state["reserved_usd"], state["in_flight"]) == (0.0, 0)
    assert state["remaining_usd"] == pytest.approx(0.5 - sum(costs))
    with pytest.raises(BudgetExceededError, match=r"\$0\.30 spent"):  # 0.3 + 0.25 > 0.5
        gw.chat("mock/m1", "hi", user="bob", max_tokens=250)
    assert len(mock.requests) == 3
    # the default applies to each user separately
    assert gw.chat("mock/m1", "hi", user="carol", max_tokens=250).text == "ok"


def test_an_explicit_limit_overrides_the_default_and_all_applicable_budgets_are_checked(log, clock):
    mock = MockProvider("mock", models=("m1",))
    budget = Budget(
        [
            Limit("user", 0.1, "day"),
            Limit("user", 1.0, "day", id="vip"),
            Limit("gateway", 0.6, "total"),
        ],
        clock=clock,
    )
    gw = make_gateway(log, mock, budget)
    spent = gw.chat("mock/m1", "hi", user="vip", max_tokens=250).cost_usd  # over the default
    with pytest.raises(BudgetExceededError, match="default per-user limit"):
        gw.chat("mock/m1", "hi", user="someone", max_tokens=250)
    mock.enqueue(answer(500))
    spent += gw.chat("mock/m1", "hi", user="vip", max_tokens=250).cost_usd  # 0.5
    assert spent + 0.1 > 0.6  # the next estimate fits vip's own 1.0, not the gateway's 0.6
    with pytest.raises(BudgetExceededError, match="gateway-wide budget") as raised:
        gw.chat("mock/m1", "hi", user="vip", max_tokens=100)
    assert "a total budget never resets" in raised.value.hint


def test_a_failed_call_releases_its_reservation(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(
        ProviderServerError("boom", provider="mock", model="m1", status=500)
    )
    budget = Budget([Limit("gateway", 0.3, "day")], clock=clock)
    gw = make_gateway(log, mock, budget)
    with pytest.raises(ProviderServerError):
        gw.chat("mock/m1", "hi", max_tokens=250)
    state = row(budget, "gateway/day")
    assert (state["spent_usd"], state["reserved_usd"], state["in_flight"]) == (0.0, 0.0, 0)
    assert gw.chat("mock/m1", "hi", max_tokens=250).text == "ok"  # the 0.25 fits again


def test_cache_hits_cost_nothing(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100))
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    gw = make_gateway(log, mock, budget, ExactCache())
    first = gw.chat("mock/m1", "same", max_tokens=250)
    second = gw.chat("mock/m1", "same", max_tokens=250)
    assert (second.cache_status, second.cost_usd, len(mock.requests)) == ("hit", 0.0, 1)
    assert row(budget, "gateway/day")["spent_usd"] == pytest.approx(first.cost_usd)


@pytest.mark.filterwarnings("ignore:no price known for:aigw_lab.pricing.UnknownPriceWarning")
def test_unknown_price_is_allowed_with_a_warning_or_refused_when_strict(log, clock):
    mock = MockProvider("mock", models=("m1", "free"))
    gw = make_gateway(log, mock, Budget([Limit("gateway", 1.0, "day")], clock=clock))
    with pytest.warns(UnknownPriceWarning, match="budgets admit"):
        assert gw.chat("mock/free", "hi").text == "ok"
    strict = Budget([Limit("gateway", 1.0, "day")], unknown_price="refuse", clock=clock)
    gw2 = make_gateway(log, MockProvider("mock", models=("m1", "free")), strict)
    with pytest.raises(BudgetExceededError, match="no price is known") as raised:
        gw2.chat("mock/free", "hi")
    assert 'unknown_price = "allow"' in raised.value.hint


def test_an_exhausted_budget_refuses_even_unpriced_calls(log, clock):
    mock = MockProvider("mock", models=("m1", "free"))
    gw = make_gateway(log, mock, Budget([Limit("gateway", 0.0, "day")], clock=clock))
    with pytest.warns(UnknownPriceWarning), pytest.raises(BudgetExceededError):
        gw.chat("mock/free", "hi")
    assert mock.requests == []


# --- concurrency --------------------------------------------------------------------------


class Gate:
    """Holds admitted calls inside the provider until every caller has been decided, so all
    admitted estimates are reserved at the same time."""

    def __init__(self, callers):
        self.callers = callers
        self.decided = 0
        self.entered = 0
        self.cond = threading.Condition()

    def mark(self, entered):
        with self.cond:
            self.decided += 1
            self.entered += entered
            self.cond.notify_all()

    def wait_all(self):
        with self.cond:
            assert self.cond.wait_for(lambda: self.decided >= self.callers, timeout=10)


def test_threads_cannot_jointly_overshoot_by_their_estimates(log, clock):
    callers = 10
    gate = Gate(callers)

    def held(request):
        gate.mark(True)
        gate.wait_all()
        return answer(0)

    provider = FunctionProvider(held, "mock", models=("m1",))
    budget = Budget([Limit("tenant", 1.0, "day", id="acme")], clock=clock)
    gw = make_gateway(log, provider, budget)
    outcomes = []

    def call():
        try:
            gw.chat("mock/m1", "hi", tenant="acme", max_tokens=250)  # 0.25 each
            outcomes.append("ok")
        except BudgetExceededError:
            outcomes.append("refused")
            gate.mark(False)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    admitted = outcomes.count("ok")
    assert admitted == gate.entered == len(provider.requests)
    assert admitted * 0.25 <= 1.0 and (admitted + 1) * 0.25 > 1.0  # as many as fit, no more
    state = row(budget, "tenant:acme/day")
    assert (state["reserved_usd"], state["in_flight"], state["spent_usd"]) == (0.0, 0, 0.0)


async def test_asyncio_tasks_cannot_jointly_overshoot_by_their_estimates(log, clock):
    release = asyncio.Event()
    entered = []

    class HeldProvider(MockProvider):
        async def achat(self, request):
            entered.append(request)
            await release.wait()
            return answer(0)

    budget = Budget([Limit("experiment", 1.0, "total", id="e1")], clock=clock)
    gw = make_gateway(log, HeldProvider("mock", models=("m1",)), budget)

    async def call():
        try:
            await gw.achat("mock/m1", "hi", experiment_id="e1", max_tokens=250)
            return "ok"
        except BudgetExceededError:
            return "refused"

    tasks = [asyncio.create_task(call()) for _ in range(10)]
    while sum(t.done() for t in tasks) + len(entered) < len(tasks):
        await asyncio.sleep(0)
    assert row(budget, "experiment:e1/total")["reserved_usd"] == pytest.approx(0.25 * len(entered))
    release.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count("ok") == len(entered) == 4  # 4 * 0.25 fills the 1.0 exactly
    assert row(budget, "experiment:e1/total")["in_flight"] == 0


# --- periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "before_reset", "reset"),
    [
        ("day", datetime(2025, 6, 15, 23, 59, 59, tzinfo=UTC), datetime(2025, 6, 16, tzinfo=UTC)),
        ("month", datetime(2025, 6, 30, 23, 59, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)),
        ("month", datetime(2025, 12, 31, 23, 0, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_calendar_periods_reset_at_utc_boundaries(log, clock, period, before_reset, reset):
    mock = MockProvider("mock", models=("m1",))
    budget = Budget([Limit("gateway", 0.3, period)], clock=clock)
    gw = make_gateway(log, mock, budget)
    clock.set(before_reset - timedelta(hours=1))
    mock.enqueue(answer(250))
    gw.chat("mock/m1", "hi", max_tokens=250)
    clock.set(before_reset)
    with pytest.raises(BudgetExceededError) as raised:
        gw.chat("mock/m1", "hi", max_tokens=250)
    assert f"{reset:%Y-%m-%d %H:%M} UTC" in raised.value.hint
    assert row(budget, f"gateway/{period}")["resets_at"] == reset
    clock.set(reset)
    assert gw.chat("mock/m1", "hi", max_tokens=250).text == "ok"


def test_total_budgets_never_reset(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(250))
    budget = Budget([Limit("gateway", 0.3, "total")], clock=clock)
    gw = make_gateway(log, mock, budget)
    gw.chat("mock/m1", "hi", max_tokens=250)
    clock.advance(400 * 86_400)
    with pytest.raises(BudgetExceededError):
        gw.chat("mock/m1", "hi", max_tokens=250)


def test_a_rolling_window_lets_spend_drop_out(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(200), answer(200))
    budget = Budget([Limit("gateway", 0.5, 3600)], clock=clock)
    gw = make_gateway(log, mock, budget)
    gw.chat("mock/m1", "hi", max_tokens=250)  # spent 0.2 at t
    clock.advance(1800)
    gw.chat("mock/m1", "hi", max_tokens=250)  # spent 0.4 at t + 1800
    with pytest.raises(BudgetExceededError, match="rolling 3600 seconds"):
        gw.chat("mock/m1", "hi", max_tokens=250)
    clock.advance(1800)  # the first 0.2 leaves the window
    assert row(budget, "gateway/3600s")["spent_usd"] == pytest.approx(0.2)
    assert gw.chat("mock/m1", "hi", max_tokens=250).text == "ok"


def test_a_call_admitted_before_a_reset_counts_in_its_own_period(log, clock):
    clock.set(datetime(2025, 6, 15, 23, 59, tzinfo=UTC))

    def crosses_midnight(request):
        clock.advance(120)
        return answer(250)

    provider = FunctionProvider(crosses_midnight, "mock", models=("m1",))
    budget = Budget([Limit("gateway", 0.3, "day")], clock=clock)
    gw = make_gateway(log, provider, budget)
    gw.chat("mock/m1", "hi", max_tokens=250)
    state = row(budget, "gateway/day")  # the new day: the call's cost went to the old one
    assert (state["spent_usd"], state["reserved_usd"]) == (0.0, 0.0)


# --- streams ------------------------------------------------------------------------------


def test_streams_reserve_before_and_reconcile_at_their_end(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "one two three"))
    budget = Budget([Limit("gateway", 0.3, "day")], clock=clock)
    gw = make_gateway(log, mock, budget)
    with gw.stream("mock/m1", "hi", max_tokens=250) as stream:
        first = next(iter(stream))
        assert first == "one "
        assert row(budget, "gateway/day")["reserved_usd"] == pytest.approx(0.25)
        response = stream.until_done()
    state = row(budget, "gateway/day")
    assert (state["spent_usd"], state["reserved_usd"]) == (pytest.approx(response.cost_usd), 0)
    with pytest.raises(BudgetExceededError), gw.stream("mock/m1", "hi", max_tokens=250) as s:
        list(s)
    refused = log.query("SELECT attempt, stream, error_type FROM calls WHERE status = 'error'")
    assert refused.to_dict("records") == [
        {"attempt": 0, "stream": True, "error_type": "budget_exceeded"}
    ]


def test_a_stream_closed_early_releases_its_reservation(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "one two three"))
    budget = Budget([Limit("gateway", 0.3, "day")], clock=clock)
    gw = make_gateway(log, mock, budget)
    with gw.stream("mock/m1", "hi", max_tokens=250) as stream:
        next(iter(stream))
    state = row(budget, "gateway/day")
    assert (state["reserved_usd"], state["in_flight"]) == (0.0, 0)
    # Issue 9: the upstream had begun answering, so the call was paid for but its usage
    # never came: it counts at its estimate (it used to count 0).
    assert state["spent_usd"] > 0


async def test_async_streams_reconcile_at_their_end(log, clock):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer(100, "a b"))
    budget = Budget([Limit("gateway", 0.3, "day")], clock=clock)
    gw = make_gateway(log, mock, budget)
    async with gw.astream("mock/m1", "hi", max_tokens=250) as stream:
        response = await stream.until_done()
    assert row(budget, "gateway/day")["spent_usd"] == pytest.approx(response.cost_usd)
    with pytest.raises(BudgetExceededError):
        async with gw.astream("mock/m1", "hi", max_tokens=250) as stream:
            await stream.until_done()


def test_hooks_used_directly_settle_on_stream_end(clock):
    """The stream hook settles at the StreamEnd event, before yielding it."""
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    gw = Gateway([MockProvider("mock", models=("m1",))], log=None, prices={"mock/m1": OUTPUT_ONLY})
    request = ChatRequest.create("m1", "hi", max_tokens=250)
    ctx = CallContext(
        request, "mock", "m1", "t", stream=True, started=0.0, started_wall=0.0, gateway=gw
    )

    def upstream(_ctx):
        yield TextDelta("x")
        yield StreamEnd(
            ChatResponse(
                text="x",
                finish_reason="stop",
                usage=Usage(input_tokens=0, output_tokens=0),
                provider="mock",
                model="m1",
                cost_usd=0.125,
            )
        )

    events = budget.handle_stream(ctx, upstream)
    next(events)
    assert row(budget, "gateway/day")["reserved_usd"] == pytest.approx(0.25)
    next(events)  # the StreamEnd
    assert row(budget, "gateway/day")["spent_usd"] == pytest.approx(0.125)
    events.close()


# --- seeding from the call log ------------------------------------------------------------


def test_spend_survives_a_restart_through_the_call_log(tmp_path, clock):
    path = tmp_path / "calls.duckdb"
    limits = [Limit("tenant", 1.0, "day", id="acme"), Limit("gateway", 5.0, "month")]
    with CallLog(path) as first_log:
        mock = MockProvider("mock", models=("m1",)).enqueue(answer(300), answer(200))
        gw = make_gateway(first_log, mock, Budget(limits, clock=clock), clock=clock)
        spent = [gw.chat("mock/m1", "hi", tenant="acme", max_tokens=10).cost_usd]
        spent.append(gw.chat("mock/m1", "hi", tenant="acme", max_tokens=10).cost_usd)
        gw.close()
    with CallLog(path) as second_log:
        restarted = Budget(limits, log=second_log, clock=clock)
        assert row(restarted, "tenant:acme/day")["spent_usd"] == pytest.approx(sum(spent))
        gw = make_gateway(second_log, MockProvider("mock", models=("m1",)), restarted)
        with pytest.raises(BudgetExceededError):  # 0.5 spent + 0.6 estimated > 1.0
            gw.chat("mock/m1", "hi", tenant="acme", max_tokens=600)


def test_seeding_counts_only_the_current_period_and_the_budgets_own_rows(log, clock):
    now = T0
    rows = [  # (timestamp, tenant, user, cost)
        (now - timedelta(minutes=5), "acme", "bob", 0.25),
        (now - timedelta(hours=11), "acme", "ann", 0.5),
        (now - timedelta(days=1), "acme", "bob", 1.0),  # yesterday
        (now - timedelta(days=20), "acme", "bob", 2.0),  # last month
        (now - timedelta(minutes=1), "other", "bob", 4.0),
        (now - timedelta(minutes=2), "acme", "bob", None),  # unpriced
    ]
    log.append_many(
        CallRecord(
            call_id=f"c{i}",
            trace_id=f"t{i}",
            timestamp=ts,
            provider_name="mock",
            request_model="m1",
            tenant_id=tenant,
            user_id=user,
            cost_usd=cost,
        )
        for i, (ts, tenant, user, cost) in enumerate(rows)
    )
    budget = Budget(
        [
            Limit("tenant", 100.0, "day", id="acme"),
            Limit("tenant", 100.0, "month", id="acme"),
            Limit("tenant", 100.0, "total", id="acme"),
            Limit("tenant", 100.0, 3600, id="acme"),
            Limit("user", 100.0, "day", id="bob"),
            Limit("gateway", 100.0, "day"),
        ],
        log=log,
        clock=clock,
    )

    def expected(keep):
        return sum(c for ts, t, u, c in rows if c is not None and keep(ts, t, u))

    today = datetime(2025, 6, 15, tzinfo=UTC)
    month = datetime(2025, 6, 1, tzinfo=UTC)
    spent = {r["budget"]: r["spent_usd"] for r in budget.snapshot()}
    assert spent == {
        "gateway/day": pytest.approx(expected(lambda ts, t, u: ts >= today)),
        "tenant:acme/day": pytest.approx(expected(lambda ts, t, u: t == "acme" and ts >= today)),
        "tenant:acme/month": pytest.approx(expected(lambda ts, t, u: t == "acme" and ts >= month)),
        "tenant:acme/total": pytest.approx(expected(lambda ts, t, u: t == "acme")),
        "tenant:acme/3600s": pytest.approx(
            expected(lambda ts, t, u: t == "acme" and ts > now - timedelta(hours=1))
        ),
        "user:bob/day": pytest.approx(expected(lambda ts, t, u: u == "bob" and ts >= today)),
    }
    clock.advance(3600)  # the seeded rolling spend leaves its window too
    assert row(budget, "tenant:acme/3600s")["spent_usd"] == 0.0


def test_log_gateway_seeds_from_the_gateways_own_file_log(tmp_path, clock):
    path = tmp_path / "calls.duckdb"
    limits = [{"scope": "user", "usd": 1.0, "period": "day"}]
    with CallLog(path) as first_log:
        mock = MockProvider("mock", models=("m1",)).enqueue(answer(400))
        gw = make_gateway(first_log, mock, Budget(limits, clock=clock))
        gw.chat("mock/m1", "hi", user="bob", max_tokens=10)
        gw.close()
    with CallLog(path) as second_log:
        budget = Budget.from_config({"limit": limits}, clock=clock)  # seed_from_log default
        gw = make_gateway(second_log, MockProvider("mock", models=("m1",)), budget)
        with pytest.raises(BudgetExceededError, match=r"\$0\.40 spent"):
            gw.chat("mock/m1", "hi", user="bob", max_tokens=700)


# --- configuration ------------------------------------------------------------------------


def test_from_config_builds_limits_and_options(clock):
    budget = Budget.from_config(
        {
            "default_output_tokens": 64,
            "unknown_price": "refuse",
            "seed_from_log": False,
            "limit": [
                {"scope": "gateway", "usd": 500, "period": "month"},
                {"scope": "tenant", "id": "acme", "usd": 50},
                {"scope": "user", "usd": 2, "period": "day"},
                {"scope": "experiment", "id": "exp-42", "usd": 10, "period": 86400},
            ],
        },
        clock=clock,
    )
    assert budget.limits == (
        Limit("gateway", 500, "month"),
        Limit("tenant", 50, "month", id="acme"),
        Limit("user", 2, "day"),
        Limit("experiment", 10, 86400, id="exp-42"),
    )
    assert (budget.default_output_tokens, budget.unknown_price) == (64, "refuse")
    assert [r["budget"] for r in budget.snapshot()] == [
        "gateway/month",
        "tenant:acme/month",
        "experiment:exp-42/86400s",
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"limits": []}, "did you mean 'limit'"),
        ({"limit": [{"scope": "tenant", "usdd": 5}]}, "did you mean 'usd'"),
        ({"limit": [{"scope": "team", "usd": 5}]}, "scope 'team' is unknown"),
        ({"limit": [{"scope": "user"}]}, "has no 'usd'"),
        ({"limit": [{"scope": "user", "usd": -1}]}, "usd=-1 is invalid"),
        ({"limit": [{"scope": "user", "usd": 1, "period": "week"}]}, "period 'week'"),
        ({"limit": [{"scope": "user", "usd": 1, "period": 0}]}, "period 0 is invalid"),
        ({"limit": [{"scope": "gateway", "id": "x", "usd": 1}]}, "gateway-wide budget has no id"),
        ({"limit": {"scope": "user", "usd": 1}}, "array of tables"),
        ({"limit": [{"scope": "user", "usd": 1}] * 2}, "given twice"),
        ({"unknown_price": "maybe"}, "unknown_price='maybe'"),
        ({"default_output_tokens": 0}, "default_output_tokens=0"),
        ({"seed_from_log": "yes"}, "seed_from_log"),
    ],
)
def test_from_config_is_strict(settings, message):
    with pytest.raises(ConfigError, match=message):
        Budget.from_config(settings)


def test_budget_sits_outermost_in_the_pipeline(log, clock):
    gw = make_gateway(log, MockProvider("mock", models=("m1",)), Budget([]), ExactCache())
    assert gw.pipeline[:2] == ["budget", "cache"]


def test_providers_that_price_themselves_are_priced_before_the_estimate(clock):
    # The simulated fleet knows its prices only once built; a budget must not make the
    # price book remember them as unknown.
    budget = Budget([Limit("gateway", 1.0, "day")], clock=clock)
    with Gateway.simulated_fleet(log=None, middleware=[budget], time_scale=0.0) as gw:
        response = gw.chat("sim-openai/sim-small", "Hello", max_tokens=50)
    assert response.cost_usd is not None and response.cost_usd > 0
    assert row(budget, "gateway/day")["spent_usd"] == pytest.approx(response.cost_usd)
