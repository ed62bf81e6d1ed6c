"""Every route decision is logged with its policy and propensity (``calls.route_policy``,
``calls.propensity``) through a real DuckDB log, in all four call modes: deterministic
policies log 1.0, a split its arm's share, an exploring policy the probability it used;
fallback rows carry the propensity of the decision that led to them; rows no policy chose
carry NULL. Also the exploration budget charged from real call costs, and the loader."""

from __future__ import annotations

import json
import math
import random

import pytest

from aigw_lab.datasets.bundled import load_bundled
from aigw_lab.errors import AigwError, ProviderServerError
from aigw_lab.gateway import Gateway
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.reliability import Retry
from aigw_lab.policy import (
    Exploring,
    FallbackChain,
    Rules,
    WeightedSplit,
    candidate_probabilities,
    evaluate_policy,
    logged_bandit_from_log,
)
from aigw_lab.providers.base import Price
from aigw_lab.store import CallLog
from aigw_lab.store.scores import record_feedback
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from tests._call_modes import MODES, call_in_mode

CHEAP = "cheap/small"
STRONG = "strong/big"
PRICES = {CHEAP: Price(1.0, 2.0), STRONG: Price(10.0, 30.0)}


@pytest.fixture
def log(new_log_path):
    with CallLog(new_log_path) as call_log:
        yield call_log


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def make(log, *policies, cheap=None, strong=None, middleware=(), fallbacks=None):
    cheap = cheap or FunctionProvider(lambda r: "cheap answer", "cheap")
    strong = strong or FunctionProvider(lambda r: "strong answer", "strong")
    return Gateway(
        [cheap, strong], log=log, prices=PRICES, policies=list(policies), middleware=middleware
    )


def rows(log):
    log.flush()
    return log.query(
        "SELECT call_id, trace_id, provider_name, status, fallback_from, route_policy, propensity, "
        "shadow_of, cost_usd FROM calls ORDER BY timestamp, attempt"
    )


def test_a_deterministic_policy_logs_propensity_one(log, mode):
    gw = make(log, Rules("r", [({"keywords": ["prove"]}, STRONG)], default=CHEAP))
    call_in_mode(gw, mode, "r", "prove it")
    table = rows(log)
    assert list(table.route_policy) == ["r"] and list(table.propensity) == [1.0]


def test_a_split_logs_the_chosen_arms_share(log, mode):
    gw = make(log, WeightedSplit("ab", {CHEAP: 1, STRONG: 3}, seed=1))
    for _ in range(6):
        call_in_mode(gw, mode, "ab")
    table = rows(log)
    expected = {"cheap": 0.25, "strong": 0.75}
    assert set(table.provider_name) == {"cheap", "strong"}  # seed 1 draws both
    assert [expected[p] for p in table.provider_name] == list(table.propensity)
    assert set(table.route_policy) == {"ab"}


def test_an_exploring_policy_logs_the_probability_it_used(log, mode):
    base = Rules("r", [({"keywords": ["zz"]}, STRONG)], default=CHEAP)
    explore = Exploring(base, epsilon=0.5, seed=3)
    gw = make(log, explore)
    for _ in range(8):
        call_in_mode(gw, mode, "r")
    table = rows(log)
    expected = {"cheap": 0.75, "strong": 0.25}
    assert set(table.provider_name) == {"cheap", "strong"}
    assert [expected[p] for p in table.provider_name] == list(table.propensity)
    assert explore.explorations == (table.provider_name == "strong").sum()


def test_a_fallback_chains_rows_carry_the_chains_propensity(log, mode):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap)
    call_in_mode(gw, mode, "safe")
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert list(table.route_policy) == ["safe", "safe"]
    assert list(table.propensity) == [1.0, 1.0]  # a chain is deterministic


def test_a_gateway_fallback_row_keeps_the_propensity_of_the_decision(log, mode):
    # The split chose cheap with probability 0.25; cheap failed and the gateway's own
    # [fallbacks] sent the call to strong. The strong row's target was not drawn by the
    # policy: it carries the probability of the decision that led to it (0.25).
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    retry = Retry(max_attempts=1, base_delay=0.0, sleep=lambda s: None, fallbacks={CHEAP: [STRONG]})
    split = WeightedSplit("ab", {CHEAP: 1, STRONG: 0}, seed=0)
    # A generator whose every draw is 0.9: above the exploration rate, so the base's choice.
    explore = Exploring(split, epsilon=0.0, per_tenant={"t": 0.5}, rng=Fixed(0.9))
    gw = make(log, explore, cheap=cheap, middleware=[retry])
    call_in_mode(gw, mode, "ab")
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert table.fallback_from[1] == CHEAP
    assert list(table.route_policy) == ["ab", "ab"]
    assert list(table.propensity) == [1.0, 1.0]  # the split's only arm with weight
    # The same with exploration on (tenant t): the decision's own probability, 0.75.
    cheap.enqueue(ProviderServerError("down", provider="cheap"))
    gw.chat("ab", "hi", tenant="t")
    table = rows(log)
    last = table[table.trace_id == table.trace_id.iloc[-1]]
    assert list(last.provider_name) == ["cheap", "strong"]
    assert list(last.propensity) == [0.75, 0.75]


class Fixed(random.Random):
    """A generator that always draws ``value``."""

    def __init__(self, value):
        super().__init__(0)
        self.value = value

    def random(self):
        return self.value


def test_rows_no_policy_chose_carry_null(log):
    cache = ExactCache()
    gw = make(log, Rules("r", [], default=CHEAP), middleware=[cache])
    gw.chat(CHEAP, "direct")
    gw.chat("r", "same question")
    gw.chat("r", "same question")  # an exact-cache hit: no policy decided it
    table = rows(log)
    assert table.route_policy.isna().tolist() == [True, False, True]
    assert table.propensity.isna().tolist() == [True, False, True]


def test_the_exploration_budget_is_charged_from_logged_costs(log, mode):
    base = Rules("r", [({"keywords": ["zz"]}, STRONG)], default=CHEAP)
    explore = Exploring(base, epsilon=1.0, budget_usd=1e-9, seed=2)
    gw = make(log, explore)
    for _ in range(30):
        call_in_mode(gw, mode, "r", "hello there")
    table = rows(log)
    explored = table[table.provider_name == "strong"]
    # Exploration stops after the first explored call's cost passes the tiny budget.
    assert len(explored) == 1 and explore.exhausted
    assert explore.spent_usd == pytest.approx(explored.cost_usd.iloc[0])
    after = table.iloc[explored.index[0] + 1 :]
    assert set(after.provider_name) == {"cheap"} and set(after.propensity) == {1.0}
    before = table.iloc[: explored.index[0] + 1]
    assert set(before.propensity) == {0.5}


def test_the_loader_on_a_gateway_log_over_the_simulated_fleet(new_log_path):
    # Simulated production traffic: mixed_v1 prompts through an exploring policy over the
    # simulated fleet, each answer scored against its reference. The loader must give one
    # row per client call with the logged propensity, leave out shadow rows and unscored
    # calls, and the estimators must run on it.
    items = [i for i in load_bundled("mixed_v1")][:60]
    targets = ("sim-openai/sim-nano", "sim-openai/sim-large")
    base = Rules("fleet", [({"category": ["arithmetic"]}, targets[1])], default=targets[0])
    explore = Exploring(base, epsilon=0.4, seed=5)
    with CallLog(new_log_path) as call_log:
        gw = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=call_log, policies=[explore])
        for n, item in enumerate(items):
            response = gw.chat("fleet", item["prompt"], tags={"category": item["category"]})
            if n % 10 != 9:  # every tenth call stays unscored
                correct = response.text.strip() == str(item["reference"]).strip()
                record_feedback(call_log, response.call_id, score=float(correct), name="exact")
        call_log.flush()
        # A shadow row (as the shadow stage writes one) must not count as a decision.
        call_log.query(
            "INSERT INTO calls (call_id, trace_id, timestamp, provider_name, request_model, "
            "status, route_policy, propensity, shadow_of, request_json) "
            "SELECT call_id || '-shadow', trace_id || '-shadow', timestamp, provider_name, "
            "request_model, status, 'shadow', 1.0, call_id, request_json FROM calls LIMIT 1"
        )
        data = logged_bandit_from_log(call_log, scorer="exact", group_by="category")
        table = rows(call_log)
    assert len(data) == 54 and data.dropped == {"no score": 6}
    assert data.targets == tuple(sorted(targets))
    live = table[table.shadow_of.isna()]
    logged = dict(zip(live.call_id, live.propensity, strict=True))
    assert list(data.propensities) == [logged[c] for c in data.call_ids]
    assert set(data.propensities.round(12)) == {0.8, 0.2}  # 1 - 0.4/2 and 0.4/2
    assert not set(data.call_ids) & set(table.call_id[table.shadow_of.notna()])
    assert data.requests[0].tags == {"category": items[0]["category"]}
    # The base policy itself, evaluated from the logs: all estimators run and its
    # decisions all had support (exploration tried both targets everywhere).
    pi = candidate_probabilities(base, data.requests, data.targets)
    result = evaluate_policy(data, pi, n_boot=100)
    assert result.diagnostics.support_violations == 0
    assert all(math.isfinite(e.value) for e in result.quality.values())
    assert 0.0 <= result.quality["snips"].value <= 1.0
    assert json.dumps(result.rows())  # JSON-ready


class OwnCall(Rules):
    """A single-decision policy with its own ``call``: the route stage cannot see which
    decision it made, so it logs no propensity rather than a wrong one."""

    def call(self, request, send):
        return send(STRONG, request)

    async def acall(self, request, send):
        return await send(STRONG, request)


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_a_policy_with_its_own_call_logs_no_propensity(log, mode):
    gw = make(log, OwnCall("own", [({"keywords": ["zz"]}, STRONG)], default=CHEAP))
    call_in_mode(gw, mode, "own")
    table = rows(log)
    assert list(table.provider_name) == ["strong"] and list(table.route_policy) == ["own"]
    assert table.propensity.isna().all()


def test_the_loader_takes_the_decision_from_the_first_row_and_the_outcome_from_the_last(log):
    # Call 1: the split picks cheap, cheap fails, the gateway falls back to strong, whose
    # answer is scored. Call 2: picks cheap, which fails with no fallback left.
    cheap = MockProvider("cheap").enqueue(
        ProviderServerError("down", provider="cheap"),
        ProviderServerError("down", provider="cheap"),
    )
    retry = Retry(max_attempts=1, base_delay=0.0, sleep=lambda s: None, fallbacks={CHEAP: [STRONG]})
    split = WeightedSplit("ab", {CHEAP: 1, STRONG: 0}, seed=0)
    explore = Exploring(split, epsilon=0.0, per_tenant={"t": 0.4}, rng=Fixed(0.9))
    strong = MockProvider("strong").enqueue(ProviderServerError("down", provider="strong"))
    strong.enqueue("strong answer")
    gw = make(log, explore, cheap=cheap, strong=strong, middleware=[retry])
    with pytest.raises(AigwError):
        gw.chat("ab", "first", tenant="t")  # cheap fails, then strong fails too
    answer = gw.chat("ab", "second", tenant="t")  # cheap fails, strong answers
    record_feedback(log, answer.call_id, score=0.75, name="exact")
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong", "cheap", "strong"]
    # The split's share of cheap (1) mixed with exploration: 0.6 x 1 + 0.4 / 2.
    assert set(table.propensity.round(12)) == {0.8}
    data = logged_bandit_from_log(log, scorer="exact")
    assert len(data) == 1 and data.dropped == {"failed": 1}
    assert data.targets[data.actions[0]] == CHEAP  # the decision, not the fallback
    assert data.rewards.tolist() == [0.75] and data.propensities.round(12).tolist() == [0.8]
    second = table[table.trace_id == table.trace_id.iloc[-1]]
    assert data.costs[0] == pytest.approx(second.cost_usd.fillna(0).sum())
    with_failures = logged_bandit_from_log(log, scorer="exact", failed_reward=0.0)
    assert sorted(with_failures.rewards.tolist()) == [0.0, 0.75]
    assert logged_bandit_from_log(log, scorer="other").dropped == {"no score": 1, "failed": 1}
