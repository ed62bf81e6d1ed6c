"""AutoScorer over the bundled dataset, and build_scorer's names, options and errors."""

from __future__ import annotations

import json

import pytest

from aigw_lab.datasets import bundled_dataset
from aigw_lab.errors import ConfigError
from aigw_lab.gateway import Gateway
from aigw_lab.scorers import (
    SCORER_TYPES,
    AutoScorer,
    ChoiceMatch,
    JudgeScorer,
    NumericMatch,
    RegexMatch,
    auto_scorer,
    build_scorer,
)

from .conftest import make_response


def _as_text(value):
    return value if isinstance(value, str) else json.dumps(value)


def test_auto_scores_every_bundled_reference_right_and_every_distractor_wrong():
    dataset = bundled_dataset()
    scorer = AutoScorer()
    wrong_passed = []
    for item in dataset:
        right = scorer.score(item, make_response(_as_text(item.reference)))
        assert right.value == 1.0, (item.id, right)
        for distractor in item.metadata["distractors"]:
            if scorer.score(item, make_response(_as_text(distractor))).value != 0.0:
                wrong_passed.append((item.id, distractor))
    assert wrong_passed == []


def test_auto_picks_by_answer_type_then_category(item, respond):
    assert isinstance(auto_scorer(item("4", metadata={"answer_type": "number"})), NumericMatch)
    assert isinstance(auto_scorer(item("B", category="multiple_choice")), ChoiceMatch)
    assert auto_scorer(item("x")).name == "exact"
    score = AutoScorer(name="quality").score(
        item("42", metadata={"answer_type": "number"}), respond("#### 42")
    )
    assert (score.scorer, score.value, score.details["via"]) == ("quality", 1.0, "numeric")


def test_build_scorer_from_names_and_tables():
    assert isinstance(build_scorer("numeric"), NumericMatch)
    regex = build_scorer({"type": "regex", "pattern": "^[A-D]$", "name": "letter"})
    assert isinstance(regex, RegexMatch) and regex.name == "letter"
    ready = NumericMatch()
    assert build_scorer(ready) is ready
    for name in SCORER_TYPES:
        if name not in ("regex", "judge", "pairwise_judge", "recorded"):  # these need options
            assert build_scorer(name).name  # every option-free type builds


def test_build_scorer_errors_say_what_is_known():
    with pytest.raises(ConfigError) as info:
        build_scorer("bleu")
    assert "'bleu'" in str(info.value) and "numeric" in str(info.value)
    with pytest.raises(ConfigError, match="no type"):
        build_scorer({"pattern": "x"})
    with pytest.raises(ConfigError, match="needs pattern"):
        build_scorer("regex")
    with pytest.raises(ConfigError, match="no option.*tolerance.*rel_tol"):
        build_scorer({"type": "numeric", "tolerance": 0.1})
    with pytest.raises(ConfigError, match="needs a gateway"):
        build_scorer({"type": "judge", "model": "sim-openai/sim-large"})
    with pytest.raises(ConfigError, match="a scorer spec is a int"):
        build_scorer(3)  # type: ignore[arg-type]


def test_build_scorer_makes_a_judge_on_the_given_gateway():
    with Gateway.simulated_fleet(time_scale=0, log=None) as gateway:
        judge = build_scorer(
            {"type": "judge", "model": "sim-openai/sim-large", "name": "j"}, gateway=gateway
        )
    assert isinstance(judge, JudgeScorer)
    assert (judge.gateway, judge.model, judge.name, judge.scale) == (
        gateway,
        "sim-openai/sim-large",
        "j",
        (1.0, 10.0),
    )
