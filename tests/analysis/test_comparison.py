"""target_summary and paired_comparison against independent calculations: the synthetic
generator's ground truth, and small hand-built logs with known answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from aigw_lab.analysis import (
    SUMMARY_COLUMNS,
    SyntheticTarget,
    paired_comparison,
    synthetic_experiment_log,
    target_summary,
    unit_frame,
)
from aigw_lab.store import CallLog

from .conftest import row, score


def _truth(experiment) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(unit) for unit in experiment.units])


def test_summary_matches_the_ground_truth_of_a_synthetic_experiment(synthetic):
    log, experiment = synthetic
    summary = target_summary(log, experiment_id=experiment.experiment_id)
    truth = _truth(experiment)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert summary["target"].tolist() == sorted(t.name for t in experiment.targets)
    assert summary.attrs["scorer"] == "exact_match"
    for target, units in truth.groupby("target"):
        got = summary.set_index("target").loc[target]
        ok = units[units["status"] == "ok"]
        assert got["units"] == len(units)
        assert got["errors"] == (units["status"] == "error").sum()
        assert got["error_rate"] == pytest.approx((units["status"] == "error").mean())
        assert got["fallback_rate"] == pytest.approx(units["fell_back"].mean())
        assert got["cache_hit_rate"] == pytest.approx(units["cache_hit"].mean())
        for q in (50, 95, 99):
            assert got[f"latency_p{q}_ms"] == pytest.approx(
                np.percentile(ok["latency_ms"], q), abs=0.01
            )
        assert got["total_cost"] == pytest.approx(units["spent_usd"].sum())
        assert got["cost_per_call"] == pytest.approx(units["spent_usd"].sum() / len(units))
        scored = units["quality"].dropna()
        assert got["scored"] == len(scored)
        assert got["quality_mean"] == pytest.approx(scored.mean())
        assert got["cost_per_correct"] == pytest.approx(units["spent_usd"].sum() / scored.sum())
        item_means = units.dropna(subset=["quality"]).groupby("item_id")["quality"].mean()
        assert got["items"] == len(item_means)
        assert got["quality_ci_low"] <= item_means.mean() <= got["quality_ci_high"]
        assert got["quality_ci_low"] < got["quality_ci_high"]
        assert bool(got["simulated"])


def test_the_generator_made_the_hard_cases_the_summary_must_handle(synthetic):
    log, experiment = synthetic
    units = unit_frame(log, experiment.experiment_id)
    # Resumed units (a failed trace, then an ok one) resolve to the ok trace.
    resumed = units[units["traces"] == 2]
    assert len(resumed) > 0 and (resumed["status"] == "ok").all()
    assert (resumed["spent_usd"] >= resumed["cost_usd"]).all()
    assert units["fell_back"].any() and (units["attempts"] > 1).any()
    assert (units["status"] == "error").any() and (units["cache_status"] == "hit").any()


def test_summary_is_seeded(synthetic):
    log, experiment = synthetic
    a = target_summary(log, seed=1)
    # Equal up to float summation order (DuckDB adds costs in whatever order threads finish).
    pd.testing.assert_frame_equal(a, target_summary(log, seed=1))
    assert not a["quality_ci_low"].equals(target_summary(log, seed=2)["quality_ci_low"])


def test_a_path_a_connection_and_a_calllog_give_the_same_summary(synthetic, tmp_path):
    log, experiment = synthetic
    from_log = target_summary(log)
    log.close()
    from_path = target_summary(tmp_path / "calls.duckdb")
    conn = CallLog.snapshot(tmp_path / "calls.duckdb")
    try:
        from_conn = target_summary(conn)
    finally:
        conn.close()
    pd.testing.assert_frame_equal(from_log, from_path)
    pd.testing.assert_frame_equal(from_log, from_conn)


def test_unit_semantics_on_a_hand_built_log(log):
    log.append_many(
        [
            # u1: retried (backoff 50 ms): logical latency = 100 + 50 + 200; TTFT of attempt 2.
            row(
                "c1",
                "t1",
                at_ms=0,
                status="error",
                error_type="rate_limited",
                ttft_ms=5.0,
                item_id="i1",
                target="A",
                repetition=0,
                attempt=1,
            ),
            row(
                "c2",
                "t1",
                at_ms=150,
                latency_ms=200.0,
                ttft_ms=None,
                item_id="i1",
                target="A",
                repetition=0,
                attempt=2,
                fallback_from="sim-hand/other",
            ),
            # u2: an ok trace, then a later failed one: the ok trace is the result.
            row("c3", "t2", at_ms=1000, latency_ms=300.0, item_id="i2", target="A", repetition=0),
            row(
                "c4",
                "t3",
                at_ms=5000,
                status="error",
                error_type="timeout",
                item_id="i2",
                target="A",
                repetition=0,
            ),
            # u3: two failed traces: the latest is the result.
            row(
                "c5",
                "t4",
                at_ms=0,
                status="error",
                error_type="overloaded",
                item_id="i3",
                target="A",
                repetition=0,
            ),
            row(
                "c6",
                "t5",
                at_ms=9000,
                status="error",
                error_type="timeout",
                item_id="i3",
                target="A",
                repetition=0,
            ),
        ]
    )
    log.insert(
        "scores",
        [
            score("c2", 0.0, at_s=1),
            score("c2", 1.0, at_s=2),
            score("c3", 0.5, at_s=1),
            score("c3", None, at_s=3),
        ],
    )
    units = unit_frame(log, "exp", scorer="exact").set_index("item_id")
    u1, u2, u3 = units.loc["i1"], units.loc["i2"], units.loc["i3"]
    assert u1["latency_ms"] == pytest.approx(350.0)
    assert math.isnan(u1["ttft_ms"])  # the outcome row's TTFT, even when NULL
    assert (u1["call_id"], u1["attempts"], bool(u1["fell_back"])) == ("c2", 2, True)
    assert u1["quality"] == 1.0  # the latest score wins
    assert (u2["call_id"], u2["status"], u2["traces"]) == ("c3", "ok", 2)
    assert u2["spent_usd"] == pytest.approx(0.02) and u2["cost_usd"] == pytest.approx(0.01)
    assert math.isnan(u2["quality"])  # its latest score is NULL: left out, not the older 0.5
    assert (u3["call_id"], u3["status"], u3["error_type"]) == ("c6", "error", "timeout")

    summary = target_summary(log, experiment_id="exp", scorer="exact").iloc[0]
    assert (summary["units"], summary["errors"], summary["scored"]) == (3, 1, 1)
    assert summary["quality_mean"] == 1.0
    assert summary["total_cost"] == pytest.approx(0.06)
    assert summary["latency_p50_ms"] == pytest.approx(325.0)  # ok units: 350 and 300


def test_default_scorer_and_non_binary_scores(log):
    log.append_many([row(f"c{i}", f"t{i}", item_id=f"i{i}", target="A") for i in range(4)])
    log.insert("scores", [score(f"c{i}", 0.25 * i, scorer="rubric") for i in range(4)])
    log.insert("scores", [score("c0", 1.0, scorer="rare")])
    summary = target_summary(log)
    assert summary.attrs["scorer"] == "rubric"
    assert summary["quality_mean"].iloc[0] == pytest.approx(0.375)
    assert math.isnan(summary["cost_per_correct"].iloc[0])  # 0.25 is not a 0/1 score
    assert target_summary(log, scorer="rare")["scored"].iloc[0] == 1


def test_calls_outside_an_experiment_are_one_unit_per_trace(log):
    log.append_many(
        [
            row("c1", "t1", experiment_id=None, provider_name="p", request_model="x"),
            row(
                "c2",
                "t2",
                experiment_id=None,
                provider_name="p",
                request_model="x",
                status="error",
                error_type="timeout",
            ),
            row("c3", "t3", experiment_id=None, provider_name="q", request_model="y"),
        ]
    )
    summary = target_summary(log)
    assert summary[["target", "units", "errors"]].values.tolist() == [["p/x", 2, 1], ["q/y", 1, 0]]
    assert summary["quality_mean"].isna().all() and summary.attrs["scorer"] is None


def test_experiment_filter_and_mixed_simulated_targets(log):
    targets = (
        SyntheticTarget("sim/a", 0.5, 100, 0.001),
        SyntheticTarget("real/b", 0.9, 300, 0.01, simulated=False),
    )
    synthetic_experiment_log(log, n_items=10, targets=targets, experiment_id="e1")
    synthetic_experiment_log(log, n_items=5, experiment_id="e2", seed=1)
    one = target_summary(log, experiment_id="e1")
    assert one["target"].tolist() == ["real/b", "sim/a"]
    assert one["simulated"].tolist() == [False, True]
    assert one["units"].tolist() == [10, 10]
    assert target_summary(log, experiment_id="missing").empty


def _paired_log(log):
    rows, scores = [], []
    for i in range(10):
        for target, correct in (("A", 1.0), ("B", 1.0 if i < 4 else 0.0)):
            call = f"{target}{i}"
            latency = 100.0 if target == "A" else 150.0 + i
            rows.append(
                row(
                    call,
                    f"t-{call}",
                    item_id=f"i{i}",
                    target=target,
                    latency_ms=latency,
                    cost_usd=0.02 if target == "A" else 0.01,
                )
            )
            scores.append(score(call, correct))
    log.append_many(rows)
    log.insert("scores", scores)


def test_paired_comparison_known_answer(log):
    _paired_log(log)
    frame = paired_comparison(log, "A", "B", experiment_id="exp").set_index("metric")
    quality = frame.loc["quality"]
    assert (quality["n_items"], quality["mean_a"], quality["mean_b"]) == (10, 1.0, 0.4)
    assert quality["diff"] == pytest.approx(0.6)
    assert quality["ci_low"] <= 0.6 <= quality["ci_high"] and quality["ci_low"] > 0.2
    assert (quality["wins"], quality["ties"], quality["losses"]) == (6, 4, 0)
    latency = frame.loc["latency_ms"]
    assert latency["diff"] == pytest.approx(100.0 - 154.5)
    assert (latency["wins"], latency["losses"]) == (10, 0)  # lower latency is better
    cost = frame.loc["cost_usd"]
    assert cost["diff"] == pytest.approx(0.01) and cost["losses"] == 10
    assert frame["target_a"].unique().tolist() == ["A"]


def test_paired_comparison_pairs_only_shared_items_and_rejects_unknown_targets(log):
    _paired_log(log)
    log.append_many([row("A99", "t-A99", item_id="only-a", target="A")])
    log.insert("scores", [score("A99", 1.0)])
    frame = paired_comparison(log, "A", "B").set_index("metric")
    assert frame.loc["quality", "n_items"] == 10
    with pytest.raises(ValueError, match="'C'"):
        paired_comparison(log, "A", "C")
