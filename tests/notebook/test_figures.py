"""The figures' data (traces, values, error bars) against the frames they draw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from aigw_lab.analysis import (
    SyntheticTarget,
    cost_over_time,
    errors_by_target,
    pareto_frontier,
    synthetic_experiment_log,
    target_summary,
    unit_frame,
)
from aigw_lab.notebook import figures
from aigw_lab.store import CallLog

TARGETS = (
    SyntheticTarget("syn/cheap", 0.5, 200, 0.0002, ttft_ms=50),
    SyntheticTarget("syn/mid", 0.45, 600, 0.001, ttft_ms=100),  # dominated by syn/cheap
    SyntheticTarget("real/strong", 0.95, 1200, 0.004, ttft_ms=300, simulated=False),
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    with CallLog(tmp_path_factory.mktemp("fig") / "calls.duckdb") as log:
        synthetic_experiment_log(log, n_items=60, targets=TARGETS, seed=11)
        yield {
            "summary": target_summary(log),
            "units": unit_frame(log),
            "errors": errors_by_target(log),
            "cost": cost_over_time(log),
        }


def test_target_colors_are_stable_and_distinct():
    colors = figures.target_colors(["b", "a", "c", "a"])
    assert list(colors) == ["a", "b", "c"] and len(set(colors.values())) == 3
    assert figures.target_colors(["c", "a", "b"]) == colors


def test_quality_vs_cost_points_error_bars_and_frontier(frames):
    summary = frames["summary"]
    fig = figures.quality_vs_cost(summary)
    assert isinstance(fig, go.Figure)
    points = {t.meta["target"]: t for t in fig.data if t.mode == "markers"}
    assert set(points) == set(summary["target"])
    for row in summary.itertuples():
        trace = points[row.target]
        assert trace.x == (pytest.approx(row.cost_per_call),)
        assert trace.y == (pytest.approx(row.quality_mean),)
        assert trace.error_y.array[0] == pytest.approx(row.quality_ci_high - row.quality_mean)
        assert trace.error_y.arrayminus[0] == pytest.approx(row.quality_mean - row.quality_ci_low)
        assert trace.marker.symbol == ("diamond-open" if row.simulated else "circle")
        assert ("simulated" in trace.name) == row.simulated
    (line,) = [t for t in fig.data if t.mode == "lines"]
    front = pareto_frontier(summary)
    assert list(line.x) == pytest.approx(front["cost_per_call"].tolist())
    assert "syn/mid" not in set(front["target"])
    assert "USD" in fig.layout.xaxis.title.text and "exact_match" in fig.layout.yaxis.title.text
    assert not [
        t for t in figures.quality_vs_cost(summary, frontier=False).data if t.mode == "lines"
    ]


def test_same_target_same_colour_across_figures(frames):
    colors = figures.target_colors(frames["summary"]["target"])
    quality = figures.quality_vs_cost(frames["summary"], colors=colors)
    bars = figures.cost_bars(frames["summary"], colors=colors)
    boxes = figures.latency_distribution(frames["units"], colors=colors)
    spend = figures.cost_over_time(frames["cost"], colors=colors)
    by_bar = dict(zip(bars.data[0].x, bars.data[0].marker.color, strict=True))
    for target, color in colors.items():
        assert by_bar[target] == color
        assert [t.marker.color for t in quality.data if t.meta and t.meta["target"] == target] == [
            color
        ]
        assert [t.marker.color for t in boxes.data if t.name == target] == [color]
        assert [t.line.color for t in spend.data if t.name == target] == [color]


def test_cost_bars_values_sorted_by_cost(frames):
    summary = frames["summary"]
    (bar,) = figures.cost_bars(summary).data
    expected = summary.sort_values("cost_per_call")
    assert list(bar.x) == expected["target"].tolist()
    np.testing.assert_allclose(bar.y, expected["cost_per_call"])
    assert "$" in bar.hovertemplate


def test_latency_distribution_draws_ok_units_per_target(frames):
    units = frames["units"]
    fig = figures.latency_distribution(units)
    ok = units[units["status"] == "ok"]
    assert [t.name for t in fig.data] == sorted(ok["target"].unique())
    for trace in fig.data:
        np.testing.assert_allclose(
            np.sort(trace.y), np.sort(ok.loc[ok["target"] == trace.name, "latency_ms"])
        )
    assert fig.layout.yaxis.title.text == "logical latency (ms)"
    ttft = figures.latency_distribution(units, metric="ttft_ms")
    assert "first token" in ttft.layout.yaxis.title.text


def test_error_breakdown_stacks_error_types(frames):
    errors = frames["errors"]
    fig = figures.error_breakdown(errors)
    assert fig.layout.barmode == "stack"
    assert sorted(t.name for t in fig.data) == sorted(errors["error_type"].unique())
    total = sum(float(np.nansum(t.y)) for t in fig.data)
    assert total == errors["failed_attempts"].sum()


def test_cost_over_time_lines_end_at_each_targets_total(frames):
    cost = frames["cost"]
    fig = figures.cost_over_time(cost)
    assert {t.name for t in fig.data} == set(cost["target"])
    totals = cost.groupby("target")["cost_usd"].sum()
    for trace in fig.data:
        assert trace.y[-1] == pytest.approx(totals[trace.name])
    assert "UTC" in fig.layout.xaxis.title.text


def test_figures_accept_empty_frames():
    empty_errors = pd.DataFrame(
        columns=["target", "error_type", "failed_attempts", "failed_units", "unit_share"]
    )
    assert len(figures.error_breakdown(empty_errors).data) == 0
