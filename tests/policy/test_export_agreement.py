"""The export's measure of its approximation: decision agreement beside the agreement a
random split at the same shares reaches, paired bootstrap intervals of the quality and cost
differences, and a loud warning when the approximation routes like a weighted coin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aigw_lab.policy.export.approximation import Evaluation, closest_expressible

STRONG, WEAK = "openai/gpt-4o", "openai/gpt-4o-mini"
SPEC = {"kind": "learned", "name": "r", "targets": [STRONG, WEAK], "strong": STRONG, "weak": WEAK}


def evaluation(decide_by_category: bool, n: int = 400, seed: int = 0) -> Evaluation:
    """Items in categories a and b. The policy sends a to STRONG, b to WEAK when
    ``decide_by_category``; else it decides by a coin independent of the category."""
    rng = np.random.default_rng(seed)
    rows, decisions = [], {}
    for i in range(n):
        category = "a" if i % 2 else "b"
        strong_pick = category == "a" if decide_by_category else bool(rng.random() < 0.5)
        decisions[str(i)] = STRONG if strong_pick else WEAK
        hard = category == "a"
        for model, score, cost in ((STRONG, 1.0, 0.01), (WEAK, 0.0 if hard else 1.0, 0.001)):
            rows.append(
                {"item_id": str(i), "category": category, "model": model, "score": score,
                 "cost_usd": cost}
            )  # fmt: skip
    return Evaluation(pd.DataFrame(rows), decisions)


def test_a_category_approximation_of_a_category_policy_agrees_fully_without_warning():
    report = closest_expressible(SPEC, "litellm", evaluation(True), method="category").report
    loss = report.loss
    assert loss.agreement == pytest.approx(1.0)
    assert loss.chance_agreement == pytest.approx(0.5, abs=0.01)
    assert not loss.near_chance and report.warnings() == []
    assert loss.quality_delta == pytest.approx(0.0) and loss.quality_delta_ci == (0.0, 0.0)


def test_a_split_approximation_agrees_at_chance_and_warns_loudly():
    report = closest_expressible(SPEC, "litellm", evaluation(True), method="split").report
    loss = report.loss
    assert loss.agreement == pytest.approx(loss.chance_agreement)
    assert loss.near_chance
    (warning,) = report.warnings()
    assert warning.startswith("WARNING:") and "weighted coin" in warning
    assert any(line.startswith("WARNING:") for line in report.summary_lines())
    # Routing half the hard items to the weak model loses quality, and the interval says so.
    low, high = loss.quality_delta_ci
    assert low <= loss.quality_delta <= high < 0


def test_a_category_fit_of_a_policy_blind_to_category_is_flagged_too():
    report = closest_expressible(SPEC, "portkey", evaluation(False), method="category").report
    assert report.method == "category conditional"
    assert report.loss.near_chance and report.warnings()


def test_intervals_cover_the_per_item_means_and_are_reproducible():
    first = closest_expressible(SPEC, "litellm", evaluation(False), method="split").report.loss
    again = closest_expressible(SPEC, "litellm", evaluation(False), method="split").report.loss
    assert first.cost_delta_ci == again.cost_delta_ci  # a fixed bootstrap seed
    low, high = first.agreement_ci
    assert low <= first.agreement <= high
    assert "near_chance" in first.to_dict()


def test_an_exact_native_export_never_warns():
    spec = {"kind": "fallback", "name": "f", "targets": [STRONG, WEAK]}
    report = closest_expressible(spec, "litellm", evaluation(True)).report
    assert report.exact and report.warnings() == []
