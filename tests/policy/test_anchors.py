"""The published anchors on RouteLLM's released GPT-4 vs Mixtral labels (decontaminated),
from the labels alone: random routing APGR about 0.5, the oracle's APGR 1.29 (MMLU) and
1.13 (GSM8K), the README's oracle accuracies. Skipped without the shared data folder."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.datasets.shared import shared_data_dir_or_none

pytestmark = pytest.mark.skipif(
    shared_data_dir_or_none() is None, reason="the shared data folder is absent"
)


@pytest.fixture(scope="module")
def anchors():
    from aigw_lab.policy.evaluate.report import anchor

    return {b: anchor(b, n_boot=300, seeds=30) for b in ("mmlu", "gsm8k")}


@pytest.mark.parametrize(
    ("bench_name", "items", "oracle_accuracy", "oracle_apgr"),
    [("mmlu", 14037, 0.8587, 1.29), ("gsm8k", 1307, 0.9296, 1.13)],
)
def test_oracle_reproduces_the_published_apgr(
    anchors, bench_name, items, oracle_accuracy, oracle_apgr
):
    result = anchors[bench_name]
    assert result.n == items
    assert round(result.oracle, 4) == oracle_accuracy
    assert round(result.oracle_apgr, 2) == oracle_apgr


@pytest.mark.parametrize("bench_name", ["mmlu", "gsm8k"])
def test_random_router_apgr_is_one_half_within_its_interval(anchors, bench_name):
    result = anchors[bench_name]
    assert result.random_apgr.low <= 0.5 <= result.random_apgr.high
    assert abs(result.random_apgr_mean - 0.5) < 0.02


def test_readme_accuracies_after_decontamination(anchors):
    assert round(anchors["mmlu"].strong, 4) == 0.8059 and round(anchors["mmlu"].weak, 4) == 0.6809
    assert round(anchors["gsm8k"].strong, 4) == 0.8577 and round(anchors["gsm8k"].weak, 4) == 0.6373


def test_a_learned_router_on_a_gsm8k_sample_is_scored_out_of_fold():
    """A small, fast end-to-end run on real prompts (HashingEmbedder, 300 items): every
    item is scored by a router that never saw it, and the metrics are finite."""
    from aigw_lab.datasets.recorded_sources import load_routellm
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.policy.evaluate.offline import evaluate_two_model, out_of_fold, recorded_arrays

    data = load_routellm("gsm8k")
    data = data.subset(data.ids[:300])
    strong, weak = "gpt-4-1106-preview", "Mixtral-8x7B-Instruct-v0.1"
    X = HashingEmbedder(256).embed([item.prompt for item in data.items])
    oof = out_of_fold(data, "classifier", X, folds=3, strong=strong, weak=weak)
    quality, _ = recorded_arrays(data, [strong, weak])
    result = evaluate_two_model(oof.strong_score, quality[:, 0], quality[:, 1], n_boot=100)
    assert np.isfinite(result.apgr.value) and result.apgr.low <= result.apgr.value
    assert sorted(np.bincount(oof.fold).tolist()) == [100, 100, 100]
