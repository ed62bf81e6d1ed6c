"""The report's figures are plain dicts written with `json` (the core has no plotly package):
each one, built from real call logs, is the figure plotly itself accepts and writes.

Both ways for every figure the report draws: ``go.Figure(figure)`` validates it (a property or
value plotly does not know raises), and plotly's own JSON of that figure equals ours, data
and layout. plotly is installed here: the ``notebook`` extra is part of ``dev``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from aigw_lab import analysis
from aigw_lab.palette import target_colors
from aigw_lab.report import charts

#: Each figure builder of `aigw_lab.report.charts`; every one must be checked at least once.
BUILDERS = (
    "quality_vs_cost",
    "quality_by_category",
    "cost_per_call",
    "latency",
    "errors",
    "cost_over_time",
)


def report_figures(db, experiment_id=None) -> dict[str, dict]:
    """Every figure the report would draw for the experiment, from the same analysis
    frames `write_report` reads (builders that have nothing to draw are left out)."""
    summary = analysis.target_summary(db, experiment_id=experiment_id)
    colors = target_colors(summary["target"])
    spread = analysis.unit_spread(db, experiment_id=experiment_id)
    errors = analysis.errors_by_target(db, experiment_id=experiment_id)
    per_item = analysis.item_quality(db, experiment_id=experiment_id)
    by_category = analysis.category_quality(db, experiment_id=experiment_id, per_item=per_item)
    spend = analysis.cost_over_time(db, freq="minute", experiment_id=experiment_id)
    built = {
        "quality_vs_cost": charts.quality_vs_cost(summary, colors),
        "quality_by_category": charts.quality_by_category(by_category, colors),
        "cost_per_call": charts.cost_per_call(spread, colors),
        "latency": charts.latency(spread, colors),
        "errors": charts.errors(errors) if len(errors) else None,
        "cost_over_time": charts.cost_over_time(spend, colors),
    }
    return {name: figure for name, figure in built.items() if figure is not None}


def assert_plotly_agrees(figure: dict) -> None:
    ours = json.loads(charts.figure_json(figure))
    validated = go.Figure(figure)  # raises on a property or value plotly does not know
    theirs = json.loads(pio.to_json(validated, validate=True, engine="json"))
    assert ours["data"] == theirs["data"]
    assert ours["layout"] == theirs["layout"]
    assert set(ours) == {"data", "layout"}


@pytest.fixture(scope="module")
def every_figure(report_db, run_db, hostile_db):
    """(log, builder) -> figure, over the synthetic log's two experiments (errors, an hour of
    cost over time), a real run through the simulated fleet (categories) and the log whose
    every name holds markup."""
    figures = {}
    for log, db, experiment in (
        ("synthetic-latest", report_db, "latest"),
        ("synthetic-older", report_db, "older"),
        ("run", run_db, None),
        ("hostile", hostile_db, None),
    ):
        for name, figure in report_figures(db, experiment).items():
            figures[log, name] = figure
    return figures


def test_every_builder_is_checked(every_figure):
    assert {name for _, name in every_figure} == set(BUILDERS)


@pytest.mark.parametrize("builder", BUILDERS)
def test_each_report_figure_is_the_one_plotly_writes(every_figure, builder):
    checked = 0
    for (_log, name), figure in every_figure.items():
        if name == builder:
            assert_plotly_agrees(figure)
            checked += 1
    assert checked


def test_missing_values_are_null_in_both():
    # A target with no items in a category: its bar is missing (NaN), which JSON cannot
    # hold; plotly's encoder writes null, and so must we (JSON.parse refuses NaN).
    frame = pd.DataFrame(
        {
            "target": ["a", "a", "b"],
            "category": ["x", "y", "x"],
            "quality_mean": [0.5, 0.75, 1.0],
            "ci_low": [0.25, 0.5, float("nan")],
            "ci_high": [0.75, float("inf"), float("nan")],
            "items": [4, 4, 1],
            "interval": ["wilson"] * 3,
        }
    )
    figure = charts.quality_by_category(frame, target_colors(["a", "b"]))
    text = charts.figure_json(figure)
    assert "NaN" not in text and "Infinity" not in text
    bars = json.loads(text)["data"]
    assert bars[1]["y"] == [1.0, None]
    assert bars[0]["error_y"]["array"][1] is None
    assert_plotly_agrees(figure)


def test_cost_over_time_dates_are_iso_text_as_plotly_writes_them():
    frame = pd.DataFrame(
        {
            "bucket": pd.to_datetime(
                ["2026-03-01 00:01:00", "2026-03-01 00:02:30.5"], format="ISO8601"
            ),
            "target": ["a", "a"],
            "cumulative_cost_usd": [0.001, 0.003],
        }
    )
    figure = charts.cost_over_time(frame, {"a": "#636EFA"})
    assert json.loads(charts.figure_json(figure))["data"][0]["x"] == [
        "2026-03-01T00:01:00",
        "2026-03-01T00:02:30.500000",
    ]
    assert_plotly_agrees(figure)


def test_plotly_validation_would_catch_a_wrong_property():
    # What the checks above rely on: go.Figure refuses what plotly.js would ignore.
    with pytest.raises(ValueError):
        go.Figure({"data": [{"type": "scatter", "colour": "red"}], "layout": {}})
    with pytest.raises(ValueError):
        go.Figure({"data": [{"type": "box", "orientation": "sideways"}], "layout": {}})


def test_figure_json_writes_plain_values_only():
    figure = {
        "data": [
            {
                "y": np.array([1.5, np.nan, np.inf]),
                "x": (np.int64(2), np.float32(0.5)),
                "customdata": [datetime(2026, 1, 2, 3, 4, tzinfo=UTC), np.bool_(True)],
            }
        ],
        "layout": {"title": {"text": "t"}},
    }
    assert json.loads(charts.figure_json(figure))["data"][0] == {
        "y": [1.5, None, None],
        "x": [2, 0.5],
        "customdata": ["2026-01-02T03:04:00+00:00", True],
    }
    with pytest.raises(TypeError, match="not a JSON value"):
        charts.figure_json({"data": [{"y": [object()]}], "layout": {}})


def test_missing_numbers_of_any_kind_are_null():
    values = [1, 2.5, None, pd.NA, np.nan, np.float32("inf"), -np.inf, np.int64(3)]
    assert charts._floats(values) == [1.0, 2.5, None, None, None, None, None, 3.0]
    with pytest.raises(ValueError):
        charts._floats(["not a number"])
