"""Weighted splits (seeded, sticky) and the adaptive track-and-stop split."""

import random
from collections import Counter

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy import AdaptiveSplit, WeightedSplit, policy_from_dict
from aigw_lab.types import ChatRequest

A = "sim-openai/sim-small"
B = "sim-anthropic/sim-haikuish"
C = "sim-workers/sim-llamaish-8b"


def req(user=None, tenant=None):
    return ChatRequest.create("ab", "hi", user=user, tenant=tenant)


# --- weighted -----------------------------------------------------------------------------


def test_same_seed_same_decisions_and_shares_follow_weights():
    first = WeightedSplit("ab", {A: 3, B: 1}, seed=11)
    second = WeightedSplit("ab", [{"target": A, "weight": 3}, {"target": B, "weight": 1}], seed=11)
    a = [first.decide(req()).target for _ in range(4000)]
    b = [second.decide(req()).target for _ in range(4000)]
    assert a == b
    share = Counter(a)[A] / len(a)
    # 4000 draws at p = 0.75: the standard error is ~0.007; 5 of them is a generous band.
    assert abs(share - 0.75) < 0.035
    other_seed = [
        WeightedSplit("ab", {A: 3, B: 1}, seed=12).decide(req()).target for _ in range(50)
    ]
    assert other_seed != a[:50]


def test_sticky_user_always_gets_the_same_arm_and_users_spread_by_weight():
    split = WeightedSplit("ab", {A: 1, B: 1, C: 2}, sticky="user", seed=3)
    arms = {}
    for i in range(3000):
        arm = split.decide(req(user=f"u{i}")).target
        arms[f"u{i}"] = arm
    for user in ("u1", "u7", "u2999"):
        assert {split.decide(req(user=user)).target for _ in range(20)} == {arms[user]}
    # A fresh policy (another process) puts every user on the same arm.
    again = WeightedSplit("ab", {A: 1, B: 1, C: 2}, sticky="user", seed=3)
    assert all(again.decide(req(user=u)).target == arm for u, arm in list(arms.items())[:500])
    shares = Counter(arms.values())
    assert abs(shares[C] / 3000 - 0.5) < 0.05
    assert split.decide(req(user="u1")).reason == "sticky user"


def test_sticky_tenant_and_missing_id_falls_back_to_the_draw():
    split = WeightedSplit("ab", {A: 1, B: 1}, sticky="tenant", seed=0)
    assert len({split.decide(req(tenant="acme")).target for _ in range(30)}) == 1
    assert split.decide(req(user="someone")).reason == "weighted draw"


def test_zero_weight_arm_is_never_chosen():
    split = WeightedSplit("ab", {A: 0, B: 1, C: 0}, seed=1)
    assert {split.decide(req()).target for _ in range(500)} == {B}
    sticky = WeightedSplit("ab", {A: 1, B: 0}, sticky="user")
    assert {sticky.decide(req(user=f"u{i}")).target for i in range(500)} == {A}


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({A: -1, B: 1}, "invalid"),
        ({A: float("nan"), B: 1}, "invalid"),
        ({A: 0, B: 0}, "every split weight is 0"),
        ({}, "at least one target"),
        ({"not-an-address": 1}, "not a gateway address"),
        ([(A, 1), (A, 2)], "appears twice"),
        ({A: True}, "invalid"),
    ],
)
def test_weights_are_validated(targets, message):
    with pytest.raises(ConfigError, match=message):
        WeightedSplit("ab", targets)


def test_split_round_trip():
    split = WeightedSplit("ab", {A: 2, B: 1}, sticky="user", seed=9)
    spec = split.to_dict()
    assert spec == {
        "kind": "split",
        "name": "ab",
        "targets": [{"target": A, "weight": 2.0}, {"target": B, "weight": 1.0}],
        "sticky": "user",
        "seed": 9,
    }
    assert policy_from_dict(spec).to_dict() == spec
    with pytest.raises(ConfigError, match="sticky"):
        WeightedSplit("ab", {A: 1}, sticky="session")  # type: ignore[arg-type]


# --- adaptive -----------------------------------------------------------------------------


def frozen_clock():
    # The snapshot's time trigger never fires: decisions depend on the seed and the feedback
    # alone (a wall clock would make them depend on the machine's speed).
    return 0.0


def simulate(policy, means, rng, steps):
    """Serve ``steps`` requests, with Bernoulli feedback at each arm's true mean, until the
    policy declares a winner; returns (winner, requests served, traffic per arm). Feedback
    follows every call, so with the default ``refresh_every`` the policy decides from a
    snapshot taken again every 100 feedbacks (batched Thompson sampling)."""
    traffic = Counter()
    for step in range(1, steps + 1):
        target = policy.decide(req()).target
        traffic[target] += 1
        if policy.winner is not None:
            return policy.winner, step, traffic
        policy.record(target, 1.0 if rng.random() < means[target] else 0.0)
    return policy.winner, steps, traffic


def test_adaptive_starts_uniform_then_shifts_traffic_and_picks_the_better_arm():
    policy = AdaptiveSplit(
        "ad", [A, B], confidence=0.95, min_samples=20, seed=1, clock=frozen_clock
    )
    assert policy.decide(req()).reason == "uniform until min_samples"
    winner, steps, traffic = simulate(policy, {A: 0.3, B: 0.6}, random.Random(5), 20_000)
    assert winner == B
    assert traffic[B] > 2 * traffic[A]  # traffic moved toward the better arm
    low_a, high_a = policy.bounds()[A]
    low_b, _ = policy.bounds()[B]
    assert high_a < low_b  # the stopping rule's own condition holds
    # After the stop, everything goes to the winner.
    assert {policy.decide(req()).target for _ in range(200)} == {B}


def test_adaptive_picks_the_right_winner_across_seeds():
    wins = Counter()
    for seed in range(10):
        policy = AdaptiveSplit("ad", [A, B, C], min_samples=10, seed=seed, clock=frozen_clock)
        winner, _, _ = simulate(policy, {A: 0.5, B: 0.8, C: 0.4}, random.Random(100 + seed), 20_000)
        wins[winner] += 1
    assert wins == {B: 10}


def test_adaptive_rarely_stops_on_equal_arms():
    """The anytime bound holds the false-stop rate under 1 - confidence = 0.1 at any horizon,
    so about 4 of 40 runs at most; more than 8 (a 4% tail of Binomial(40, 0.1)) means it
    does not. It stops on none of these 40 runs; a two-sided 90% normal-approximation
    interval checked after every observation instead stops on 16 of them (run
    bench/split_false_stops.py; 14 was stated before session 12 and did not reproduce)."""
    stops = 0
    for seed in range(40):
        policy = AdaptiveSplit(
            "ad", [A, B], confidence=0.9, min_samples=10, seed=seed, clock=frozen_clock
        )
        winner, _, _ = simulate(policy, {A: 0.5, B: 0.5}, random.Random(1000 + seed), 3000)
        stops += winner is not None
    assert stops <= 8


def test_adaptive_scale_and_state_round_trip():
    policy = AdaptiveSplit("ad", [A, B], metric="judge", scale=(1, 10), min_samples=2)
    policy.record(A, 10)
    policy.record(A, 1)
    assert policy.stats[A].n == 2 and policy.stats[A].mean == pytest.approx(0.5)
    spec = policy.to_dict()
    assert spec["kind"] == "adaptive" and spec["metric"] == "judge"
    assert spec["state"]["arms"][A] == {"n": 2, "sum": 1.0}
    rebuilt = policy_from_dict(spec)
    assert rebuilt.to_dict() == spec
    with pytest.raises(ConfigError, match="not an arm"):
        policy.record(C, 1.0)
    with pytest.raises(ConfigError, match="at least two targets"):
        AdaptiveSplit("ad", [A])
    with pytest.raises(ConfigError, match="confidence"):
        AdaptiveSplit("ad", [A, B], confidence=1.0)
