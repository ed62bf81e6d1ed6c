"""The recorded datasets of the shared folder reproduce the numbers their README publishes.

These are real checks of the parsing (decontamination, model columns, score scales): each
number is computed here from the files and compared with the README's stated value.
"""

from __future__ import annotations

import math

import pytest

from aigw_lab.datasets import (
    GSM8K_GPT3_VARIANTS,
    LIST_PRICES,
    load_alpaca_eval,
    load_arena_bench,
    load_gsm8k_gpt3,
    load_routellm,
)
from aigw_lab.errors import ConfigError

GPT4, MIXTRAL = "gpt-4-1106-preview", "Mixtral-8x7B-Instruct-v0.1"


def oracle_accuracy(rec) -> float:
    return float(rec.wide_scores().max(axis=1).mean())


def test_routellm_mmlu_matches_the_published_accuracies(routellm_mmlu) -> None:
    rec = routellm_mmlu
    assert len(rec) == 14_037 and rec.models == (GPT4, MIXTRAL)
    means = rec.mean_scores()
    assert round(means[GPT4] * 100, 2) == 80.59
    assert round(means[MIXTRAL] * 100, 2) == 68.09
    assert round(oracle_accuracy(rec) * 100, 2) == 85.87
    wide = rec.wide_scores()
    assert int(((wide[MIXTRAL] == 1) & (wide[GPT4] == 0)).sum()) == 742
    assert rec.outcomes["output"].isna().all()  # MMLU recorded no response text
    assert len(rec.dataset.categories) == 57  # one per subject


def test_routellm_mmlu_without_decontamination_has_every_question(shared_dir) -> None:
    assert len(load_routellm("mmlu", decontaminate=False, data_dir=shared_dir)) == 14_042


def test_routellm_gsm8k_matches_the_published_accuracies(routellm_gsm8k) -> None:
    rec = routellm_gsm8k
    assert len(rec) == 1_307
    means = rec.mean_scores()
    assert round(means[GPT4] * 100, 2) == 85.77
    assert round(means[MIXTRAL] * 100, 2) == 63.73
    assert round(oracle_accuracy(rec) * 100, 2) == 92.96
    assert rec.outcomes["output"].notna().all()
    assert all(item.reference for item in rec.items)  # joined from the GSM8K test set copy
    assert "gsm8k/0" not in rec.ids  # contaminated
    assert rec.dataset["gsm8k/3"].reference == "540"


def test_routellm_gsm8k_costs_are_estimated_tokens_times_list_price(routellm_gsm8k) -> None:
    outcome = routellm_gsm8k.outcome("gsm8k/3", GPT4)
    item = routellm_gsm8k.dataset["gsm8k/3"]
    assert outcome.input_tokens == math.ceil(len(item.prompt) / 4)
    assert outcome.output_tokens == math.ceil(len(outcome.output) / 4)
    price = LIST_PRICES[GPT4]
    expected = (
        outcome.input_tokens * price.input_per_mtok + outcome.output_tokens * price.output_per_mtok
    ) / 1e6
    assert outcome.cost_usd == pytest.approx(expected)


def test_routellm_mt_bench_matches_the_published_mean_grades(shared_dir) -> None:
    rec = load_routellm("mt_bench", data_dir=shared_dir)
    assert len(rec) == 72 and rec.score_scale == (1.0, 10.0)
    means = rec.mean_scores()
    assert round(means[GPT4], 2) == 9.21 and round(means[MIXTRAL], 2) == 8.28
    # The outputs are the turn-1 answers recovered from the judge's prompts.
    assert rec.outcomes["output"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
    assert (
        rec.outcome("mt_bench/131", MIXTRAL).output == " [5, 1, 3]"
    )  # verbatim, leading space included
    first_turn = load_routellm("mt_bench", mt_bench_score="turn1", data_dir=shared_dir)
    assert first_turn.mean_scores()[GPT4] > means[GPT4]  # turn 2 is graded lower
    assert rec.dataset.items[0].metadata["later_turns"]


def test_unknown_routellm_benchmark_is_a_config_error(shared_dir) -> None:
    with pytest.raises(ConfigError, match="mmlu, gsm8k, mt_bench"):
        load_routellm("humaneval", data_dir=shared_dir)


ARENA_MEANS = {
    "gpt-4-1106-preview": 8.87,
    "gpt-4-0314": 8.55,
    "gpt-3.5-turbo": 6.76,
    "gpt-3.5-turbo-1106": 6.68,
    "Mixtral-8x7B-Instruct-v0.1": 6.54,
    "claude-2.1": 6.44,
    "claude-1": 6.23,
    "claude-instant-1": 6.19,
    "Starling-LM-7B-alpha": 5.48,
    "openchat_3.5": 5.09,
    "vicuna-33b-v1.3": 4.40,
    "Llama-2-70b-chat": 4.35,
    "Mistral-7B-Instruct-v0.1": 3.57,
    "palm-2-chat-bison-001": 3.25,
    "llama-13b": 1.48,
}


def test_arena_bench_matches_the_published_mean_grades(shared_dir) -> None:
    rec = load_arena_bench(data_dir=shared_dir)
    assert len(rec) == 300 and set(rec.models) == set(ARENA_MEANS)
    means = rec.mean_scores()
    for model, published in ARENA_MEANS.items():
        # The README rounds to 2 decimals (claude-1: 6.2248 is listed as 6.23).
        assert means[model] == pytest.approx(published, abs=0.006), model
    # Unparseable judgements stay None (0-6 per model), never 0.
    missing = rec.outcomes.groupby("model")["score"].apply(lambda s: s.isna().sum())
    assert 0 < missing.sum() and missing.max() <= 6
    assert rec.outcomes["output"].notna().all()
    assert all(item.reference for item in rec.items)  # the GPT-4 reference answers


ALPACA_WIN_RATES = {
    "claude-2.1": 15.73,
    "claude-instant-1.2": 16.13,
    "gpt-3.5-turbo-1106": 9.18,
    "OpenHermes-2.5-Mistral-7B": 10.34,
    "Qwen-14B-Chat": 7.50,
    "gemma-7b-it": 6.94,
    "FuseChat-Llama-3.1-8B-Instruct": 63.33,
    "FuseChat-Llama-3.2-1B-Instruct": 29.92,
}


def test_alpaca_eval_matches_the_leaderboard_win_rates(shared_dir) -> None:
    rec = load_alpaca_eval(data_dir=shared_dir)
    assert len(rec) == 805 and len(rec.models) == 9 and rec.score_scale == (0.0, 1.0)
    means = rec.mean_scores()
    for model, published in ALPACA_WIN_RATES.items():
        assert round(means[model] * 100, 2) == published, model
    # The reference compared with itself (constant 1.5) is not a judgement: no score.
    reference = rec.outcomes[rec.outcomes["model"] == "gpt4_1106_preview"]
    assert len(reference) == 805 and reference["score"].isna().all()
    without = load_alpaca_eval(include_reference=False, data_dir=shared_dir)
    assert "gpt4_1106_preview" not in without.models and len(without.models) == 8


def test_gsm8k_gpt3_matches_the_published_accuracies(shared_dir) -> None:
    rec = load_gsm8k_gpt3(data_dir=shared_dir)
    assert len(rec) == 1_319 and rec.models == GSM8K_GPT3_VARIANTS
    means = (rec.mean_scores() * 100).round(2).to_dict()
    assert means == {
        "6b_finetuning": 21.68,
        "6b_verification": 39.04,
        "175b_finetuning": 34.72,
        "175b_verification": 56.25,
    }
    assert rec.dataset["gsm8k/0"].reference == "18"
    assert rec.outcomes["cost_usd"].isna().all()  # research models: no price


def test_the_same_gsm8k_question_has_the_same_id_in_both_recordings(
    shared_dir, routellm_gsm8k
) -> None:
    gpt3 = load_gsm8k_gpt3(data_dir=shared_dir)
    for item in routellm_gsm8k.items[:50]:
        assert gpt3.dataset[item.id].prompt == item.prompt


def test_a_wrong_data_dir_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="has no arena_bench_v1/"):
        load_arena_bench(data_dir=tmp_path)
