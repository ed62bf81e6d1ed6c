import math

import pandas as pd

from aigw_lab.analysis.pareto import mark_frontier, pareto_frontier


def _summary():
    return pd.DataFrame(
        {
            "target": ["cheap", "mid", "dominated", "strong", "twin", "unscored"],
            "cost_per_call": [1.0, 2.0, 3.0, 5.0, 2.0, 0.5],
            "quality_mean": [0.5, 0.7, 0.6, 0.9, 0.7, math.nan],
        }
    )


def test_frontier_is_the_non_dominated_targets_cheapest_first():
    frontier = pareto_frontier(_summary())
    assert frontier["target"].tolist() == ["cheap", "mid", "twin", "strong"]
    assert "on_frontier" not in frontier.columns


def test_mark_frontier_flags_rows_and_keeps_the_rest():
    marked = mark_frontier(_summary())
    assert dict(zip(marked["target"], marked["on_frontier"], strict=True)) == {
        "cheap": True,
        "mid": True,
        "dominated": False,
        "strong": True,
        "twin": True,
        "unscored": False,
    }
    assert len(marked) == 6


def test_other_columns_can_be_the_axes():
    frame = pd.DataFrame({"target": ["a", "b"], "p95": [100.0, 50.0], "q": [0.9, 0.95]})
    assert pareto_frontier(frame, cost="p95", quality="q")["target"].tolist() == ["b"]
