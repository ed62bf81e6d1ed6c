"""Off-policy estimators on tiny synthetic bandits whose answers are computable by hand
(`aigw_lab.policy.ope`): IPS unbiased on average, SNIPS self-normalised, DR exact with an
exact reward model, the naive estimate's bias, diagnostics and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy import (
    LoggedBandit,
    Rules,
    WeightedSplit,
    candidate_probabilities,
    evaluate_policy,
    weight_diagnostics,
)
from aigw_lab.policy.ope import crossfit_group_means
from aigw_lab.types import ChatRequest

TARGETS = ("p/cheap", "p/strong")
# Two kinds of request; the true mean reward of each target on each kind.
TRUTH = np.array([[0.9, 0.95], [0.2, 0.8]])  # kind x target


def simulate(n, seed, logging):
    """``n`` calls: kind uniform, target drawn from ``logging[kind]``, Bernoulli reward."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 2, size=n)
    mu = logging[kinds]
    actions = (rng.random(n) < mu[:, 1]).astype(int)
    rewards = (rng.random(n) < TRUTH[kinds, actions]).astype(float)
    costs = np.where(actions == 1, 0.01, 0.001)
    data = LoggedBandit(
        targets=TARGETS,
        actions=actions,
        propensities=mu[np.arange(n), actions],
        rewards=rewards,
        costs=costs,
        groups=kinds,
        logging_probabilities=mu,
    )
    return data, kinds


# Logging favours the cheap target on easy requests (kind 0) and the strong one on hard.
LOGGING = np.array([[0.9, 0.1], [0.3, 0.7]])
# Candidate: always strong. True value: mean over kinds of TRUTH[:, 1].
ALWAYS_STRONG_VALUE = TRUTH[:, 1].mean()


def always(index, n):
    pi = np.zeros((n, 2))
    pi[:, index] = 1.0
    return pi


def test_ips_is_unbiased_over_many_seeds_and_naive_is_not():
    ips, naive = [], []
    for seed in range(300):
        data, _ = simulate(200, seed, LOGGING)
        result = evaluate_policy(data, always(1, 200), n_boot=0)
        ips.append(result.quality["ips"].value)
        naive.append(result.quality["naive"].value)
    # Standard error of the mean of 300 estimates is about 0.005.
    assert abs(np.mean(ips) - ALWAYS_STRONG_VALUE) < 0.02
    # The naive mean over calls sent to strong over-weights the hard kind (logged there
    # more often): 0.7 of its calls are hard, so it is near (0.1*0.95+0.7*0.8)/0.8 = 0.819.
    assert abs(np.mean(naive) - (0.1 * 0.95 + 0.7 * 0.8) / 0.8) < 0.02
    assert np.mean(naive) < ALWAYS_STRONG_VALUE - 0.03


def test_ips_by_hand_on_three_calls():
    data = LoggedBandit(
        targets=TARGETS,
        actions=np.array([0, 1, 1]),
        propensities=np.array([0.5, 0.25, 0.5]),
        rewards=np.array([1.0, 1.0, 0.0]),
    )
    pi = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    result = evaluate_policy(data, pi, n_boot=0, reward_model=np.zeros((3, 2)))
    # weights: 0/0.5 = 0, 1/0.25 = 4, 0.5/0.5 = 1.
    assert result.quality["ips"].value == pytest.approx((0 + 4 * 1 + 1 * 0) / 3)
    assert result.quality["snips"].value == pytest.approx(4 / 5)
    # With a zero reward model, DR is IPS.
    assert result.quality["dr"].value == pytest.approx(result.quality["ips"].value)
    assert result.diagnostics.ess == pytest.approx(25 / 17)
    assert result.diagnostics.max_weight == pytest.approx(4.0)


def test_snips_self_normalises_a_constant_reward():
    # Every reward is 0.7: SNIPS says 0.7 whatever the weights; IPS only on average.
    data, _ = simulate(150, 3, LOGGING)
    data = LoggedBandit(
        targets=data.targets,
        actions=data.actions,
        propensities=data.propensities,
        rewards=np.full(150, 0.7),
    )
    result = evaluate_policy(data, always(1, 150), n_boot=50)
    assert result.quality["snips"].value == pytest.approx(0.7)
    assert result.quality["snips"].low == pytest.approx(0.7)
    assert result.quality["ips"].value != pytest.approx(0.7)


def test_dr_is_exact_when_the_reward_model_is_exact_and_rewards_are_its_means():
    # Rewards equal to their expectation and a model equal to it: every correction term is
    # 0, so DR is the true value exactly, on any sample, while IPS is not.
    data, kinds = simulate(120, 5, LOGGING)
    exact = TRUTH[kinds]  # n x K
    data = LoggedBandit(
        targets=data.targets,
        actions=data.actions,
        propensities=data.propensities,
        rewards=exact[np.arange(120), data.actions],
    )
    pi = always(1, 120)
    result = evaluate_policy(data, pi, reward_model=exact, n_boot=20)
    assert result.quality["dr"].value == pytest.approx(TRUTH[kinds, 1].mean())
    assert result.quality["dm"].value == pytest.approx(TRUTH[kinds, 1].mean())
    assert result.quality["ips"].value != pytest.approx(TRUTH[kinds, 1].mean())


def test_intervals_cover_the_truth_on_most_seeds():
    covered = {"ips": 0, "snips": 0, "dr": 0}
    runs = 40
    for seed in range(runs):
        data, _ = simulate(300, 1000 + seed, LOGGING)
        result = evaluate_policy(data, always(1, 300), n_boot=120, seed=seed)
        for name in covered:
            covered[name] += result.quality[name].covers(ALWAYS_STRONG_VALUE)
    # Nominal 95%: 32 of 40 (80%) or fewer would be very unlikely (p < 0.01) for a correct
    # interval; an interval that ignores the weights' spread falls far below it.
    assert all(count >= 33 for count in covered.values()), covered


def test_cost_is_estimated_with_the_same_estimators():
    data, _ = simulate(500, 9, LOGGING)
    result = evaluate_policy(data, always(1, 500), n_boot=0)
    assert result.cost is not None
    assert result.cost["snips"].value == pytest.approx(0.01)
    assert result.cost["dr"].value == pytest.approx(0.01, rel=0.05)


def test_support_violations_are_flagged_where_the_logging_propensity_was_one():
    # Logged deterministically (propensity 1): any mass elsewhere is unsupported.
    data = LoggedBandit(
        targets=TARGETS,
        actions=np.array([0, 0, 1]),
        propensities=np.array([1.0, 1.0, 0.5]),
        rewards=np.array([1.0, 0.0, 1.0]),
    )
    pi = np.array([[0.2, 0.8], [1.0, 0.0], [0.0, 1.0]])
    d = weight_diagnostics(data, pi)
    assert d.support_violations == 1
    assert d.violation_mass == pytest.approx(0.8 / 3)
    assert any("never tried" in w for w in d.warnings())
    # The same candidate with full logging probabilities that cover it: no violation.
    covered = LoggedBandit(
        targets=TARGETS,
        actions=data.actions,
        propensities=np.array([0.5, 0.5, 0.5]),
        rewards=data.rewards,
        logging_probabilities=np.full((3, 2), 0.5),
    )
    assert weight_diagnostics(covered, pi).support_violations == 0


def test_ess_and_top_weight_share():
    n = 200
    data = LoggedBandit(
        targets=TARGETS,
        actions=np.ones(n, dtype=int),
        propensities=np.full(n, 0.5),
        rewards=np.ones(n),
    )
    # Equal weights: ESS is n, the top 1% (2 calls) hold 1% of the weight.
    d = weight_diagnostics(data, always(1, n))
    assert d.ess == pytest.approx(n)
    assert d.top1_weight_share == pytest.approx(0.01)
    # One call with a huge weight dominates.
    skewed = LoggedBandit(
        targets=TARGETS,
        actions=np.ones(n, dtype=int),
        propensities=np.r_[np.full(n - 1, 1.0), 0.001],
        rewards=np.ones(n),
    )
    d = weight_diagnostics(skewed, always(1, n))
    assert d.max_weight == pytest.approx(1000.0)
    assert d.ess < 2.5 and d.top1_weight_share > 0.8
    assert any("effective sample size" in w for w in d.warnings())


def test_crossfit_group_means_never_uses_an_items_own_reward():
    # One call per group: its own fold holds it, so its cell comes from the shrunk target
    # mean of the other calls, not from itself.
    data = LoggedBandit(
        targets=TARGETS,
        actions=np.array([0, 0, 0, 0]),
        propensities=np.ones(4),
        rewards=np.array([1.0, 0.0, 0.0, 0.0]),
        groups=np.array(["a", "b", "c", "d"]),
    )
    model = crossfit_group_means(data, folds=4)
    assert model[0, 0] == pytest.approx(0.0)  # the others all scored 0
    assert model[1, 0] == pytest.approx(1 / 3)


def test_candidate_probabilities_from_policies():
    requests = [ChatRequest.create("m", "x", tags={"category": c}) for c in ("math", "chat")]
    rules = Rules("r", [({"category": ["math"]}, "p/strong")], default="p/cheap")
    assert candidate_probabilities(rules, requests, TARGETS).tolist() == [[0, 1], [1, 0]]
    split = WeightedSplit("s", {"p/cheap": 3, "p/strong": 1})
    assert candidate_probabilities(split, requests, TARGETS).tolist() == [[0.75, 0.25]] * 2
    elsewhere = Rules("e", [], default="p/other")
    with pytest.raises(ConfigError, match="no logged call used"):
        candidate_probabilities(elsewhere, requests, TARGETS)


def test_inputs_are_checked():
    good = dict(targets=TARGETS, actions=np.array([0]), rewards=np.array([1.0]))
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        LoggedBandit(**good, propensities=np.array([0.0]))
    with pytest.raises(ConfigError, match="outside the targets"):
        LoggedBandit(
            targets=TARGETS,
            actions=np.array([2]),
            propensities=np.array([1.0]),
            rewards=np.array([1.0]),
        )
    data = LoggedBandit(**good, propensities=np.array([1.0]))
    with pytest.raises(ConfigError, match="sum to 1"):
        evaluate_policy(data, np.array([[0.5, 0.2]]))
    with pytest.raises(ConfigError, match=r"\(1, 2\)"):
        evaluate_policy(data, np.array([1.0, 0.0]))
    with pytest.raises(ConfigError, match="no logged calls"):
        evaluate_policy(
            LoggedBandit(
                targets=TARGETS,
                actions=np.zeros(0, dtype=int),
                propensities=np.zeros(0),
                rewards=np.zeros(0),
            ),
            np.zeros((0, 2)),
        )


def test_the_table_names_estimators_diagnostics_and_warnings():
    data, _ = simulate(300, 11, LOGGING)
    text = evaluate_policy(data, always(1, 300), n_boot=30).table()
    for word in ("naive", "dm", "ips", "snips", "dr", "ESS=", "bootstrap=30"):
        assert word in text
