"""The simulated fleet's judge: verdicts from the reference, accuracy by model strength,
determinism under the seed, and ordinary prompts left alone."""

from __future__ import annotations

import json

from aigw_lab.datasets import bundled_dataset, load_bundled
from aigw_lab.scorers.judge_prompts import (
    pairwise_prompt,
    parse_rating,
    parse_verdict,
    single_prompt,
)
from aigw_lab.sim.catalog import DEFAULT_MODELS
from aigw_lab.sim.fleet import SimulatedFleet
from aigw_lab.sim.judge import judge_accuracy, judge_reply
from aigw_lab.sim.wire import SimCall

MODELS = {m.id: m for m in DEFAULT_MODELS}


def _text(value):
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _judged_right(model, seed=0):
    """How often ``model`` grades a reference answer >= 7 and a distractor <= 3."""
    right = total = 0
    for item in bundled_dataset():
        for answer, good in (
            (_text(item.reference), True),
            (_text(item.metadata["distractors"][0]), False),
        ):
            _, user = single_prompt(item.prompt, answer, reference=_text(item.reference))
            rating = parse_rating(judge_reply(model, user, seed=seed))
            right += (rating >= 7) if good else (rating <= 3)
            total += 1
    return right / total


def test_stronger_models_judge_more_accurately():
    large = _judged_right(MODELS["sim-large"])
    nano = _judged_right(MODELS["sim-nano"])
    assert judge_accuracy(MODELS["sim-large"]) > judge_accuracy(MODELS["sim-nano"])
    # 312 judgements each; the expected rates are judge_accuracy (0.94 and 0.77).
    assert large > 0.88 and nano < 0.85 and large - nano > 0.08, (large, nano)


def test_grades_are_deterministic_under_the_seed_and_vary_with_it():
    item = bundled_dataset()["qa-001"]
    _, user = single_prompt(item.prompt, "Au", reference="Au")
    model = MODELS["sim-small"]
    assert judge_reply(model, user, seed=1) == judge_reply(model, user, seed=1)
    replies = {judge_reply(model, user, seed=s) for s in range(12)}
    assert len(replies) > 1
    assert all(r.startswith("(simulated judge)") for r in replies)


def test_references_from_the_prompt_or_the_dataset():
    items = {i["prompt"]: i for i in load_bundled()}
    question = "What is the chemical symbol for gold? Answer in as few words as possible."
    _, user = single_prompt(question, "Au")  # no reference in the prompt: looked up
    rating = parse_rating(judge_reply(MODELS["sim-large"], user, seed=0, lookup=items.get))
    assert rating >= 7
    _, unknown = single_prompt("Tell me a joke.", "Why did the chicken...")
    rating = parse_rating(judge_reply(MODELS["sim-large"], unknown, seed=0))
    assert 4 <= rating <= 7  # nothing to check against: a middling grade
    # A reference given in the prompt is used even for an unknown question.
    _, custom = single_prompt("Capital of Peru?", "It is Lima.", reference="Lima")
    assert parse_rating(judge_reply(MODELS["sim-large"], custom, seed=0)) >= 7


def test_pairwise_verdicts_follow_correctness():
    item = bundled_dataset()["arith-001"]
    _, right_first = pairwise_prompt(item.prompt, "64", "56", reference="64")
    _, right_second = pairwise_prompt(item.prompt, "56", "64", reference="64")
    model = MODELS["sim-large"]
    assert parse_verdict(judge_reply(model, right_first, seed=0)) == "A"
    assert parse_verdict(judge_reply(model, right_second, seed=0)) == "B"


def test_other_prompts_are_not_judged():
    assert judge_reply(MODELS["sim-large"], "What is 2+2?", seed=0) is None
    assert judge_reply(MODELS["sim-large"], "[aigw-judge single v1] but malformed", seed=0) is None


def test_the_fleet_answers_judge_prompts_and_keeps_filler_for_the_rest():
    fleet = SimulatedFleet(seed=0, time_scale=0.0)
    _, user = single_prompt("2+2?", "4", reference="4")
    judged = fleet.plan(SimCall("openai", "sim-large", (("user", user),)))
    assert parse_rating(judged.text) is not None and judged.item_id is None
    assert judged.output_tokens > 0
    filler = fleet.plan(SimCall("openai", "sim-large", (("user", "Tell me about caching."),)))
    assert parse_rating(filler.text) is None and "[[" not in filler.text
