"""Cross-fitted evaluation beside baselines, on synthetic arrays where the truth is known:
a real signal is significant, a random one is not, category lookup finds a planted effect,
nothing is fitted on a test fold, and the seed spread is reported."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.comparison_table import BaselineComparison, format_baseline_table
from aigw_lab.policy.evaluate.crossfit import (
    compare_scorers,
    compare_with_baselines,
    crossfit,
    trivial_scorers,
)
from aigw_lab.policy.evaluate.metrics import apgr, oracle_curve, threshold_sweep
from aigw_lab.policy.evaluate.trivial import (
    Scorer,
    category_scorer,
    length_scorer,
    usable_categories,
)

N_BOOT = 200


def planted(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hardness, strong, weak): the weak model solves items of hardness < 0.5, the strong one
    those < 0.9, each with 10 % label noise; so the strong model gains on [0.5, 0.9)."""
    rng = np.random.default_rng(seed)
    hardness = rng.uniform(size=n)
    flip = rng.uniform(size=(2, n)) < 0.1
    strong = ((hardness < 0.9) ^ flip[0]).astype(float)
    weak = ((hardness < 0.5) ^ flip[1]).astype(float)
    return hardness, strong, weak


def ids(n: int) -> list[str]:
    return [f"item/{i}" for i in range(n)]


def fixed(name: str, values: np.ndarray, kind: str = "router") -> Scorer:
    """A scorer that needs no fitting: it reads a per-item feature."""
    return Scorer(name, kind, lambda train, gain, test: values[test])  # type: ignore[arg-type]


def compare(scorers: list[Scorer], strong, weak, router: str, **kwargs) -> BaselineComparison:
    fitted = crossfit(scorers, ids(len(strong)), strong - weak, **kwargs)
    return compare_scorers(fitted, strong, weak, router=router, n_boot=N_BOOT)


def test_a_router_with_a_real_signal_beats_random_significantly():
    hardness, strong, weak = planted()
    noisy = hardness + np.random.default_rng(1).normal(0, 0.1, len(hardness))
    # The strong model gains in the middle: the score is closeness to the gain band's middle.
    result = compare([fixed("signal", -np.abs(noisy - 0.7))], strong, weak, "signal")
    row = result.row("signal")
    assert result.significant
    assert row.gain_ci_low is not None and row.gain_ci_low > 0
    assert row.ci_low > result.row("random").ci_high
    assert "beats random routing" in result.verdict and "significant" in result.verdict
    assert result.seeds == 5 and result.folds == 5 and result.items == len(strong)


def test_a_random_router_is_not_significant():
    _, strong, weak = planted()
    coin = np.random.default_rng(99).uniform(size=len(strong))
    result = compare([fixed("coin", coin)], strong, weak, "coin")
    row = result.row("coin")
    assert not result.significant
    assert row.gain_ci_low is not None and row.gain_ci_low <= 0 <= row.gain_ci_high
    assert abs(row.value - 0.5) < 0.1
    assert "does not beat random routing significantly" in result.verdict


def test_category_lookup_recovers_a_planted_per_category_effect():
    rng = np.random.default_rng(2)
    n = 800
    category = rng.choice(list("ABCDE"), size=n)
    gain_rate = dict(zip("ABCDE", (0.0, 0.1, 0.3, 0.6, 0.9), strict=True))
    weak = (rng.uniform(size=n) < 0.5).astype(float)
    gains = rng.uniform(size=n) < np.array([gain_rate[c] for c in category])
    strong = np.where(gains, 1.0, weak)
    lookup = category_scorer(list(category))
    # Fitted on every item, the lookup's means are the planted rates (up to noise).
    everything = np.arange(n)
    means = lookup.fit_score(everything, strong - weak, everything)
    for letter, rate in gain_rate.items():
        assert abs(means[category == letter].mean() - rate * 0.5) < 0.08
    result = compare([lookup, fixed("coin", rng.uniform(size=n))], strong, weak, "coin")
    row = result.row("category lookup")
    assert row.kind == "trivial" and row.gain_ci_low > 0
    assert "best trivial baseline, category lookup" in result.verdict
    assert "significantly worse than" in result.verdict  # the coin against the lookup


def test_seed_spread_is_reported_apart_from_the_item_interval():
    hardness, strong, weak = planted(300)
    result = compare([length_scorer(1 + 100 * hardness)], strong, weak, "prompt length")
    row = result.row("prompt length")
    assert row.seed_min < row.seed_max  # the fold dealing moves an in-fold fitted baseline
    assert row.seed_min <= row.value <= row.seed_max
    oracle = result.row("oracle")
    assert (
        oracle.seed_min
        == oracle.seed_max
        == pytest.approx(apgr(oracle_curve(strong, weak), weak.mean(), strong.mean()))
    )
    zero = result.row("zero router")
    assert (zero.value, zero.ci_low, zero.ci_high) == (0.5, 0.5, 0.5)
    one_seed = compare(
        [length_scorer(1 + 100 * hardness)], strong, weak, "prompt length", seeds=[3]
    )
    assert one_seed.seeds == 1
    assert one_seed.row("prompt length").seed_min == one_seed.row("prompt length").seed_max


def test_prompt_length_finds_a_planted_length_effect_in_either_direction():
    hardness, strong, weak = planted()
    up = compare([length_scorer(10 + 500 * hardness)], strong, weak, "prompt length")
    down = compare([length_scorer(510 - 500 * hardness)], strong, weak, "prompt length")
    for result in (up, down):
        assert result.significant and result.row("prompt length").value > 0.6


def test_a_label_leaking_lookup_scores_like_the_oracle_in_sample_but_not_cross_fitted():
    # Each item its own "category": looked up on the items it was fitted on, it is the
    # per-item gain itself, a leak; cross-fitting never fits on a test item, so it is blind.
    _, strong, weak = planted()
    n = len(strong)
    leak = category_scorer([f"c{i}" for i in range(n)], prior=0.0)
    everything = np.arange(n)
    in_sample = leak.fit_score(everything, strong - weak, everything)
    leaked = apgr(threshold_sweep(in_sample, strong, weak), weak.mean(), strong.mean())
    oracle = apgr(oracle_curve(strong, weak), weak.mean(), strong.mean())
    assert leaked > 0.8 and leaked == pytest.approx(oracle, abs=0.01)
    result = compare([leak], strong, weak, "category lookup")
    assert not result.significant
    assert abs(result.row("category lookup").value - 0.5) < 0.05
    assert not usable_categories([f"c{i}" for i in range(n)])  # never offered as a baseline


def test_a_scorer_sees_only_its_training_items_gains():
    _, strong, weak = planted(100)
    seen: list[tuple[int, int]] = []

    def spy(train, gain, test):
        assert len(gain) == len(train) and not set(train) & set(test)
        assert len(train) + len(test) == 100
        seen.append((len(train), len(test)))
        return np.zeros(len(test))

    fitted = crossfit(
        [Scorer("spy", "router", spy)], ids(100), strong - weak, folds=4, seeds=[0, 1]
    )
    assert len(seen) == 8 and all(t == 25 for _, t in seen)
    assert not np.isnan(fitted.scores["spy"]).any()  # every item scored once per seed


def test_bad_scorers_and_arguments_are_config_errors():
    _, strong, weak = planted(50)
    wrong = Scorer("wrong", "router", lambda train, gain, test: np.zeros(3))
    with pytest.raises(ConfigError, match="returned"):
        crossfit([wrong], ids(50), strong - weak)
    with pytest.raises(ConfigError, match="repeat"):
        crossfit([fixed("a", strong), fixed("a", weak)], ids(50), strong - weak)
    fitted = crossfit([fixed("a", strong)], ids(50), strong - weak)
    with pytest.raises(ConfigError, match="no scorer named"):
        compare_scorers(fitted, strong, weak, router="b")


def test_compare_with_baselines_on_a_recorded_dataset_with_a_learned_router():
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.policy.learned.features import embed_prompts

    from ._learned_data import STRONG, WEAK, synthetic

    data = synthetic(30)
    X = embed_prompts([i.prompt for i in data.items], HashingEmbedder(256, ngram=3))
    result = compare_with_baselines(data, "knn", embeddings=X, params={"k": 5}, n_boot=N_BOOT)
    names = [r.name for r in result.rows]
    assert names[0] == "knn"
    assert {"prompt length", "category lookup", "random", "zero router", "oracle"} <= set(names)
    assert result.significant and result.router == "knn"
    # As good as the oracle on these two clusters (its ties cap both below 1).
    assert result.row("knn").value == pytest.approx(result.row("oracle").value, abs=0.02)
    text = format_baseline_table(result)
    assert "knn (router)" in text and "category lookup (trivial)" in text
    assert BaselineComparison.from_dict(result.to_dict()) == result
    # The strong/weak pair is inferred from the recorded means, or can be named.
    named = compare_with_baselines(
        data, "knn", embeddings=X, params={"k": 5}, n_boot=20, seeds=2, strong=STRONG, weak=WEAK
    )
    assert named.seeds == 2 and named.row("knn").value == pytest.approx(
        compare_with_baselines(data, "knn", embeddings=X, params={"k": 5}, n_boot=20, seeds=2)
        .row("knn")
        .value
    )
    with pytest.raises(ConfigError, match="folds=1"):
        compare_with_baselines(data, "knn", embeddings=X, folds=1)


def test_trivial_scorers_offer_a_category_only_when_the_data_has_one():
    from ._learned_data import synthetic

    scorers, notes = trivial_scorers(synthetic(10))
    assert [s.name for s in scorers] == ["prompt length", "category lookup"] and not notes
    assert not usable_categories(["gsm8k"] * 20)
    assert usable_categories(["a", "b"] * 10)


@pytest.mark.parametrize(("n", "ties"), [(40, True), (300, False), (900, True)])
def test_resampled_apgr_equals_the_sweep_on_the_resampled_items(n, ties):
    from aigw_lab.policy.evaluate.crossfit import _Sorted

    rng = np.random.default_rng(n)
    strong = (rng.uniform(size=n) < 0.8).astype(float)
    weak = (rng.uniform(size=n) < 0.6).astype(float)
    scores = np.round(rng.uniform(size=n) * 10) / 10 if ties else rng.uniform(size=n)
    fast = _Sorted(scores, strong, weak)
    for _ in range(30):
        idx = rng.integers(0, n, size=n)
        s, w = strong[idx], weak[idx]
        expected = apgr(threshold_sweep(scores[idx], s, w), w.mean(), s.mean())
        assert fast.resampled_apgr(idx, s.mean(), w.mean()) == pytest.approx(expected, abs=1e-12)


def test_held_out_gain_pairs_a_router_with_random_routing_on_the_same_items():
    from aigw_lab.policy.evaluate.crossfit import held_out_gain

    hardness, strong, weak = planted(400)
    signal = -np.abs(hardness - 0.7)
    randomly, gain = held_out_gain(signal, strong, weak, n_boot=N_BOOT)
    assert gain.low > 0 and abs(randomly.value - 0.5) < 0.06
    assert randomly.low <= randomly.value <= randomly.high
    routed = apgr(threshold_sweep(signal, strong, weak), weak.mean(), strong.mean())
    assert gain.value == pytest.approx(routed - randomly.value)
    coin = np.random.default_rng(5).uniform(size=400)
    _, no_gain = held_out_gain(coin, strong, weak, n_boot=N_BOOT)
    assert no_gain.low <= 0 <= no_gain.high


def test_a_side_feature_router_is_cross_fitted_from_plain_embeddings():
    # stacked reads each item's length, numbers and category beside its embedding: given plain
    # embeddings (as compare_with_baselines computes them), the scorer adds those columns.
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.policy.learned.features import embed_prompts

    from ._learned_data import synthetic

    data = synthetic(30)
    X = embed_prompts([i.prompt for i in data.items], HashingEmbedder(256, ngram=3))
    result = compare_with_baselines(data, "stacked", embeddings=X, n_boot=20, seeds=2)
    assert result.router == "stacked" and result.rows[0].name == "stacked"
    assert result.significant
