import numpy as np
import pytest

from aigw_lab.analysis.stats import bootstrap_mean_ci, bootstrap_means


def test_interval_covers_the_true_mean_about_as_often_as_promised():
    # 400 seeded experiments of 60 draws from a known distribution; the 95% percentile
    # bootstrap interval should cover the true mean in about 95% of them (binomial sd ~1.1%;
    # the percentile method runs slightly narrow at small n, hence the lower bound of 0.90).
    rng = np.random.default_rng(2024)
    true_mean = 3.0
    covered = 0
    trials = 400
    for _ in range(trials):
        sample = rng.exponential(true_mean, size=60)
        ci = bootstrap_mean_ci(sample, n_boot=500, rng=rng)
        covered += ci.low <= true_mean <= ci.high
    assert 0.90 <= covered / trials <= 0.985


def test_interval_shrinks_like_one_over_root_n():
    rng = np.random.default_rng(5)
    small = bootstrap_mean_ci(rng.normal(0, 1, 25), rng=rng)
    large = bootstrap_mean_ci(rng.normal(0, 1, 400), rng=rng)
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 2.5 < ratio < 6.5  # sqrt(400 / 25) = 4


def test_bernoulli_interval_matches_the_normal_approximation():
    values = np.array([1.0] * 70 + [0.0] * 30)
    ci = bootstrap_mean_ci(values, n_boot=4000, seed=1)
    half_width = 1.96 * np.sqrt(0.7 * 0.3 / 100)
    assert ci.mean == pytest.approx(0.7)
    assert ci.low == pytest.approx(0.7 - half_width, abs=0.02)
    assert ci.high == pytest.approx(0.7 + half_width, abs=0.02)


def test_seeded_and_repeatable():
    values = np.arange(30, dtype=float)
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)
    assert bootstrap_mean_ci(values, seed=3) != bootstrap_mean_ci(values, seed=4)


def test_nan_values_are_left_out_and_degenerate_samples():
    assert bootstrap_mean_ci(np.array([np.nan, 2.0, 4.0, np.nan]), seed=0).n == 2
    one = bootstrap_mean_ci(np.array([5.0]))
    assert (one.mean, one.low, one.high, one.n) == (5.0, 5.0, 5.0, 1)
    empty = bootstrap_mean_ci(np.array([]))
    assert empty.n == 0 and np.isnan(empty.mean) and np.isnan(empty.low)
    with pytest.raises(ValueError):
        bootstrap_mean_ci(np.array([1.0, 2.0]), confidence=1.5)


def test_columns_share_resampled_rows_and_chunking_does_not_change_shape(monkeypatch):
    import aigw_lab.analysis.stats as stats

    values = np.column_stack([np.arange(10.0), np.arange(10.0) * 2])
    monkeypatch.setattr(stats, "_MAX_VALUES_PER_CHUNK", 25)  # forces chunks of one replicate
    replicates = bootstrap_means(values, n_boot=37, rng=np.random.default_rng(0))
    assert replicates.shape == (37, 2)
    # Same rows for both columns: the second column's mean is exactly twice the first's.
    np.testing.assert_allclose(replicates[:, 1], 2 * replicates[:, 0])
