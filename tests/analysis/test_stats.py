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


class _Recording:
    """A generator that records which draws `bootstrap_means` asks it for."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        self.calls.append(name)
        return getattr(self._rng, name)


def test_auto_counts_picks_per_distinct_value_when_there_are_few():
    # 0/1 values: one multinomial draw over the 2 distinct values per replicate, no n
    # indices per replicate.
    values = np.array([1.0] * 700 + [0.0] * 300)
    rng = _Recording(0)
    replicates = bootstrap_means(values, n_boot=200, rng=rng, method="auto")
    assert rng.calls == ["multinomial"]
    assert replicates.shape == (200,)
    # Every replicate is a mean of 1,000 picks of 0/1: a multiple of 1/1000.
    np.testing.assert_allclose(replicates * 1000, np.round(replicates * 1000), atol=1e-9)


def test_auto_falls_back_to_the_historical_index_draws_for_many_distinct_values():
    values = np.random.default_rng(1).normal(size=300)
    rng = _Recording(4)
    auto = bootstrap_means(values, n_boot=50, rng=rng, method="auto")
    assert "multinomial" not in rng.calls and "integers" in rng.calls
    np.testing.assert_array_equal(
        auto, bootstrap_means(values, n_boot=50, rng=np.random.default_rng(4))
    )


def test_the_index_draws_do_not_depend_on_the_chunk_size(monkeypatch):
    # The default method gives every seed the numbers it gave before the chunks shrank.
    import aigw_lab.analysis.stats as stats

    values = np.random.default_rng(2).normal(size=500)
    small = bootstrap_means(values, n_boot=300, rng=np.random.default_rng(9))
    monkeypatch.setattr(stats, "_MAX_VALUES_PER_CHUNK", 8_000_000)
    large = bootstrap_means(values, n_boot=300, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(small, large)


def test_counted_and_indexed_resamples_have_the_same_distribution():
    # Few-level item means (a 0/1 scorer over 4 repetitions) and paired 2-column rows: the
    # two methods' replicates agree in distribution (two-sample KS at 20,000 replicates
    # each: the 1% critical distance is 0.0163) and in their percentile intervals.
    rng = np.random.default_rng(11)
    levels = rng.binomial(4, 0.6, size=500) / 4
    paired = np.column_stack([levels, rng.binomial(4, 0.4, size=500) / 4])
    for values in (levels, paired):
        counted = bootstrap_means(
            values, n_boot=20_000, rng=np.random.default_rng(1), method="auto"
        )
        indexed = bootstrap_means(values, n_boot=20_000, rng=np.random.default_rng(2))
        for column in range(values.ndim):
            a = np.sort(counted.reshape(20_000, -1)[:, column])
            b = np.sort(indexed.reshape(20_000, -1)[:, column])
            grid = np.union1d(a, b)
            ks = (
                np.max(
                    np.abs(
                        np.searchsorted(a, grid, side="right")
                        - np.searchsorted(b, grid, side="right")
                    )
                )
                / 20_000
            )
            assert ks < 0.0163
            np.testing.assert_allclose(
                np.percentile(a, [2.5, 97.5]), np.percentile(b, [2.5, 97.5]), atol=0.003
            )
    # Paired: one set of picks serves both columns, as with indices.
    twice = np.column_stack([levels, 2 * levels])
    counted = bootstrap_means(twice, n_boot=500, rng=np.random.default_rng(3), method="auto")
    np.testing.assert_allclose(counted[:, 1], 2 * counted[:, 0])


def test_counted_intervals_cover_a_known_proportion_as_often_as_promised():
    # 400 seeded experiments: 80 items, each the mean of a 0/1 scorer over 3 repetitions
    # with a known success rate; the 95% interval of the counted bootstrap covers it in
    # about 95% of them (binomial sd ~1.1%; the percentile method runs a little narrow).
    rng = np.random.default_rng(7)
    truth = 0.7
    covered = 0
    for _ in range(400):
        items = rng.binomial(3, truth, size=80) / 3
        ci = bootstrap_mean_ci(items, n_boot=1000, rng=rng, method="auto")
        covered += ci.low <= truth <= ci.high
    assert 0.92 <= covered / 400 <= 0.975


def test_an_unknown_method_says_which_exist():
    with pytest.raises(ValueError, match="indices, auto"):
        bootstrap_means(np.arange(3.0), n_boot=5, rng=np.random.default_rng(0), method="fast")


def test_auto_draws_indices_when_a_value_is_not_finite():
    # Counting would turn every replicate into NaN (0 x NaN); index draws keep the ones
    # that never picked the NaN row, as before.
    values = np.array([np.nan] + [0.0, 1.0] * 50)
    rng = _Recording(5)
    auto = bootstrap_means(values, n_boot=200, rng=rng, method="auto")
    assert rng.calls == ["integers"]
    np.testing.assert_array_equal(
        auto, bootstrap_means(values, n_boot=200, rng=np.random.default_rng(5))
    )
    assert np.isfinite(auto).any()
