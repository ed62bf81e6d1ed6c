import dataclasses

import numpy as np
import pandas as pd
import pytest

from aigw_lab.analysis import (
    cost_over_time,
    errors_by_target,
    experiments_frame,
    latency_frame,
    latest_experiment,
    synthetic_experiment_log,
    unit_frame,
)
from aigw_lab.errors import StoreError

from .conftest import row


def test_unit_frame_has_one_row_per_unit_and_samples_deterministically(synthetic):
    log, experiment = synthetic
    units = unit_frame(log, experiment.experiment_id)
    assert len(units) == len(experiment.units) == 40 * 2 * 3
    assert not units.duplicated(["target", "item_id", "repetition"]).any()
    sample = unit_frame(log, experiment.experiment_id, max_per_target=7)
    assert sample.groupby("target").size().tolist() == [7, 7, 7]
    # Whole units, exactly as in the full frame, and the same ones every time.
    key = ["target", "item_id", "repetition"]
    same = sample.merge(units, on=list(units.columns), how="inner")
    assert len(same) == len(sample) and not sample.duplicated(key).any()
    pd.testing.assert_frame_equal(
        sample, unit_frame(log, experiment.experiment_id, max_per_target=7)
    )
    everything = unit_frame(log, experiment.experiment_id, max_per_target=10_000)
    pd.testing.assert_frame_equal(everything, units)


def test_latency_frame_is_over_ok_units(synthetic):
    log, experiment = synthetic
    truth = pd.DataFrame([dataclasses.asdict(u) for u in experiment.units])
    frame = latency_frame(log, experiment_id=experiment.experiment_id).set_index("target")
    for target, units in truth[truth["status"] == "ok"].groupby("target"):
        got = frame.loc[target]
        assert got["ok_units"] == len(units)
        assert got["latency_p90_ms"] == pytest.approx(np.percentile(units["latency_ms"], 90))
        assert got["latency_max_ms"] == pytest.approx(units["latency_ms"].max())


def test_errors_by_target_counts_attempts_and_units(log):
    log.append_many(
        [
            row(
                "c1",
                "t1",
                status="error",
                error_type="rate_limited",
                item_id="i1",
                target="A",
                attempt=1,
            ),
            row("c2", "t1", at_ms=200, item_id="i1", target="A", attempt=2),
            row("c3", "t2", status="error", error_type="timeout", item_id="i2", target="A"),
            row("c4", "t3", item_id="i1", target="B"),
        ]
    )
    frame = errors_by_target(log, experiment_id="exp")
    assert frame.values.tolist() == [
        ["A", "rate_limited", 1, 0, 0.0],
        ["A", "timeout", 1, 1, 0.5],
    ]


def test_cost_over_time_buckets_sum_to_the_total(synthetic):
    log, experiment = synthetic
    hourly = cost_over_time(log, experiment_id=experiment.experiment_id)
    total = log.query("SELECT sum(cost_usd) AS c FROM calls")["c"].iloc[0]
    assert hourly["cost_usd"].sum() == pytest.approx(total)
    assert hourly.attrs == {"freq": "hour", "by": "target", "experiment_id": "syn-exp"}
    assert (hourly["bucket"].dt.minute == 0).all()
    last = hourly.sort_values("bucket").groupby("target").tail(1)
    per_target = hourly.groupby("target")["cost_usd"].sum()
    for r in last.itertuples():
        assert r.cumulative_cost_usd == pytest.approx(per_target[r.target])
    daily = cost_over_time(log, freq="day", by="provider_name")
    assert daily["provider_name"].tolist() == ["sim-synthetic"] * len(daily)
    assert daily["cost_usd"].sum() == pytest.approx(total)
    with pytest.raises(StoreError, match="cannot group by"):
        cost_over_time(log, by="nonsense; DROP TABLE calls")
    with pytest.raises(ValueError, match="freq"):
        cost_over_time(log, freq="week")  # type: ignore[arg-type]
    # Finer buckets for short experiments: as many or more points, the same total.
    by_minute = cost_over_time(log, freq="minute", experiment_id=experiment.experiment_id)
    assert (by_minute["bucket"].dt.second == 0).all() and len(by_minute) >= len(hourly)
    assert by_minute["cost_usd"].sum() == pytest.approx(total)


def test_experiments_frame_lists_defined_and_logged_experiments(log):
    synthetic_experiment_log(log, n_items=3, experiment_id="first", resume_rate=0.0)
    later = pd.Timestamp("2026-03-01", tz="UTC").to_pydatetime()
    synthetic_experiment_log(log, n_items=3, experiment_id="second", start=later)
    log.append_many([row("x1", "tx", experiment_id="undeclared", target="A", item_id="i")])
    frame = experiments_frame(log)
    assert set(frame["experiment_id"]) == {"first", "second", "undeclared"}
    second = frame.set_index("experiment_id").loc["second"]
    logged = log.query("SELECT count(*) AS n FROM calls WHERE experiment_id = 'second'")
    assert (second["name"], second["calls"], second["targets"]) == (
        "synthetic second",
        logged["n"].iloc[0],
        3,
    )
    assert frame.set_index("experiment_id").loc["first", "runs"] == 1
    assert pd.isna(frame.set_index("experiment_id").loc["undeclared", "name"])
    assert latest_experiment(log) == "second"
