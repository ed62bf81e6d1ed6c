"""The fleet's decisions: answers, determinism, quality, latency, faults."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter

import pytest

from aigw_lab.datasets import load_bundled
from aigw_lab.errors import ConfigError
from aigw_lab.sim.catalog import CATEGORIES, DEFAULT_MODELS, FAULT_KINDS
from aigw_lab.sim.fleet import SimCall, SimulatedFleet, simulated_price

from .helpers import make_fleet

MODEL_IDS = [m.id for m in DEFAULT_MODELS]


def ask(model: str, prompt: str, **kw: object) -> SimCall:
    return SimCall("openai", model, (("user", prompt),), **kw)  # type: ignore[arg-type]


def synthetic(category: str, difficulty: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"{category}-{difficulty}-{i}",
            "category": category,
            "difficulty": difficulty,
            "prompt": f"Synthetic {category} item {i} ({difficulty})",
            "reference": "right",
            "distractors": ["wrong"],
        }
        for i in range(n)
    ]


def outcomes(fleet: SimulatedFleet, items: list[dict], models: list[str]) -> dict:
    return {(m, it["id"]): fleet.plan(ask(m, it["prompt"])).text for m in models for it in items}


def test_dataset_prompts_get_reference_or_distractor_answers() -> None:
    fleet = make_fleet()
    items = load_bundled()
    seen = Counter()
    for item in items:
        plan = fleet.plan(ask("sim-large", "  " + item["prompt"].upper() + "\n"))
        assert plan.item_id == item["id"]
        seen[plan.correct] += 1
        if plan.correct:
            reference = item["reference"]
            assert (plan.text if isinstance(reference, str) else json.loads(plan.text)) == reference
        else:
            assert plan.text in item["distractors"]
    assert seen[True] > seen[False] > 0


def test_unknown_prompts_get_deterministic_filler_text() -> None:
    fleet = make_fleet()
    first = fleet.plan(ask("sim-small", "Explain how photosynthesis works"))
    again = fleet.plan(ask("sim-small", "Explain how photosynthesis works"))
    other = fleet.plan(ask("sim-sonnetish", "Explain how photosynthesis works"))
    assert first.item_id is None and first.correct is None
    assert first.text == again.text != other.text
    assert "photosynthesis" in first.text
    assert 20 <= first.output_tokens <= 900
    assert first.finish == "stop"


def test_same_seed_same_sequence_same_everything() -> None:
    prompts = [it["prompt"] for it in load_bundled()[:40]] + ["hello there", "what now?"]
    faults = {"fault_rate": 0.3}

    def run(seed: int) -> list[tuple]:
        fleet = make_fleet(seed=seed, faults=faults)
        return [
            (p.text, p.fault, p.ttft_s, p.tokens_per_s, p.retry_after_s, p.cut_after)
            for p in (fleet.plan(ask(m, q, temperature=0.7)) for q in prompts for m in MODEL_IDS)
        ]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_temperature_zero_correctness_does_not_depend_on_call_order() -> None:
    items = load_bundled()
    forward = outcomes(make_fleet(seed=3), items, MODEL_IDS)
    backward_fleet = make_fleet(seed=3)
    backward = {
        (m, it["id"]): backward_fleet.plan(ask(m, it["prompt"], temperature=0.0)).text
        for it in reversed(items)
        for m in reversed(MODEL_IDS)
    }
    assert forward == backward
    assert forward != outcomes(make_fleet(seed=4), items, MODEL_IDS)


def test_sampling_temperature_redraws_per_call() -> None:
    items = synthetic("arithmetic", "medium", 200)
    fleet = make_fleet(dataset=items)
    first = [fleet.plan(ask("sim-small", it["prompt"], temperature=1.0)).text for it in items]
    second = [fleet.plan(ask("sim-small", it["prompt"], temperature=1.0)).text for it in items]
    assert first != second
    rate = (first + second).count("right") / 400
    assert rate == pytest.approx(0.65, abs=0.07)


def documented_accuracy(medium: float, difficulty: str) -> float:
    """The docs' rule, restated here: easy/hard shift the medium accuracy by +-1.2 logits."""
    shift = {"easy": 1.2, "medium": 0.0, "hard": -1.2}[difficulty]
    return 1 / (1 + math.exp(-(math.log(medium / (1 - medium)) + shift)))


@pytest.mark.parametrize("model", DEFAULT_MODELS, ids=lambda m: m.id)
def test_accuracy_follows_the_profile_by_category_and_difficulty(model) -> None:
    # 600 items per cell: the standard error is about 0.02, the tolerance 0.06 (3 sigma);
    # ignoring category or difficulty would miss by more than that for these profiles.
    n = 600
    for category in CATEGORIES:
        for difficulty in ("easy", "medium", "hard"):
            items = synthetic(category, difficulty, n)
            fleet = make_fleet(seed=11, dataset=items)
            hits = sum(fleet.plan(ask(model.id, it["prompt"])).correct for it in items)
            expected = documented_accuracy(model.accuracy[category], difficulty)
            assert hits / n == pytest.approx(expected, abs=0.06), (category, difficulty)


def test_correctness_is_correlated_across_models_on_an_item() -> None:
    items = synthetic("factual_qa", "medium", 800)
    fleet = make_fleet(seed=5, dataset=items)
    a = [fleet.plan(ask("sim-small", it["prompt"])).correct for it in items]
    b = [fleet.plan(ask("sim-llamaish-70b", it["prompt"])).correct for it in items]
    both = sum(x and y for x, y in zip(a, b, strict=True)) / len(items)
    independent = (sum(a) / len(items)) * (sum(b) / len(items))
    assert both > independent + 0.03


def test_pro_beats_nano_on_the_bundled_dataset() -> None:
    items = load_bundled()
    fleet = make_fleet()
    score = {
        m: sum(fleet.plan(ask(m, it["prompt"])).correct for it in items) / len(items)
        for m in ("sim-nano", "sim-large")
    }
    assert score["sim-large"] > score["sim-nano"] + 0.2


def test_max_tokens_cuts_with_length_finish() -> None:
    fleet = make_fleet()
    plan = fleet.plan(ask("sim-small", "Describe the history of aviation", max_tokens=7))
    assert plan.output_tokens == 7 and plan.finish == "length"
    assert plan.text == "".join(plan.pieces)


def test_stop_sequence_cuts_at_its_first_occurrence() -> None:
    fleet = make_fleet()
    full = fleet.plan(ask("sim-small", "Describe the history of aviation")).text
    fleet = make_fleet()
    plan = fleet.plan(ask("sim-small", "Describe the history of aviation", stop=(".", "zzz")))
    assert plan.text == full[: full.index(".")]
    assert plan.finish == "stop_sequence" and plan.stop_sequence == "."


def test_input_tokens_count_every_message() -> None:
    fleet = make_fleet()
    one = fleet.plan(ask("sim-small", "Hello there"))
    two = fleet.plan(
        SimCall("openai", "sim-small", (("system", "Be brief."), ("user", "Hello there")))
    )
    assert one.input_tokens == 3 + (2 + 3)
    assert two.input_tokens == one.input_tokens + 3 + 3  # 'Be', ' brief', '.'


def test_context_window_overflow_is_a_deterministic_error() -> None:
    fleet = make_fleet()
    long_prompt = "word " * 9000
    assert fleet.plan(ask("sim-llamaish-8b", long_prompt)).fault == "context_length"
    assert fleet.plan(ask("sim-small", long_prompt)).fault is None
    assert fleet.plan(ask("sim-small", "hi", max_tokens=130_000)).fault == "context_length"


def test_fault_frequencies_match_the_rates() -> None:
    rates = {
        "rate_limited": 0.10,
        "server_error": 0.05,
        "unavailable": 0.05,
        "overloaded": 0.05,
        "timeout": 0.05,
        "truncated": 0.10,
        "malformed": 0.05,
    }
    fleet = make_fleet(faults=rates)
    n = 4000
    seen = Counter(fleet.plan(ask("sim-nano", f"q{i % 50}")).fault for i in range(n))
    for kind in FAULT_KINDS:
        assert seen[kind] / n == pytest.approx(rates[kind], abs=0.02), kind
    assert seen[None] / n == pytest.approx(0.55, abs=0.03)


def test_model_faults_override_the_fleet_rates() -> None:
    fleet = make_fleet(faults={"server_error": 1.0}, model_faults={"sim-llamaish-8b": {}})
    assert fleet.plan(ask("sim-nano", "x")).fault == "server_error"
    assert fleet.plan(ask("sim-llamaish-8b", "x")).fault is None


def test_latency_is_lognormal_with_a_heavy_tail() -> None:
    model = next(m for m in DEFAULT_MODELS if m.id == "sim-llamaish-8b")
    fleet = make_fleet(dataset=[])
    ttfts = sorted(fleet.plan(ask(model.id, "hi")).ttft_s for _ in range(4000))
    prefill = 9 / model.latency.prefill_tokens_per_s
    median = statistics.median(ttfts) - prefill
    assert median == pytest.approx(model.latency.ttft_median_s, rel=0.1)
    # Beyond what the lognormal alone gives, outliers fatten the far tail.
    far = model.latency.ttft_median_s * 4
    share_beyond = sum(t > far for t in ttfts) / len(ttfts)
    assert share_beyond == pytest.approx(model.latency.outlier_prob, abs=0.02)
    assert share_beyond > 0.02


def test_tokens_per_second_ranks_cheap_models_faster() -> None:
    fleet = make_fleet(dataset=[])
    speed = {
        m: statistics.median(fleet.plan(ask(m, "hi")).tokens_per_s for _ in range(300))
        for m in ("sim-nano", "sim-large")
    }
    assert speed["sim-nano"] > 2 * speed["sim-large"]


def test_prices_and_model_subsets() -> None:
    fleet = make_fleet(models=["sim-nano", "sim-llamaish-70b"])
    assert [m.id for m in fleet.models] == ["sim-nano", "sim-llamaish-70b"]
    assert fleet.price("sim-llamaish-70b") == simulated_price("sim-llamaish-70b")
    assert fleet.price("sim-large") is None and simulated_price("gpt-4o") is None
    with pytest.raises(ConfigError, match="not a model of the simulated fleet"):
        SimulatedFleet(models=["gpt-4o"])
    with pytest.raises(ConfigError, match="time_scale"):
        SimulatedFleet(time_scale=-1)
    with pytest.raises(ConfigError, match="model_faults names unknown"):
        SimulatedFleet(model_faults={"nope": {}})
