"""The adaptive split's batched posterior: decisions are drawn from a snapshot of the arms'
statistics taken again every ``refresh_every`` feedbacks or ``refresh_seconds`` (on an
injected clock), and the propensity each decision logs is the probability it was drawn with,
even while the live statistics have moved on (what off-policy evaluation needs)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy import AdaptiveSplit, policy_from_dict
from aigw_lab.policy.adaptive import thompson_probabilities
from aigw_lab.types import ChatRequest

A, B, C = "p/a", "p/b", "p/c"
REQ = ChatRequest.create("ad", "hello")


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def warmed(**kwargs) -> AdaptiveSplit:
    """A two-arm split past ``min_samples`` (A at 0.7, B at 0.5 over 10 observations each),
    with a first Thompson snapshot taken."""
    policy = AdaptiveSplit("ad", [A, B], min_samples=10, **kwargs)
    for i in range(10):
        policy.record(A, 1.0 if i < 7 else 0.0)
        policy.record(B, 1.0 if i < 5 else 0.0)
    policy.decide(REQ)
    return policy


def expected(policy: AdaptiveSplit) -> dict[str, float]:
    """The mixture the live statistics give: what a fresh snapshot would hold."""
    ts = thompson_probabilities(
        [(1.0 + s.total, 1.0 + s.n - s.total) for s in policy.stats.values()]
    )
    k = len(policy.arms)
    mixed = zip(policy.arms, ts, strict=True)
    return {t: policy.explore / k + (1 - policy.explore) * p for t, p in mixed}


def test_the_snapshot_is_taken_again_after_refresh_every_feedbacks():
    policy = warmed(refresh_every=5, refresh_seconds=None)
    before = policy.decision_probabilities(policy.decide(REQ), REQ)
    assert before == pytest.approx(expected(policy))
    for _ in range(4):
        policy.record(B, 1.0)
        policy.decide(REQ)
    # Four feedbacks: decisions still come from the old snapshot, though B has improved.
    assert policy.decision_probabilities(policy.decide(REQ), REQ) == before
    assert expected(policy)[B] > before[B] + 0.05
    policy.record(B, 1.0)  # the fifth
    after = policy.decision_probabilities(policy.decide(REQ), REQ)
    assert after == pytest.approx(expected(policy)) and after[B] > before[B] + 0.05


def test_the_time_trigger_refreshes_a_snapshot_that_has_new_feedback():
    clock = FakeClock()
    policy = warmed(refresh_every=1000, refresh_seconds=2.0, clock=clock)  # snapshot at 100 s
    before = policy.decision_probabilities(policy.decide(REQ), REQ)
    clock.now += 1.9
    policy.record(B, 1.0)
    policy.record(B, 1.0)
    assert policy.decision_probabilities(policy.decide(REQ), REQ) == before
    clock.now += 0.1  # the snapshot is 2 s old and feedback has arrived since
    after = policy.decision_probabilities(policy.decide(REQ), REQ)
    assert after != before and after == pytest.approx(expected(policy))
    clock.now += 60.0  # time alone, no feedback: nothing to refresh
    assert policy.decision_probabilities(policy.decide(REQ), REQ) == after


def test_reaching_min_samples_ends_the_uniform_snapshot_at_once():
    policy = AdaptiveSplit("ad", [A, B], min_samples=3, refresh_every=1000, refresh_seconds=None)
    assert policy.decide(REQ).reason == "uniform until min_samples"
    for _ in range(3):
        policy.record(A, 1.0)
        policy.record(B, 0.0)
    # Not 1,000 feedbacks later: the uniform phase ends with the last arm's min_samples-th.
    decision = policy.decide(REQ)
    assert decision.reason in ("thompson sample", "exploration")
    assert policy.decision_probabilities(decision, REQ) == pytest.approx(expected(policy))


def test_logged_propensities_are_the_probabilities_decisions_were_drawn_with():
    """Feedback on every call, a snapshot every 200 feedbacks from 2 observations per arm:
    the live posterior leaves the snapshot far behind within each batch (B is much better),
    yet each arm's chosen count matches the sum of its logged propensities over all
    decisions, within 4 standard deviations (the count is a sum of independent Bernoullis
    given the snapshots, variance sum p (1 - p)). A rule that drew from the live posterior
    while logging the snapshot's probability picks B far more often than logged. And the
    inverse-propensity weights 1{chose a} / p(a) average 1 per arm, as IPS estimators
    assume, within 4 standard deviations (each step's weight has variance 1/p - 1)."""
    rng = random.Random(7)
    means = {A: 0.2, B: 0.8, C: 0.5}
    chosen: Counter[str] = Counter()
    expected_count: Counter[str] = Counter()
    variance: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    weight_variance: Counter[str] = Counter()
    steps = 0
    for seed in range(6):
        policy = AdaptiveSplit(
            "ad",
            [A, B, C],
            min_samples=2,
            explore=0.1,
            confidence=0.999,
            refresh_every=200,
            refresh_seconds=None,
            seed=seed,
        )
        for _ in range(600):
            decision = policy.decide(REQ)
            if policy.winner is not None:
                break
            dist = policy.decision_probabilities(decision, REQ)
            assert decision.propensity == dist[decision.target]
            steps += 1
            chosen[decision.target] += 1
            weights[decision.target] += 1.0 / decision.propensity
            for target, p in dist.items():
                expected_count[target] += p
                variance[target] += p * (1 - p)
                weight_variance[target] += 1 / p - 1
            policy.record(decision.target, 1.0 if rng.random() < means[decision.target] else 0)
    assert steps > 2000
    for target in (A, B, C):
        assert abs(chosen[target] - expected_count[target]) < 4 * math.sqrt(variance[target])
        assert abs(weights[target] - steps) < 4 * math.sqrt(weight_variance[target])


def test_the_refresh_settings_round_trip_and_old_specs_load_with_the_defaults():
    policy = AdaptiveSplit("ad", [A, B], refresh_every=20, refresh_seconds=None, min_samples=2)
    policy.record(A, 1.0)
    spec = policy.to_dict()
    assert spec["refresh_every"] == 20 and spec["refresh_seconds"] is None
    assert policy_from_dict(spec).to_dict() == spec
    # A spec saved before the batched posterior existed: same state, default refresh.
    old = {k: v for k, v in spec.items() if not k.startswith("refresh_")}
    loaded = policy_from_dict(old)
    assert loaded.refresh_every == 100 and loaded.refresh_seconds == 1.0
    assert loaded.stats[A].n == 1 and loaded.to_dict()["state"] == spec["state"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"refresh_every": 0}, "refresh_every"),
        ({"refresh_every": True}, "refresh_every"),
        ({"refresh_every": 2.5}, "refresh_every"),
        ({"refresh_seconds": -1.0}, "refresh_seconds"),
        ({"refresh_seconds": float("nan")}, "refresh_seconds"),
        ({"refresh_seconds": float("inf")}, "refresh_seconds"),
        ({"refresh_seconds": "1"}, "refresh_seconds"),
    ],
)
def test_invalid_refresh_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdaptiveSplit("ad", [A, B], **kwargs)


def test_a_decision_keeps_the_probabilities_of_its_own_snapshot_after_a_refresh():
    """Another thread's feedback may refresh the snapshot between a decision and the
    question "what was it drawn from?" (`Exploring` asks right after the base decides, and
    logs the answer as the propensity). The answer is the decision's own snapshot, not the
    newer one: its propensity stays the probability it was drawn with."""
    policy = warmed(refresh_every=1, refresh_seconds=None)
    decision = policy.decide(REQ)
    own = expected(policy)
    assert decision.propensity == pytest.approx(own[decision.target])
    for _ in range(20):
        policy.record(B, 1.0)
    newer = policy.decision_probabilities(policy.decide(REQ), REQ)
    assert newer[B] > own[B] + 0.05  # the refresh moved the probabilities
    assert policy.decision_probabilities(decision, REQ) == pytest.approx(own)
    assert policy.decision_probabilities(decision, REQ)[decision.target] == decision.propensity


def test_uniform_and_winner_decisions_keep_their_distributions_after_the_phase_changes():
    policy = AdaptiveSplit("ad", [A, B], min_samples=3, confidence=0.9, refresh_every=1)
    uniform = policy.decide(REQ)
    assert uniform.reason == "uniform until min_samples"
    for _ in range(400):
        policy.record(A, 1.0)
        policy.record(B, 0.0)
    assert policy.winner == A
    assert policy.decision_probabilities(uniform, REQ) == {A: 0.5, B: 0.5}
    won = policy.decide(REQ)
    assert policy.decision_probabilities(won, REQ) == {A: 1.0}
