"""The default (stacked) router on the real GSM8K recordings (GPT-4 vs Mixtral), cross-fitted
on one fold seed: it beats random routing by more than its item interval's half-width.
Hashing embeddings keep it offline and quick; bench/router_study.py has the MiniLM study."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.datasets.shared import shared_data_dir_or_none
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.policy.evaluate.metrics import apgr, bootstrap_metric, threshold_sweep
from aigw_lab.policy.evaluate.offline import out_of_fold
from aigw_lab.policy.learned import DEFAULT_ROUTER, inputs_for

# Slow lane: stacked's nested fitting over 1,307 items takes minutes of CPU on a busy box.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shared_data_dir_or_none() is None, reason="the shared data folder is absent"
    ),
]
STRONG, WEAK = "gpt-4-1106-preview", "Mixtral-8x7B-Instruct-v0.1"


def test_stacked_beats_random_out_of_fold_on_gsm8k():
    from aigw_lab.datasets.recorded_sources import load_routellm

    data = load_routellm("gsm8k")
    X = HashingEmbedder(256).embed([item.prompt for item in data.items])
    oof = out_of_fold(
        data,
        DEFAULT_ROUTER,
        inputs_for(DEFAULT_ROUTER, data, X),
        folds=5,
        seed=0,
        models=[STRONG, WEAK],
        strong=STRONG,
        weak=WEAK,
    )
    wide = data.wide_scores()
    s, w = wide[STRONG].to_numpy(float), wide[WEAK].to_numpy(float)

    def metric(idx: np.ndarray) -> float:
        return apgr(
            threshold_sweep(oof.strong_score[idx], s[idx], w[idx]), w[idx].mean(), s[idx].mean()
        )

    result = bootstrap_metric(metric, len(s), n_boot=100, seed=0)
    assert result.low > 0.5, result  # random routing's APGR is 0.5
