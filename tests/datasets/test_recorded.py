"""`RecordedDataset` on a small hand-made recording: estimates, costs, lookups, splits."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from aigw_lab.datasets import (
    LIST_PRICES,
    Dataset,
    RecordedDataset,
    RecordedOutcome,
    estimate_tokens,
)
from aigw_lab.errors import ConfigError
from aigw_lab.providers.base import Price

PRICES = {"big": Price(10.0, 30.0), "small": Price(0.5, 1.0)}


def make_recording(n_items: int = 3) -> RecordedDataset:
    dataset = Dataset.from_records(
        "toy",
        [{"id": f"q{i}", "prompt": "x" * (4 * i + 5), "reference": str(i)} for i in range(n_items)],
    )
    rows = []
    for i in range(n_items):
        rows.append({"item_id": f"q{i}", "model": "big", "output": "y" * (8 * i + 3), "score": 1.0})
        rows.append(
            {
                "item_id": f"q{i}",
                "model": "small",
                "output": None if i == 0 else "z",
                "score": None if i == 1 else float(i % 2),
            }
        )
    return RecordedDataset.from_outputs(
        dataset,
        pd.DataFrame(rows),
        score_name="correct",
        score_scale=(0.0, 1.0),
        source="test",
        prices=PRICES,
    )


def test_estimate_tokens_is_ceil_of_characters_over_four() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    assert estimate_tokens(None) is None


def test_tokens_are_estimated_and_cost_is_tokens_times_price() -> None:
    rec = make_recording()
    big = rec.outcome("q1", "big")  # prompt 9 chars -> 3 tokens, output 11 chars -> 3 tokens
    assert big == RecordedOutcome(
        item_id="q1",
        model="big",
        output="y" * 11,
        score=1.0,
        input_tokens=3,
        output_tokens=3,
        cost_usd=(3 * 10.0 + 3 * 30.0) / 1e6,
    )
    small = rec.outcome("q0", "small")  # no output: no output tokens, the prompt is still paid
    assert small.output is None and small.output_tokens is None
    assert small.input_tokens == 2
    assert small.cost_usd == pytest.approx(2 * 0.5 / 1e6)
    assert rec.prices == PRICES and rec.models == ("big", "small")


def test_unpriced_models_have_unknown_cost() -> None:
    dataset = Dataset.from_records("t", [{"id": "a", "prompt": "p"}])
    rec = RecordedDataset.from_outputs(
        dataset,
        pd.DataFrame([{"item_id": "a", "model": "mystery", "output": "o", "score": 1}]),
        score_name="correct",
        score_scale=(0, 1),
        source="t",
    )
    assert rec.outcome("a", "mystery").cost_usd is None and rec.prices == {}


def test_labels_keep_missing_scores_as_none() -> None:
    rec = make_recording()
    assert rec.label("q1", "small") is None
    assert rec.label("q2", "small") == 0.0 and rec.label("q2", "big") == 1.0


def test_unknown_model_or_item_is_a_config_error_with_a_fix() -> None:
    rec = make_recording()
    with pytest.raises(ConfigError, match="no recordings of model 'huge'.*big, small"):
        rec.label("q0", "huge")
    with pytest.raises(ConfigError, match="has no item 'q9'"):
        rec.outcome("q9", "big")


def test_wide_scores_are_items_by_models_in_dataset_order() -> None:
    wide = make_recording().wide_scores()
    assert list(wide.index) == ["q0", "q1", "q2"] and list(wide.columns) == ["big", "small"]
    assert wide.loc["q0", "small"] == 0.0 and math.isnan(wide.loc["q1", "small"])
    assert make_recording().mean_scores().to_dict() == {"big": 1.0, "small": 0.0}


def test_subset_keeps_items_and_their_outcomes() -> None:
    sub = make_recording().subset(["q2", "q0"])
    assert sub.ids == ("q0", "q2")
    assert set(sub.outcomes["item_id"]) == {"q0", "q2"} and len(sub.outcomes) == 4
    with pytest.raises(ConfigError, match="no item"):
        make_recording().subset(["nope"])


def test_split_is_deterministic_disjoint_and_complete() -> None:
    rec = make_recording(50)
    train, test = rec.split(0.2, seed=3)
    again_train, again_test = rec.split(0.2, seed=3)
    assert len(test) == 10 and len(train) == 40
    assert set(train.ids).isdisjoint(test.ids) and set(train.ids) | set(test.ids) == set(rec.ids)
    assert (train.ids, test.ids) == (again_train.ids, again_test.ids)
    assert set(rec.split(0.2, seed=4)[1].ids) != set(test.ids)
    # An item's side depends on its id, not on where it sits in the dataset.
    shuffled = rec.subset(rec.ids)
    reversed_ds = RecordedDataset(
        Dataset("toy", tuple(reversed(rec.items))),
        rec.outcomes,
        score_name="correct",
        score_scale=(0, 1),
        source="test",
        prices=PRICES,
    )
    assert set(reversed_ds.split(0.2, seed=3)[1].ids) == set(test.ids)
    assert set(shuffled.split(0.2, seed=3)[1].ids) == set(test.ids)
    with pytest.raises(ConfigError, match="test_fraction"):
        rec.split(1.0)


def test_outcomes_need_every_column() -> None:
    with pytest.raises(ConfigError, match="lack column"):
        RecordedDataset(
            Dataset("t", ()),
            pd.DataFrame({"item_id": []}),
            score_name="s",
            score_scale=(0, 1),
            source="t",
        )


def test_list_prices_follow_the_shared_readme() -> None:
    assert LIST_PRICES["gpt-4-1106-preview"] == Price(10.0, 30.0)
    assert LIST_PRICES["Mixtral-8x7B-Instruct-v0.1"] == Price(0.6, 0.6)
    assert LIST_PRICES["claude-instant-1"] == Price(0.8, 2.4)
    assert "palm-2-chat-bison-001" not in LIST_PRICES
