"""FunctionScorer and RecordedLabel."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.scorers import FunctionScorer, RecordedLabel, Score


def test_function_scorer_accepts_bools_numbers_none_and_scores(item, respond):
    def no_apology(text):
        return "sorry" not in text.lower()

    assert FunctionScorer(no_apology).score(item(), respond("Sure.")).value == 1.0
    scored = FunctionScorer(no_apology).score(item(), respond("Sorry, no."))
    assert (scored.scorer, scored.value, scored.label) == ("no_apology", 0.0, "fail")

    def length(item, response):
        return len(response.text)

    assert FunctionScorer(length, scale=(0, 1000)).score(item(), respond("abcd")).value == 4.0
    assert FunctionScorer(lambda text: None, "maybe").score(item(), respond("x")).value is None
    renamed = FunctionScorer(lambda i, r: Score("inner", 0.5, label="half"), "outer")
    assert renamed.score(item(), respond("x")) == Score("outer", 0.5, label="half")


def test_function_scorer_errors(item, respond):
    with pytest.raises(ConfigError, match="needs a name"):
        FunctionScorer(lambda text: True)
    with pytest.raises(ConfigError, match="needs a function"):
        FunctionScorer("not callable", "x")  # type: ignore[arg-type]
    bad = FunctionScorer(lambda text: "yes", "bad")
    with pytest.raises(ConfigError, match="returned 'yes'"):
        bad.score(item(), respond("x"))


async def test_function_scorer_awaits_async_functions(item, respond):
    async def check(text):
        return text.startswith("ok")

    scorer = FunctionScorer(check)
    assert (await scorer.ascore(item(), respond("ok then"))).value == 1.0
    with pytest.raises(ConfigError, match="async"):
        scorer.score(item(), respond("ok"))


class StandInRecorded:
    """The duck-typed interface of aigw_lab.datasets.recorded.RecordedDataset."""

    def __init__(self, labels):
        self.labels = labels
        self.asked = []

    def label(self, item_id, model):
        self.asked.append((item_id, model))
        return self.labels.get((item_id, model))


def test_recorded_label_looks_up_item_and_model(item, respond):
    recorded = StandInRecorded({("q1", "gpt-x"): 1, ("q1", "gpt-y"): 0.0})
    scorer = RecordedLabel(recorded, name="mmlu_label")
    hit = scorer.score(item(), respond("whatever", model="gpt-x"))
    miss = scorer.score(item(), respond("whatever", model="gpt-z"))
    assert (hit.scorer, hit.value, hit.kind) == ("mmlu_label", 1.0, "recorded")
    assert scorer.score(item(), respond("", model="gpt-y")).value == 0.0
    assert (miss.value, miss.label, miss.kind) == (None, "no_label", "recorded")
    assert recorded.asked[0] == ("q1", "gpt-x")
    with pytest.raises(ConfigError, match="label"):
        RecordedLabel(object())
