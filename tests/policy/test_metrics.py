"""RouteLLM's and RouterBench's metrics on hand-computed cases, and the offline evaluation
machinery (bootstrap, k-fold cross-fitting) on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.baselines import oracle_choice, oracle_point, zero_router_hull
from aigw_lab.policy.evaluate.metrics import (
    SweepCurve,
    aiq,
    apgr,
    bootstrap_metric,
    cpt,
    nondecreasing_convex_hull,
    oracle_curve,
    pgr,
    random_scores,
    threshold_sweep,
)
from aigw_lab.policy.evaluate.offline import (
    assert_disjoint,
    evaluate_cost_quality,
    evaluate_two_model,
    kfold_assignment,
    out_of_fold,
)
from tests.policy._learned_data import STRONG, WEAK, synthetic


def curve(shares, qualities) -> SweepCurve:
    return SweepCurve(
        np.full(len(shares), np.nan), np.array(shares, float), np.array(qualities, float)
    )


def test_pgr_is_zero_at_weak_and_one_at_strong():
    assert pgr(0.6, 0.6, 0.8) == 0.0
    assert pgr(0.8, 0.6, 0.8) == 1.0
    assert pgr(0.7, 0.6, 0.8) == pytest.approx(0.5)


def test_threshold_sweep_routes_at_or_above_and_spans_zero_to_all():
    scores = np.array([0.1, 0.4, 0.7, 0.9])
    strong = np.array([1.0, 1.0, 1.0, 1.0])
    weak = np.array([1.0, 0.0, 0.0, 1.0])
    result = threshold_sweep(scores, strong, weak, thresholds=np.array([0.1, 0.5, 0.9]))
    # Sorted by share: t=0.9 is the top threshold, so strict: no query goes to strong.
    assert result.strong_share.tolist() == [0.0, 0.5, 1.0]
    # t=0.5 sends 0.7 and 0.9 to strong: weak on 0.1 (1) and 0.4 (0), strong 1, 1.
    assert result.quality.tolist() == [0.5, 0.75, 1.0]


def test_apgr_of_the_straight_line_is_one_half_and_of_an_instant_jump_near_one():
    assert apgr(curve([0, 1], [0.6, 0.8]), 0.6, 0.8) == pytest.approx(0.5)
    assert apgr(curve([0, 0.01, 1], [0.6, 0.8, 0.8]), 0.6, 0.8) == pytest.approx(0.995)


def test_random_router_apgr_averages_one_half():
    rng = np.random.default_rng(1)
    strong = (rng.uniform(size=2000) < 0.8).astype(float)
    weak = (rng.uniform(size=2000) < 0.6).astype(float)
    values = [
        apgr(threshold_sweep(random_scores(2000, seed=k), strong, weak), weak.mean(), strong.mean())
        for k in range(40)
    ]
    assert abs(np.mean(values) - 0.5) < 0.02


def test_a_router_that_knows_the_gains_beats_random():
    rng = np.random.default_rng(2)
    strong = (rng.uniform(size=1000) < 0.8).astype(float)
    weak = (rng.uniform(size=1000) < 0.6).astype(float)
    informed = strong - weak + rng.normal(0, 0.3, size=1000)
    value = apgr(threshold_sweep(informed, strong, weak), weak.mean(), strong.mean())
    assert value > 0.8


def test_oracle_curve_spends_strong_calls_where_strong_gains():
    strong = np.array([1.0, 1.0, 0.0, 1.0])
    weak = np.array([0.0, 1.0, 1.0, 0.0])  # strong gains on items 0 and 3 only
    result = oracle_curve(strong, weak, shares=(0.0, 0.25, 0.5, 1.0))
    assert result.quality.tolist() == [0.5, 0.75, 1.0, 1.0]


def test_oracle_apgr_on_the_routellm_grid_matches_the_closed_form():
    # Strong gains on 23 of 100 items: RouteLLM's 11-point trapezoid, computed by hand.
    strong = np.r_[np.ones(23), np.zeros(77)]
    weak = np.zeros(100)
    gains = 0.23
    xs = np.linspace(0, 1, 11)
    ys = weak.mean() + np.minimum(xs, gains)
    expected = (np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) - weak.mean()) / (
        strong.mean() - weak.mean()
    )
    assert apgr(oracle_curve(strong, weak), weak.mean(), strong.mean()) == pytest.approx(expected)


def test_cpt_interpolates_the_first_crossing():
    line = curve([0, 1], [0.6, 0.8])
    assert cpt(line, 0.6, 0.8, 0.5) == pytest.approx(0.5)
    assert cpt(line, 0.6, 0.8, 0.8) == pytest.approx(0.8)
    bumpy = curve([0, 0.2, 0.4, 1.0], [0.6, 0.75, 0.7, 0.8])
    assert cpt(bumpy, 0.6, 0.8, 0.5) == pytest.approx(0.2 * (0.5 / 0.75))
    assert np.isnan(cpt(curve([0, 1], [0.6, 0.7]), 0.6, 0.8, 0.8))


def test_nondecreasing_convex_hull_drops_dominated_and_interior_points():
    costs = [1, 1.5, 2, 2.5, 3, 4, 1]
    quality = [1, 1.5, 3, 2, 3.5, 3, 0.5]
    hull = nondecreasing_convex_hull(costs, quality)
    assert hull.tolist() == [[1, 1], [2, 3], [3, 3.5]]


def test_aiq_averages_the_hull_over_the_cost_range():
    hull = np.array([[1.0, 1.0], [3.0, 3.0]])
    # 1..3 under the segment: 4; 3..5 flat at 3: 6 -> 10 / 4.
    assert aiq(hull, (1.0, 5.0)) == pytest.approx(2.5)
    # Below the hull's cheapest point the quality is 0: (4 + 3) / 4.
    assert aiq(hull, (0.0, 4.0)) == pytest.approx(1.75)


def test_zero_router_and_oracle_baselines():
    quality = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    cost = np.array([[10.0, 1.0], [10.0, 1.0], [10.0, 1.0]])
    assert oracle_choice(quality, cost).tolist() == [0, 1, 1]  # cheapest among the best
    point = oracle_point(quality, cost)
    assert (point.cost, point.quality) == pytest.approx((4.0, 2 / 3))
    assert zero_router_hull(quality, cost).tolist() == [[1.0, 1 / 3], [10.0, 2 / 3]]


def test_bootstrap_metric_is_seeded_and_brackets_the_estimate():
    values = np.random.default_rng(0).normal(size=300)
    first = bootstrap_metric(lambda idx: float(values[idx].mean()), 300, n_boot=200, seed=3)
    again = bootstrap_metric(lambda idx: float(values[idx].mean()), 300, n_boot=200, seed=3)
    assert first == again
    assert first.low < first.value < first.high


def test_evaluate_two_model_reports_cis_around_each_metric():
    rng = np.random.default_rng(4)
    strong = (rng.uniform(size=500) < 0.8).astype(float)
    weak = (rng.uniform(size=500) < 0.6).astype(float)
    scores = strong - weak + rng.normal(0, 0.5, size=500)
    result = evaluate_two_model(
        scores,
        strong,
        weak,
        strong_cost=np.full(500, 2.0),
        weak_cost=np.full(500, 1.0),
        n_boot=200,
    )
    for ci in (result.apgr, result.cpt50, result.cpt80):
        assert ci.low <= ci.value <= ci.high
    assert result.cpt50.value < result.cpt80.value
    assert result.weak_quality < result.aiq <= result.curve.quality.max()


def test_kfold_assignment_is_balanced_and_order_independent():
    ids = [f"item/{i}" for i in range(103)]
    folds = kfold_assignment(ids, 5, seed=1)
    assert sorted(np.bincount(folds).tolist()) == [20, 20, 21, 21, 21]
    shuffled = list(reversed(ids))
    again = dict(zip(shuffled, kfold_assignment(shuffled, 5, seed=1), strict=True))
    assert all(again[i] == f for i, f in zip(ids, folds, strict=True))


def test_assert_disjoint_refuses_training_items():
    assert_disjoint(["a", "b"], ["c"])
    with pytest.raises(ConfigError, match="1 test item"):
        assert_disjoint(["a", "b"], ["b", "c"])


def test_out_of_fold_scores_every_item_with_a_router_that_never_saw_it():
    data = synthetic(20)
    X = HashingEmbedder(128).embed([item.prompt for item in data.items])
    result = out_of_fold(data, "knn", X, folds=4, strong=STRONG, weak=WEAK, params={"k": 3})
    assert result.strong_score is not None and not np.isnan(result.strong_score).any()
    is_math = np.array([i.startswith("math/") for i in data.ids])
    assert result.strong_score[is_math].min() > result.strong_score[~is_math].max()


def test_evaluate_cost_quality_sweeps_lambda_between_the_models():
    data = synthetic(20)
    X = HashingEmbedder(128).embed([item.prompt for item in data.items])
    oof = out_of_fold(data, "knn", X, folds=4, params={"k": 3})
    quality = data.wide_scores()[[STRONG, WEAK]].to_numpy()
    cost = np.tile([2.0, 1.0], (len(data), 1))
    result = evaluate_cost_quality(
        oof.quality, oof.expected_cost, quality, cost, [STRONG, WEAK], n_boot=100
    )
    # The router finds the oracle: strong on math, weak on chat -> quality 1 at cost 1.5,
    # above the zero router's straight line from (1, 0.5) to (2, 1).
    assert result.oracle is not None and result.oracle.quality == 1.0
    assert max(p.quality for p in result.points) == 1.0
    assert result.aiq.value > result.zero_router_aiq.value


def test_sweep_thresholds_are_routellms_qcut_bin_edges():
    import pandas as pd

    scores = np.random.default_rng(5).uniform(size=257)
    _, edges = pd.qcut(scores, 10, retbins=True)
    result = threshold_sweep(scores, np.ones(257), np.zeros(257))
    np.testing.assert_allclose(np.sort(result.thresholds), edges)


def test_report_replaces_only_its_own_section():
    from aigw_lab.policy.evaluate.report import SECTION, replace_section

    document = f"# Routing\n\n## Policies\nkeep\n\n{SECTION}\nold numbers\n\n## Later\nkeep too\n"
    updated = replace_section(document, f"{SECTION}\n\nnew numbers\n")
    assert "old numbers" not in updated and "new numbers" in updated
    assert "## Policies\nkeep" in updated and "## Later\nkeep too" in updated
    assert replace_section("# Routing\n", f"{SECTION}\nx\n").endswith(f"{SECTION}\nx\n\n")
