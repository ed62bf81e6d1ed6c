"""Many-model routers by AIQ beside random routing (the zero router), the oracle and the
trivial baselines, cross-fitted over fold seeds, on a synthetic recording where the truth is
known: easy prompts any model answers, hard ones only the costly model does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.datasets.recorded import RecordedDataset
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.comparison_table import BaselineComparison, format_baseline_table
from aigw_lab.policy.evaluate.crossfit_many import compare_many_models
from aigw_lab.policy.learned.features import embed_prompts
from aigw_lab.providers.base import Price

MODELS = {"tiny": Price(0.1, 0.1), "mid": Price(1.0, 2.0), "big": Price(10.0, 30.0)}


def recording(n: int = 60, *, signal: bool = True, seed: int = 0) -> RecordedDataset:
    """``n`` easy and ``n`` hard prompts. With ``signal``, every model solves easy prompts
    and only "big" the hard ones; without, each label is a coin flip."""
    rng = np.random.default_rng(seed)
    items, rows = [], []
    for i in range(n):
        for kind, prompt in (
            ("easy", f"hello friend, what a lovely day for a walk number {i}"),
            ("hard", f"prove the spectral theorem for compact operators, case {i}"),
        ):
            item_id = f"{kind}/{i}"
            items.append(DatasetItem(id=item_id, prompt=prompt, category=kind))
            for model in MODELS:
                right = (kind == "easy" or model == "big") if signal else rng.uniform() < 0.5
                rows.append(
                    {"item_id": item_id, "model": model, "output": "x" * 80, "score": float(right)}
                )
    return RecordedDataset.from_outputs(
        Dataset("many", tuple(items), "tests"),
        pd.DataFrame(rows),
        score_name="correct",
        score_scale=(0.0, 1.0),
        source="tests",
        prices=MODELS,
        models=tuple(MODELS),
    )


def embedded(data: RecordedDataset) -> np.ndarray:
    return embed_prompts([i.prompt for i in data.items], HashingEmbedder(256, ngram=3))


def test_a_router_with_a_real_signal_beats_the_zero_router_and_the_oracle_bounds_it():
    data = recording()
    result = compare_many_models(
        data, "knn", embeddings=embedded(data), params={"k": 5}, seeds=3, n_boot=100
    )
    assert result.metric == "aiq" and result.seeds == 3 and result.items == 120
    names = [row.name for row in result.rows]
    assert names[0] == "knn" and {"prompt length", "category lookup", "random", "oracle"} <= set(
        names
    )
    knn, lookup = result.row("knn"), result.row("category lookup")
    assert result.significant and knn.gain_ci_low > 0
    assert lookup.gain_ci_low > 0  # the planted per-category effect, found in-fold
    assert result.row("oracle").value >= knn.value - 1e-9
    assert "beats random routing (the zero router" in result.verdict
    assert BaselineComparison.from_dict(result.to_dict()) == result
    assert "knn (router)" in format_baseline_table(result)


def test_a_router_on_coin_flip_labels_is_not_significant():
    data = recording(signal=False)
    result = compare_many_models(
        data, "knn", embeddings=embedded(data), params={"k": 5}, seeds=2, n_boot=100
    )
    assert not result.significant
    assert "does not beat random routing" in result.verdict


def test_bad_arguments_are_config_errors():
    data = recording(10)
    with pytest.raises(ConfigError, match="folds=1"):
        compare_many_models(data, embeddings=embedded(data), folds=1)
    with pytest.raises(ConfigError, match="1 priced, labelled models"):
        compare_many_models(data, embeddings=embedded(data), models=["tiny"])
