"""Where the cost estimate takes each unit's output tokens from, one test per source
(`aigw_lab.experiments.expected_output`), on fakes priced at $1 an output token and nothing
for input, so a unit's estimated dollars are its expected output tokens."""

from __future__ import annotations

import pandas as pd
import pytest

from aigw_lab.datasets import Dataset
from aigw_lab.datasets.recorded import RecordedDataset
from aigw_lab.experiments import Experiment, estimate_cost, run_experiment
from aigw_lab.experiments.expected_output import (
    MIN_CALIBRATION_ITEMS,
    OUTPUT_SOURCES,
    reference_tokens,
)
from aigw_lab.providers.base import Price
from aigw_lab.sim.replay import ReplayProvider
from aigw_lab.testing.fakes import FunctionProvider

from .conftest import DOLLAR_PER_TOKEN, answer_sum, small_dataset


def chatty(request) -> str:
    """The right sum in a sentence of six tokens (24 characters: the fakes count 4 a token;
    the reference is one token)."""
    return f"The answer is {answer_sum(request)}.".ljust(24)


def test_reference_answers_give_the_output_tokens(make_gateway):
    gateway = make_gateway()
    exp = Experiment("refs", small_dataset(), ["fake/m"], params={"max_tokens": 256})
    estimate = estimate_cost(gateway, exp)
    # "0", "2", "4", "6", "8": one token each, whatever max_tokens allows.
    assert estimate.output_sources == {"reference": 5}
    assert estimate.output_tokens == 5 and estimate.usd == pytest.approx(5.0)
    assert "output from: 5 reference answers" in estimate.describe()


def test_reference_tokens_count_characters_and_json():
    items = Dataset.from_records(
        "r",
        [
            {"id": "a", "prompt": "p", "reference": "x" * 9},
            {"id": "b", "prompt": "p", "reference": {"name": "Ada", "age": 36}},
            {"id": "c", "prompt": "p", "reference": ""},
            {"id": "d", "prompt": "p"},
        ],
    ).items
    # 9 chars -> 3; '{"name": "Ada", "age": 36}' is 26 chars -> 7; empty -> 1; none -> None.
    assert [reference_tokens(item) for item in items] == [3, 7, 1, None]


def test_a_reference_longer_than_max_tokens_is_capped(make_gateway):
    gateway = make_gateway()
    data = Dataset.from_records("long", [{"id": "l", "prompt": "Say it.", "reference": "y" * 400}])
    estimate = estimate_cost(gateway, Experiment("cap", data, ["fake/m"], params={"max_tokens": 7}))
    assert estimate.output_tokens == 7 and estimate.output_sources == {"reference": 1}


def test_the_logged_answers_to_an_item_come_first(make_gateway):
    gateway = make_gateway(FunctionProvider(chatty, "fake"))
    run_experiment(gateway, Experiment("trial", small_dataset(2), ["fake/m"]), progress=False)
    # Another experiment on the same items: the two answered ones are known exactly.
    estimate = estimate_cost(gateway, Experiment("full", small_dataset(2), ["fake/m"]))
    assert estimate.output_sources == {"log_item": 2}
    assert estimate.output_tokens == 12 and estimate.usd == pytest.approx(12.0)


def test_a_models_logged_ratio_scales_the_references_of_unanswered_items(make_gateway):
    gateway = make_gateway(FunctionProvider(chatty, "fake"))
    trial = small_dataset(MIN_CALIBRATION_ITEMS)
    run_experiment(gateway, Experiment("trial", trial, ["fake/m"]), progress=False)
    full = small_dataset(MIN_CALIBRATION_ITEMS + 2)
    estimate = estimate_cost(gateway, Experiment("full", full, ["fake/m"]))
    # Six answer tokens per one reference token on the trial: the two new items get 6 each.
    assert estimate.output_sources == {"log_item": MIN_CALIBRATION_ITEMS, "reference_log": 2}
    assert estimate.output_tokens == 6 * (MIN_CALIBRATION_ITEMS + 2)
    result = run_experiment(gateway, Experiment("full", full, ["fake/m"]), progress=False)
    assert result.cost_usd == pytest.approx(estimate.usd)


def test_too_few_logged_items_leave_the_reference_unscaled(make_gateway):
    gateway = make_gateway(FunctionProvider(chatty, "fake"))
    trial = small_dataset(MIN_CALIBRATION_ITEMS - 1)
    run_experiment(gateway, Experiment("trial", trial, ["fake/m"]), progress=False)
    estimate = estimate_cost(gateway, Experiment("full", small_dataset(5), ["fake/m"]))
    assert estimate.output_sources == {
        "log_item": MIN_CALIBRATION_ITEMS - 1,
        "reference": 5 - (MIN_CALIBRATION_ITEMS - 1),
    }


def test_without_references_the_models_mean_logged_answer_is_used(make_gateway):
    # 16 characters: four tokens to the fakes.
    gateway = make_gateway(FunctionProvider(lambda request: "x" * 16, "fake"))
    gateway.chat("fake/m", "anything at all")  # not an experiment's call: no item id
    gateway.chat("fake/m", "something else")
    exp = Experiment("mean", small_dataset(references=False), ["fake/m"])
    estimate = estimate_cost(gateway, exp)
    assert estimate.output_sources == {"log_model": 5}
    assert estimate.output_tokens == 20
    # Another model of the same provider has no log: max_tokens, then the default.
    other = Experiment("other", small_dataset(references=False), ["fake/other"])
    assert estimate_cost(gateway, other).output_sources == {"default": 5}


def test_failed_calls_and_cache_hits_are_not_counted_from_the_log(make_gateway):
    def answer(request):
        if "fail" in request.messages[-1].text:
            raise ValueError("no")
        return "x" * 16

    from aigw_lab.gateway.cache import ExactCache

    gateway = make_gateway(FunctionProvider(answer, "fake"), middleware=[ExactCache()])
    gateway.chat("fake/m", "hello")
    gateway.chat("fake/m", "hello")  # a cache hit, logged with attempt 0
    with pytest.raises(ValueError):
        gateway.chat("fake/m", "please fail")
    estimate = estimate_cost(
        gateway, Experiment("m", small_dataset(1, references=False), ["fake/m"])
    )
    assert estimate.output_sources == {"log_model": 1} and estimate.output_tokens == 4


def test_max_tokens_then_the_default_when_nothing_else_is_known(make_gateway):
    gateway = make_gateway()
    bounded = Experiment(
        "bounded", small_dataset(references=False), ["fake/m"], params={"max_tokens": 9}
    )
    assert estimate_cost(gateway, bounded).output_sources == {"max_tokens": 5}
    assert estimate_cost(gateway, bounded).output_tokens == 45
    unbounded = Experiment("unbounded", small_dataset(references=False), ["fake/m"])
    estimate = estimate_cost(gateway, unbounded, output_tokens=100)
    assert estimate.output_sources == {"default": 5} and estimate.output_tokens == 500
    assert (
        "(output from: 5 at the default 256 tokens)" in estimate_cost(gateway, unbounded).describe()
    )


def recording() -> RecordedDataset:
    data = Dataset.from_records(
        "rec",
        [
            {"id": "r0", "prompt": "Name a colour.", "reference": "red"},
            {"id": "r1", "prompt": "Name a fruit.", "reference": "apple"},
        ],
    )
    frame = pd.DataFrame(
        {
            "item_id": ["r0", "r1", "r0"],
            "model": ["big", "big", "small"],
            "output": ["Red, the colour of " + "x" * 80, "An apple.", "blue"],
            "score": [1.0, 1.0, 0.0],
        }
    )
    prices = {"big": Price(0.0, 1_000_000.0), "small": Price(0.0, 1_000_000.0)}
    return RecordedDataset.from_outputs(
        data, frame, score_name="correct", score_scale=(0, 1), source="test", prices=prices
    )


def test_a_replay_providers_recorded_answers_are_the_estimate(make_gateway):
    recorded = recording()
    gateway = make_gateway(ReplayProvider(recorded, name="rec"), prices={})
    exp = Experiment("replayed", recorded.dataset, ["rec/big", "rec/small"])
    estimate = estimate_cost(gateway, exp)
    # r0/big and r1/big and r0/small are recorded; small never answered r1 (its reference).
    assert estimate.output_sources == {"recorded": 3, "reference": 1}
    big = recorded.outcome("r0", "big").output_tokens + recorded.outcome("r1", "big").output_tokens
    assert estimate.per_target_usd["rec/big"] == pytest.approx(big)
    result = run_experiment(gateway, exp, progress=False)
    assert result.failed == 1  # small on r1: no recording to replay
    assert result.cost_usd == pytest.approx(big + recorded.outcome("r0", "small").output_tokens)


def test_a_call_log_replay_states_the_logged_cost(make_gateway, tmp_path):
    first = make_gateway(FunctionProvider(chatty, "fake"))
    exp = Experiment("logged", small_dataset(2), ["fake/m"])
    run_experiment(first, exp, progress=False)
    first.log.flush()
    replay = ReplayProvider.from_call_log(first.log, provider="fake", name="again")
    from aigw_lab.gateway import Gateway

    with Gateway([replay], log=str(tmp_path / "second.duckdb")) as second:
        again = Experiment("again", small_dataset(2), ["again/m"])
        estimate = estimate_cost(second, again)
        assert estimate.output_sources == {"recorded": 2}
        assert estimate.usd == pytest.approx(12.0)  # the logged costs: 6 tokens at $1 each
        assert run_experiment(second, again, progress=False).cost_usd == pytest.approx(12.0)


def test_every_source_has_words_for_describe():
    from aigw_lab.experiments.estimate import _SOURCE_WORDS

    assert set(_SOURCE_WORDS) == set(OUTPUT_SOURCES)


def test_a_policy_target_is_unpriced_and_estimated_without_the_log(make_gateway):
    gateway = make_gateway()
    exp = Experiment("policy", small_dataset(), ["router/cheapest"])
    estimate = estimate_cost(gateway, exp)
    assert estimate.unpriced_targets == ("router/cheapest",)
    assert estimate.output_sources == {"reference": 5}


def test_the_runner_records_the_same_estimate(make_gateway):
    gateway = make_gateway(FunctionProvider(chatty, "fake"))
    result = run_experiment(gateway, Experiment("rec", small_dataset(), ["fake/m"]), progress=False)
    assert result.estimate.output_sources == {"reference": 5}
    estimated = gateway.query("SELECT estimated_cost_usd FROM experiment_runs").iloc[0, 0]
    assert estimated == pytest.approx(5.0 * DOLLAR_PER_TOKEN.output_per_mtok / 1e6)


def test_an_estimate_over_budget_says_where_its_output_tokens_came_from(make_gateway):
    from aigw_lab.errors import BudgetExceededError

    gateway = make_gateway()
    exp = Experiment("over", small_dataset(references=False), ["fake/m"], budget_usd=10.0)
    with pytest.raises(BudgetExceededError) as caught:
        run_experiment(gateway, exp, progress=False)
    assert "output from: 5 at the default 256 tokens" in caught.value.hint
    assert "max_tokens" in caught.value.hint


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "256"])
def test_a_bad_default_output_is_a_config_error(make_gateway, bad):
    from aigw_lab.errors import ConfigError

    gateway = make_gateway()
    exp = Experiment("bad default", small_dataset(), ["fake/m"])
    with pytest.raises(ConfigError, match="output_tokens="):
        estimate_cost(gateway, exp, output_tokens=bad)
    with pytest.raises(ConfigError, match="output_tokens="):
        run_experiment(gateway, exp, progress=False, output_tokens=bad)
    assert gateway.query("SELECT count(*) AS n FROM calls").n[0] == 0


def test_without_a_ratio_the_models_mean_on_the_dataset_beats_a_reference(make_gateway):
    # References for some items only (as MT-Bench has them for math and coding): a trial on
    # three items without one gives no ratio, but shows how long this model's answers are.
    records = [item.to_dict() for item in small_dataset(5).items]
    for record in records[:4]:
        record["reference"] = None
    partial = Dataset.from_records("partial", records)
    gateway = make_gateway(FunctionProvider(chatty, "fake"))
    trial = partial.filter(ids=["q0", "q1", "q2"])
    run_experiment(gateway, Experiment("trial", trial, ["fake/m"]), progress=False)
    estimate = estimate_cost(gateway, Experiment("full", partial, ["fake/m"]))
    # q3 has no reference, q4 a one-token one: both get the model's six-token mean here.
    assert estimate.output_sources == {"log_item": 3, "log_dataset": 2}
    assert estimate.output_tokens == 5 * 6
    assert "2 at the model's mean logged answer on this dataset" in estimate.describe()


def test_answers_to_another_datasets_item_with_the_same_id_do_not_count(make_gateway):
    gateway = make_gateway(FunctionProvider(chatty, "fake"))
    other = small_dataset(5, name="other set")  # the same ids q0..q4, another dataset
    run_experiment(gateway, Experiment("other", other, ["fake/m"]), progress=False)
    estimate = estimate_cost(gateway, Experiment("mine", small_dataset(5), ["fake/m"]))
    # Not log_item nor a ratio from another dataset's items: the references themselves.
    assert estimate.output_sources == {"reference": 5}
    assert estimate_cost(
        gateway, Experiment("again", small_dataset(5, name="other set"), ["fake/m"])
    ).output_sources == {"log_item": 5}


def test_an_unpriced_target_is_named_by_the_estimate_and_warned_about_when_called(make_gateway):
    import warnings

    from aigw_lab.pricing import UnknownPriceWarning

    gateway = make_gateway(prices={})
    exp = Experiment("unpriced", small_dataset(), ["fake/m"], params={"max_tokens": 8})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimate = estimate_cost(gateway, exp)
    # The estimate says it in its own words; the warning ("calls are logged with cost
    # NULL") would describe calls that were never sent.
    assert estimate.unpriced_targets == ("fake/m",) and "no price known for fake/m" in (
        estimate.describe()
    )
    assert not [w for w in caught if issubclass(w.category, UnknownPriceWarning)]
    with pytest.warns(UnknownPriceWarning, match="no price known for fake/m"):
        assert gateway.chat("fake/m", "1 + 1").cost_usd is None
