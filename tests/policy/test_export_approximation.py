"""`closest_expressible` and `measure_loss`: what replaces an inexpressible policy, and the
quality and cost that replacement loses, checked against means worked out by hand from the
six recorded items of tests/policy/_export_cases.py."""

from __future__ import annotations

import json

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export import Evaluation, closest_expressible, export, measure_loss

from ._export_cases import (
    ADAPTIVE,
    CASCADE,
    HAIKU,
    LEARNED,
    LEARNED_DECISIONS,
    PROVIDERS,
    RULES,
    SPLIT,
    STRONG,
    WEAK,
    learned_evaluation,
    outcomes_frame,
)


def test_learned_router_becomes_a_category_conditional_with_measured_loss() -> None:
    spec, report, measure = closest_expressible(LEARNED, "portkey", learned_evaluation())
    # math: strong twice; code: one each (tie -> the policy's first target, strong); chat:
    # weak twice. Overall three each -> strong is the default, chat is the one rule.
    assert spec == {
        "kind": "rules",
        "name": "cheap-or-strong",
        "rules": [{"when": {"category": "chat"}, "target": WEAK}],
        "default": STRONG,
    }
    assert not report.exact and report.method == "category conditional"
    loss = report.loss
    assert loss is not None and loss.items == 6
    # Original: every decision scored 1; costs .010 .010 .020 .002 .001 .001.
    assert loss.original_quality == pytest.approx(1.0)
    assert loss.original_cost_usd == pytest.approx(0.044 / 6)
    # Approximation: i4 (code) now goes to strong, which scored 0 there at cost .020.
    assert loss.approx_quality == pytest.approx(5 / 6)
    assert loss.approx_cost_usd == pytest.approx(0.062 / 6)
    assert loss.quality_delta == pytest.approx(-1 / 6)
    assert loss.cost_delta_usd == pytest.approx(0.018 / 6)
    assert loss.agreement == pytest.approx(5 / 6)
    assert measure(outcomes_frame(), LEARNED_DECISIONS) == loss


def test_best_category_fit_picks_the_best_scoring_target_per_category() -> None:
    spec, report, _ = closest_expressible(
        LEARNED, "cloudflare", learned_evaluation(), method="best-category"
    )
    # Mean scores strong/weak: math 1/.5, code .5/.5 (tie -> cheaper weak), chat .5/1;
    # overall 4/6 each (tie -> cheaper weak) -> weak is the default, math the one rule.
    assert spec["rules"] == [{"when": {"category": "math"}, "target": STRONG}]
    assert spec["default"] == WEAK
    assert report.loss.approx_quality == pytest.approx(5 / 6)
    assert report.loss.approx_cost_usd == pytest.approx(0.026 / 6)
    assert "best mean recorded score" in report.notes[1]


def test_learned_router_as_a_split_scores_its_expected_value() -> None:
    spec, report, _ = closest_expressible(
        LEARNED, "cloudflare", learned_evaluation(), method="split"
    )
    assert spec["kind"] == "split"
    assert spec["targets"] == [{"target": STRONG, "weight": 0.5}, {"target": WEAK, "weight": 0.5}]
    loss = report.loss
    # Half of each model's score and cost per item: (.5 + 1 + .5 + .5 + 1 + .5) / 6.
    assert loss.approx_quality == pytest.approx(4 / 6)
    assert loss.approx_cost_usd == pytest.approx(0.044 / 6)
    assert loss.agreement == pytest.approx(0.5)


def test_two_model_router_split_from_a_stated_strong_share() -> None:
    spec, report, _ = closest_expressible(LEARNED, "litellm", strong_share=0.3)
    assert spec["targets"] == [{"target": STRONG, "weight": 0.3}, {"target": WEAK, "weight": 0.7}]
    assert report.loss is None
    with pytest.raises(ConfigError, match="without its call shares"):
        closest_expressible(LEARNED, "litellm")
    with pytest.raises(ConfigError, match="needs an evaluation set"):
        closest_expressible(LEARNED, "litellm", method="category")


def test_cascade_without_evaluation_is_a_fallback_chain() -> None:
    spec, report, _ = closest_expressible(CASCADE, "portkey")
    assert spec == {"kind": "fallback", "name": "frugal", "targets": [WEAK, STRONG]}
    assert report.method == "fallback chain"
    assert any("only on errors" in note for note in report.notes)


def test_cascade_escalations_are_all_costed_in_the_original() -> None:
    # i1 escalated (weak then strong); the rest accepted weak's answer.
    decisions = {"i1": [WEAK, STRONG], "i2": WEAK, "i3": WEAK}
    exported = {"kind": "fallback", "name": "frugal", "targets": [WEAK, STRONG]}
    loss = measure_loss(exported, outcomes_frame(), decisions)
    assert loss.original_quality == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert loss.original_cost_usd == pytest.approx((0.011 + 0.001 + 0.002) / 3)
    assert loss.approx_quality == pytest.approx((0.0 + 1.0 + 0.0) / 3)
    assert loss.approx_cost_usd == pytest.approx((0.001 + 0.001 + 0.002) / 3)
    assert loss.agreement == pytest.approx(2 / 3)


def test_adaptive_split_exports_equal_weights_until_a_winner() -> None:
    spec, report, _ = closest_expressible(ADAPTIVE, "litellm")
    assert [t["weight"] for t in spec["targets"]] == [1.0, 1.0]
    won = {**ADAPTIVE, "state": {**ADAPTIVE["state"], "winner": HAIKU}}
    spec, report, _ = closest_expressible(won, "litellm")
    assert {t["target"]: t["weight"] for t in spec["targets"]} == {STRONG: 0.0, HAIKU: 1.0}
    assert "winner" in report.notes[0]


def test_native_kinds_are_exact_and_rules_keep_what_the_target_can_test() -> None:
    spec, report, _ = closest_expressible(SPLIT, "portkey")
    assert spec == SPLIT and report.exact
    assert "sticky assignment per user" in report.notes[0]
    kept = {
        target: len(closest_expressible(RULES, target).spec["rules"])
        for target in ("litellm", "portkey", "cloudflare")
    }
    assert kept == {"litellm": 2, "portkey": 3, "cloudflare": 3}


def test_litellm_drops_a_rule_whose_categories_an_earlier_rule_claimed() -> None:
    spec = {
        "kind": "rules",
        "name": "r",
        "rules": [
            {"when": {"category": ["a", "b"]}, "target": STRONG},
            {"when": {"category": "a"}, "target": WEAK},
        ],
        "default": HAIKU,
    }
    exported, report, _ = closest_expressible(spec, "litellm")
    assert exported["rules"] == spec["rules"][:1]
    assert "claimed by earlier rules" in report.notes[0]


def test_outcomes_must_cover_the_targets() -> None:
    exported = {"kind": "fallback", "name": "x", "targets": ["openai/unknown-model"]}
    with pytest.raises(ConfigError, match="no recorded outcomes"):
        measure_loss(exported, outcomes_frame(), {"i1": "openai/unknown-model"})


def test_unknown_target_and_kind_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown export target"):
        closest_expressible(SPLIT, "kong")
    with pytest.raises(ConfigError, match="cannot export policy kind"):
        closest_expressible({"kind": "oracle", "name": "o"}, "portkey")


def test_write_puts_the_report_beside_the_file(tmp_path) -> None:
    evaluation = Evaluation(outcomes_frame(), LEARNED_DECISIONS)
    result = export(LEARNED, "portkey", providers=PROVIDERS, evaluation=evaluation)
    path = result.write(tmp_path / "portkey-config.json")
    assert json.loads(path.read_text()) == result.config
    sidecar = json.loads((tmp_path / "portkey-config.json.approximation.json").read_text())
    assert sidecar["method"] == "category conditional"
    assert sidecar["loss"]["quality_delta"] == pytest.approx(-1 / 6)


def test_unknown_exporter_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid option for the portkey export"):
        export(SPLIT, "portkey", providers=PROVIDERS, num_retries=3)
