"""The bootstrap interval computed from the bootstrap distribution (saddlepoint) instead of
drawn: its quantiles agree with 40,000 drawn replicates' percentiles within their Monte
Carlo error, it is used only where it is accurate, and the public analyses' intervals agree
with the ones every earlier version drew (index draws, 1,000 replicates) within Monte Carlo
error on a seeded log of 2,400 items."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from aigw_lab.analysis import paired_comparison, target_summary
from aigw_lab.analysis import saddlepoint as sp
from aigw_lab.analysis.reference import reference_paired_comparison, reference_target_summary
from aigw_lab.analysis.stats import (
    bootstrap_interval,
    bootstrap_mean_ci,
    bootstrap_means,
    percentile_interval,
)
from aigw_lab.store.schema import apply_migrations
from tests.analysis.test_stats import _Recording


def _with_jump(values: np.ndarray, jump: float) -> np.ndarray:
    """``values`` with its first value moved so one pick of it shifts a resampled mean by
    ``jump`` of the resampled mean's sd."""
    out = values.copy()
    out[0] = 0.0
    for _ in range(8):  # the move changes the mean and sd it is measured against
        rest = out[1:]
        out[0] = rest.mean() + jump * math.sqrt(len(out)) * out.std()
    return out


def _samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "normal": rng.normal(0, 1, 2_000),
        "exponential": rng.exponential(1, 3_000),
        "bimodal": np.concatenate([rng.normal(-5, 1, 1_500), rng.normal(5, 1, 1_000)]),
        "latency differences": rng.uniform(100, 1_800, 4_000) - rng.uniform(200, 2_000, 4_000),
        "mostly zeros": np.concatenate([np.zeros(2_500), rng.exponential(1, 500)]),
        "one far value": _with_jump(rng.normal(0, 1, 4_000), 0.9 * sp.MAX_JUMP),
    }


@pytest.mark.slow  # 40,000 replicates of 2,000-4,000 values each: about 20 s in all, loaded
@pytest.mark.parametrize("name", list(_samples()))
def test_computed_quantiles_agree_with_many_drawn_replicates(name):
    values = _samples()[name]
    assert sp.usable(values)
    low, high = sp.mean_interval(values, 0.95)
    replicates = bootstrap_means(values, n_boot=40_000, rng=np.random.default_rng(1))
    drawn_low, drawn_high = np.percentile(replicates, [2.5, 97.5])
    # The drawn percentiles' own error at 40,000 replicates is about 0.013 of the resampled
    # means' sd; the computed ones must sit within 0.06 sd of them (a normal approximation
    # misses the skewed samples' bounds by 0.1-0.3 sd).
    sd = replicates.std()
    assert abs(low - drawn_low) <= 0.06 * sd, (low, drawn_low, sd)
    assert abs(high - drawn_high) <= 0.06 * sd, (high, drawn_high, sd)


def test_skewness_is_in_the_computed_interval():
    # An exponential sample's bootstrap distribution leans right: the interval is not
    # symmetric about the mean, as a normal approximation's would be.
    values = _samples()["exponential"]
    low, high = sp.mean_interval(values, 0.95)
    mean = values.mean()
    assert (high - mean) > 1.01 * (mean - low)  # 1.017 here; the normal one's is 1


def test_only_many_spread_out_finite_values_are_computed():
    rng = np.random.default_rng(4)
    assert sp.usable(rng.normal(size=sp.MIN_ITEMS))
    assert not sp.usable(rng.normal(size=sp.MIN_ITEMS - 1))
    assert not sp.usable(np.append(rng.normal(size=3_000), np.nan))
    assert not sp.usable(np.append(rng.normal(size=3_000), np.inf))
    # One value dominating the spread: how often it is picked (0, 1, 2... times) makes the
    # bootstrap distribution lumpy, which the smooth approximation would blur.
    base = rng.normal(size=4_000)
    assert sp.usable(_with_jump(base, 0.9 * sp.MAX_JUMP))
    assert not sp.usable(_with_jump(base, 1.1 * sp.MAX_JUMP))
    assert sp.mean_interval(np.full(3_000, 2.5), 0.9) == (2.5, 2.5)


def test_auto_computes_the_interval_of_a_large_continuous_sample_without_drawing():
    values = np.random.default_rng(5).lognormal(0, 0.5, 5_000)
    rng = _Recording(0)
    interval = bootstrap_interval(values, confidence=0.9, n_boot=1000, rng=rng, method="auto")
    assert rng.calls == []  # no random numbers: the same interval for every seed
    assert interval == sp.mean_interval(values, 0.9)
    ci = bootstrap_mean_ci(values, confidence=0.9, seed=1, method="auto")
    assert (ci.low, ci.high) == interval
    assert ci == bootstrap_mean_ci(values, confidence=0.9, seed=2, method="auto")


@pytest.mark.parametrize(
    ("values", "drawn"),
    [
        (np.random.default_rng(6).normal(size=500), "integers"),  # too few to compute
        (_with_jump(np.random.default_rng(6).normal(size=4_000), 2.0), "integers"),
        (np.repeat([0.0, 0.5, 1.0], 1_000), "multinomial"),  # few values: counted
    ],
)
def test_auto_draws_where_the_computed_interval_does_not_apply(values, drawn):
    rng = _Recording(7)
    low, high = bootstrap_interval(values, confidence=0.95, n_boot=200, rng=rng, method="auto")
    assert set(rng.calls) == {drawn}
    replicates = bootstrap_means(values, n_boot=200, rng=np.random.default_rng(7), method="auto")
    assert (low, high) == tuple(float(v) for v in percentile_interval(replicates, 0.95))


def test_indices_keep_drawing_every_earlier_versions_numbers():
    values = np.random.default_rng(8).normal(size=3_000)
    rng = _Recording(9)
    low, high = bootstrap_interval(values, confidence=0.95, n_boot=100, rng=rng)
    assert rng.calls == ["integers"]
    replicates = bootstrap_means(values, n_boot=100, rng=np.random.default_rng(9))
    assert (low, high) == tuple(float(v) for v in percentile_interval(replicates, 0.95))


def _continuous_experiment() -> duckdb.DuckDBPyConnection:
    """2 targets x 2,400 items x 2 repetitions, latencies and quality spread out (no two
    items alike), so both the latency differences and the quality means are computed."""
    conn = duckdb.connect(":memory:")
    apply_migrations(conn)
    conn.execute(
        """
        INSERT INTO calls (call_id, trace_id, "timestamp", provider_name, request_model, status,
                           latency_ms, cost_usd, attempt, experiment_id, target, item_id,
                           repetition, simulated)
        SELECT 'c' || i, 't' || i, TIMESTAMPTZ '2026-03-01 09:00:00+00' + to_milliseconds(i),
               'sim', 'm', 'ok',
               100 + (hash(i) % 100000) / 50.0 + 150 * (i % 2), 0.001 * (1 + i % 2), 1, 'exp',
               't' || (i % 2), 'item' || (i // 2 % 2400), i // 4800, false
        FROM range(9600) r(i)
        """
    )
    conn.execute(
        """
        INSERT INTO scores (score_id, call_id, scorer, value, created_at, experiment_id)
        SELECT 's' || i, 'c' || i, 'judge', (hash(i * 7) % 1000) / 1000.0 + 0.05 * (i % 2),
               TIMESTAMPTZ '2026-03-01 10:00:00+00', 'exp'
        FROM range(9600) r(i)
        """
    )
    return conn


def test_computed_intervals_agree_with_the_historical_draws_within_monte_carlo_error():
    conn = _continuous_experiment()
    summary = target_summary(conn, experiment_id="exp", n_boot=1000)
    # The rollups give the reference's frame when both compute the interval.
    pd.testing.assert_frame_equal(
        summary,
        reference_target_summary(conn, experiment_id="exp", n_boot=1000, bootstrap="auto"),
        check_dtype=False,
        rtol=1e-9,
    )
    historical = reference_target_summary(conn, experiment_id="exp", n_boot=1000)
    bounds = ["quality_ci_low", "quality_ci_high"]
    width = (historical["quality_ci_high"] - historical["quality_ci_low"]).to_numpy()
    moved = (summary[bounds] - historical[bounds]).abs().max(axis=1).to_numpy()
    # One drawn bound's Monte Carlo sd at 1,000 replicates is about 2.2% of the interval's
    # width; the computed bound has none. 12% of the width is over 5 of those sds.
    assert (moved > 0).all() and (moved <= 0.12 * width).all(), (moved, width)

    paired = paired_comparison(conn, "t1", "t0", experiment_id="exp", n_boot=1000)
    old = reference_paired_comparison(conn, "t1", "t0", experiment_id="exp", n_boot=1000)
    pd.testing.assert_frame_equal(
        paired.drop(columns=["ci_low", "ci_high"]), old.drop(columns=["ci_low", "ci_high"])
    )
    assert paired["n_items"].tolist() == [2400, 2400, 2400]
    computed = paired.set_index("metric").loc[["quality", "latency_ms"]]
    drawn = old.set_index("metric").loc[["quality", "latency_ms"]]
    width = (drawn["ci_high"] - drawn["ci_low"]).to_numpy()
    moved = (computed[["ci_low", "ci_high"]] - drawn[["ci_low", "ci_high"]]).abs().max(axis=1)
    assert (moved.to_numpy() > 0).all() and (moved.to_numpy() <= 0.12 * width).all()
    # Seeded runs repeat exactly.
    again = paired_comparison(conn, "t1", "t0", experiment_id="exp", n_boot=1000)
    pd.testing.assert_frame_equal(paired, again)
