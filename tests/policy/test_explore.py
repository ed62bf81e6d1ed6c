"""`Exploring` (aigw_lab.policy.explore) and the propensities of the stochastic policies:
propensities sum to 1 and match seeded empirical frequencies, floors, per-tenant rates,
the budget cap (the propensity logged is the one used), softmax over scores, round trip."""

from __future__ import annotations

import collections
import math
import random

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy import (
    AdaptiveSplit,
    Exploring,
    FallbackChain,
    Policy,
    RouteDecision,
    Rules,
    WeightedSplit,
    exploration_distribution,
    policy_from_dict,
)
from aigw_lab.policy.adaptive import thompson_probabilities
from aigw_lab.types import ChatRequest

A, B, C = "p/a", "p/b", "p/c"
REQ = ChatRequest.create("m", "hello")


def rules():
    # Three declared targets; this request goes to A.
    return Rules("r", [({"keywords": ["never-matches-b"]}, B), ({"keywords": ["zz"]}, C)], A)


def frequencies(policy, request, n=20000):
    counts = collections.Counter()
    propensities = {}
    for _ in range(n):
        decision = policy.decide(request)
        counts[decision.target] += 1
        propensities.setdefault(decision.target, set()).add(round(decision.propensity, 12))
    return {t: c / n for t, c in counts.items()}, propensities


def test_epsilon_greedy_propensities_sum_to_one_and_match_frequencies():
    explore = Exploring(rules(), epsilon=0.3, seed=4)
    dist = explore.probabilities(REQ)
    assert sum(dist.values()) == pytest.approx(1.0)
    assert dist == pytest.approx({A: 0.7 + 0.1, B: 0.1, C: 0.1})
    observed, logged = frequencies(explore, REQ)
    for target, p in dist.items():
        # 20000 draws: the standard error is below 0.003.
        assert observed[target] == pytest.approx(p, abs=0.012)
        assert logged[target] == {round(p, 12)}  # each decision logs its own target's P


def test_the_floor_gives_every_target_at_least_its_share():
    explore = Exploring(rules(), epsilon=0.0001, floor=0.05, seed=1)
    dist = explore.probabilities(REQ)
    assert min(dist.values()) >= 0.05 - 1e-12
    assert sum(dist.values()) == pytest.approx(1.0)
    observed, _ = frequencies(explore, REQ)
    assert observed[B] == pytest.approx(dist[B], abs=0.01)
    with pytest.raises(ConfigError, match="floor"):
        Exploring(rules(), epsilon=0.1, floor=0.5)  # 3 x 0.5 > 1


def test_a_stochastic_base_is_mixed_not_drawn_twice():
    split = WeightedSplit("s", {A: 3, B: 1}, seed=2)
    explore = Exploring(split, epsilon=0.2, seed=3)
    dist = explore.probabilities(REQ)
    assert dist == pytest.approx({A: 0.8 * 0.75 + 0.1, B: 0.8 * 0.25 + 0.1})
    observed, logged = frequencies(explore, REQ)
    assert observed[A] == pytest.approx(dist[A], abs=0.012)
    assert logged[B] == {round(dist[B], 12)}


def test_per_tenant_rates_and_no_exploration_for_others():
    explore = Exploring(rules(), epsilon=0.0, per_tenant={"acme": 0.6}, floor=0.02, seed=5)
    acme = ChatRequest.create("m", "hello", tenant="acme")
    other = ChatRequest.create("m", "hello", tenant="bank")
    assert explore.probabilities(other) == {A: 1.0}  # rate 0: the base, floor not applied
    observed, logged = frequencies(explore, other, n=2000)
    assert observed == {A: 1.0} and logged == {A: {1.0}}
    dist = explore.probabilities(acme)
    assert dist[B] == pytest.approx((3 * 0.02 + 0.94 * 0.6) / 3)
    observed, _ = frequencies(explore, acme)
    assert observed[B] == pytest.approx(dist[B], abs=0.012)


class Priced(Policy):
    """Records what the route stage would settle (a base for the budget test)."""

    kind = "priced-test"

    def __init__(self):
        self.name = "base"
        self.settled = []

    def targets(self):
        return (A, B)

    def decide(self, request):
        return RouteDecision(A, "always a")

    def settle(self, decision, cost_usd):
        self.settled.append((decision.target, cost_usd))


def test_the_budget_stops_exploration_and_the_propensity_follows():
    base = Priced()
    explore = Exploring(base, epsilon=0.5, budget_usd=0.05, seed=6)
    explored_costs = 0.0
    decisions = []
    for _ in range(200):
        decision = explore.decide(REQ)
        decisions.append(decision)
        cost = 0.01 if decision.target == B else 0.001
        explore.settle(decision, cost)
        if decision.explored:
            explored_costs += cost
    # Exploring runs until its charges reach the budget (5 explored calls at 0.01) ...
    assert explore.spent_usd == pytest.approx(0.05)
    assert explore.exhausted
    last_explored = max(i for i, d in enumerate(decisions) if d.explored)
    # ... then every decision is the base's own, logged with the base's propensity.
    after = decisions[last_explored + 1 :]
    assert len(after) > 100
    assert all(d.target == A and d.propensity == 1.0 and not d.explored for d in after)
    # Before: the exploring propensities (A: 0.75, B: 0.25).
    before = {d.target: d.propensity for d in decisions[: last_explored + 1]}
    assert before == pytest.approx({A: 0.75, B: 0.25})
    assert explore.probabilities(REQ) == {A: 1.0}
    assert len(base.settled) == 200  # the base is told too


def test_softmax_over_the_base_scores_with_a_floor():
    class Scored(Priced):
        def decide(self, request):
            return RouteDecision(A, "scored", {A: 1.0, B: 0.0})

    explore = Exploring(Scored(), temperature=0.5, floor=0.05, seed=7)
    dist = explore.probabilities(REQ)
    soft_a = math.exp(2) / (math.exp(2) + 1)
    assert dist[A] == pytest.approx(0.05 + 0.9 * soft_a)
    observed, logged = frequencies(explore, REQ)
    assert observed[B] == pytest.approx(dist[B], abs=0.012)
    assert logged[B] == {round(dist[B], 12)}
    # Without scores, softmax keeps the base distribution and applies the floor only.
    assert exploration_distribution(
        (A, B), {A: 1.0}, temperature=1.0, scores={}, floor=0.1
    ) == pytest.approx({A: 0.9, B: 0.1})


def test_an_injected_generator_makes_decisions_reproducible():
    one = Exploring(rules(), epsilon=0.5, rng=random.Random(11))
    two = Exploring(rules(), epsilon=0.5, rng=random.Random(11))
    assert [one.decide(REQ).target for _ in range(50)] == [
        two.decide(REQ).target for _ in range(50)
    ]
    seeded = Exploring(rules(), epsilon=0.5, seed=11)
    again = Exploring(rules(), epsilon=0.5, seed=11)
    assert [seeded.decide(REQ).target for _ in range(50)] == [
        again.decide(REQ).target for _ in range(50)
    ]


def test_round_trip_through_the_policy_file_form():
    explore = Exploring(
        rules(), epsilon=0.2, floor=0.01, per_tenant={"acme": 0.5}, budget_usd=3.0, seed=9
    )
    explore.spent_usd = 1.25
    spec = explore.to_dict()
    again = policy_from_dict(spec)
    assert isinstance(again, Exploring) and again.to_dict() == spec
    assert again.name == "r" and again.base.to_dict() == rules().to_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"epsilon": 0.1, "temperature": 1.0}, "exactly one"),
        ({"epsilon": 1.5}, r"\[0, 1\]"),
        ({"epsilon": float("nan")}, "finite"),
        ({"temperature": -1.0}, ">= 0"),
        ({"epsilon": 0.1, "budget_usd": -1}, ">= 0"),
        ({"epsilon": 0.1, "per_tenant": {"acme": 2.0}}, "acme"),
        ({"epsilon": 0.1, "seed": "x"}, "seed"),
    ],
)
def test_invalid_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Exploring(rules(), **kwargs)


def test_only_single_decision_policies_can_be_wrapped():
    with pytest.raises(ConfigError, match="several targets"):
        Exploring(FallbackChain("f", [A, B]), epsilon=0.1)
    with pytest.raises(ConfigError, match="wraps a Policy"):
        Exploring("rules", epsilon=0.1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='"base"'):
        policy_from_dict({"kind": "explore", "name": "x", "epsilon": 0.1})


def test_a_split_logs_its_arms_share():
    split = WeightedSplit("s", {A: 1, B: 3}, seed=1)
    observed, logged = frequencies(split, REQ)
    assert logged == {A: {0.25}, B: {0.75}}
    assert observed[B] == pytest.approx(0.75, abs=0.012)
    sticky = WeightedSplit("s", {A: 1, B: 3}, sticky="user")
    decision = sticky.decide(ChatRequest.create("m", "x", user="u1"))
    assert decision.propensity == {A: 0.25, B: 0.75}[decision.target]


def test_thompson_probabilities_match_monte_carlo():
    rng = random.Random(0)
    posteriors = [(31.0, 11.0), (25.0, 17.0), (20.0, 20.0)]
    computed = thompson_probabilities(posteriors)
    assert sum(computed) == pytest.approx(1.0)
    wins = collections.Counter()
    n = 40000
    for _ in range(n):
        draws = [rng.betavariate(a, b) for a, b in posteriors]
        wins[draws.index(max(draws))] += 1
    for i, p in enumerate(computed):
        assert wins[i] / n == pytest.approx(p, abs=0.01)


def test_an_adaptive_split_logs_the_probability_it_drew_with():
    policy = AdaptiveSplit("ad", [A, B], min_samples=5, explore=0.2, seed=3)
    uniform = policy.decide(REQ)
    assert uniform.propensity == 0.5
    for _ in range(30):
        policy.record(A, 0.8)
        policy.record(B, 0.6)
    dist = policy.probabilities(REQ)
    assert sum(dist.values()) == pytest.approx(1.0) and dist[A] > dist[B] >= 0.1
    observed, logged = frequencies(policy, REQ, n=6000)
    assert observed[A] == pytest.approx(dist[A], abs=0.03)
    assert logged[A] == {round(dist[A], 12)}


def test_the_policy_package_exports_the_new_names():
    import aigw_lab.policy as package

    for name in (
        "Exploring",
        "exploration_distribution",
        "LoggedBandit",
        "evaluate_policy",
        "candidate_probabilities",
        "weight_diagnostics",
        "logged_bandit_from_log",
    ):
        assert name in package.__all__ and getattr(package, name) is not None
    assert set(package._EXPORTS) <= set(package.__all__)
