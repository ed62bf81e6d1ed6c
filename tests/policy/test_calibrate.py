"""Calibration: the chosen threshold / lambda meets its target on the calibration items, and
the achieved share, cost and quality come with intervals measured on held-out items."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.policy.calibrate import calibrate, choose_parameter
from aigw_lab.policy.learned import Decision, train_router
from tests.policy._learned_data import synthetic

EMBEDDER = HashingEmbedder(256)


def splits():
    data = synthetic(40)
    rest, test = data.split(0.25, seed=0)
    train, cal = rest.split(0.4, seed=1)
    return train, cal, test


def test_choose_parameter_for_each_kind_of_target():
    share = np.array([1.0, 0.6, 0.4, 0.0])
    cost = np.array([4.0, 3.0, 2.0, 1.0])
    quality = np.array([0.9, 0.85, 0.7, 0.5])
    assert choose_parameter(share, cost, quality, strong_share=0.5) == 2
    assert choose_parameter(share, cost, quality, budget=3.5) == 1
    assert choose_parameter(share, cost, quality, quality_floor=0.8) == 1
    assert choose_parameter(share, cost, quality, quality_floor=0.95) is None


def test_strong_share_target_is_met_and_measured_on_held_out_items():
    train, cal, test = splits()
    router = train_router(train, "classifier", embedder=EMBEDDER)
    result = calibrate(router, cal, strong_share=0.5, held_out=test, n_boot=200)
    assert result.decision.mode == "threshold"
    assert result.measured_on == "held-out" and result.n_measured == len(test)
    share = result.achieved["strong_share"]
    assert share.low <= share.value <= share.high
    # Applying the chosen threshold to the held-out items gives the reported share.
    routed = router.with_decision(result.decision)
    scores = routed.scores([item.prompt for item in test.items])
    assert float(np.mean(scores >= result.decision.value)) == pytest.approx(share.value)
    low, high = result.value_interval
    assert low <= high


def test_quality_floor_and_budget_targets():
    train, cal, test = splits()
    router = train_router(train, "knn", embedder=EMBEDDER, params={"k": 5})
    floor = calibrate(router, cal, quality_floor=0.95, held_out=test, n_boot=100)
    assert floor.achieved["quality"].value >= 0.9
    weak_cost = float(cal.outcomes.groupby("model")["cost_usd"].mean().min())
    budget = calibrate(router, cal, budget=weak_cost * 1.01, held_out=test, n_boot=100)
    assert budget.achieved["strong_share"].value < 0.2
    assert budget.measured_on == "held-out"


def test_lambda_router_calibrates_a_lambda():
    train, cal, test = splits()
    router = train_router(train, "regressor", embedder=EMBEDDER, decision=Decision("lambda", 0))
    best = float(cal.wide_scores().max(axis=1).mean())
    result = calibrate(router, cal, quality_floor=best - 0.05, n_boot=50)
    assert result.decision.mode == "lambda" and result.measured_on == "calibration"
    assert result.achieved["quality"].value >= best - 0.05 - 1e-9
    assert "strong_share" not in result.achieved


def test_calibration_refuses_bad_targets_and_training_items():
    train, cal, test = splits()
    router = train_router(train, "knn", embedder=EMBEDDER, params={"k": 5})
    with pytest.raises(ConfigError, match="exactly one target"):
        calibrate(router, cal, strong_share=0.5, budget=1.0)
    with pytest.raises(ConfigError, match="not in"):
        calibrate(router, cal, strong_share=1.5)
    with pytest.raises(ConfigError, match="no threshold meets"):
        calibrate(router, cal, quality_floor=2.0, n_boot=10)
    with pytest.raises(ConfigError, match="used to train"):
        calibrate(router, train, strong_share=0.5, n_boot=10)
