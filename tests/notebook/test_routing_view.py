"""The threshold view of a two-model router: the curve against a direct count of what each
threshold routes where, and the explorer driven by setting its slider as a user would."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from aigw_lab.notebook import ThresholdExplorer, routing_tradeoff, threshold_curve  # noqa: E402
from aigw_lab.notebook.routing import operating_point  # noqa: E402

N = 300


@pytest.fixture(scope="module")
def queries() -> dict[str, np.ndarray]:
    """Held-out queries of a router that knows something: the strong model is more often
    right where the score is high; it always costs more than the weak one. Scores come in
    steps of 1/40, as a kNN router's do, so many queries tie."""
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(N) * 40) / 40
    return {
        "scores": scores,
        "strong_quality": (rng.random(N) < 0.55 + 0.4 * scores).astype(float),
        "weak_quality": (rng.random(N) < 0.6).astype(float),
        "strong_cost": 0.004 + 0.001 * rng.random(N),
        "weak_cost": 0.0004 + 0.0001 * rng.random(N),
    }


@pytest.fixture(scope="module")
def curve(queries):
    return threshold_curve(**queries, n_boot=300)


def routed(queries, threshold: float) -> tuple[float, float, float]:
    """Share, quality and cost of threshold routing counted directly (strong when >=)."""
    strong = queries["scores"] >= threshold
    quality = np.where(strong, queries["strong_quality"], queries["weak_quality"])
    cost = np.where(strong, queries["strong_cost"], queries["weak_cost"])
    return strong.mean(), quality.mean(), cost.mean()


def test_each_row_is_what_its_threshold_routes(queries, curve) -> None:
    assert len(curve) == len(np.unique(queries["scores"])) + 1
    for row in curve.itertuples():
        share, quality, cost = routed(queries, row.threshold)
        assert row.strong_share == pytest.approx(share)
        assert row.quality == pytest.approx(quality)
        assert row.cost_per_query == pytest.approx(cost)
        assert row.quality_low <= row.quality <= row.quality_high
        assert row.cost_low <= row.cost_per_query <= row.cost_high
    # From "everything to the strong model" to "nothing to it", never rising on the way.
    assert curve["strong_share"].iloc[0] == 1.0 and curve["strong_share"].iloc[-1] == 0.0
    assert curve["quality"].iloc[-1] == pytest.approx(queries["weak_quality"].mean())
    assert np.all(np.diff(curve["strong_share"]) <= 0)
    assert np.all(np.diff(curve["cost_per_query"]) <= 0)


def test_a_threshold_between_rows_realises_the_next_row_exactly(queries, curve) -> None:
    rng = np.random.default_rng(1)
    for threshold in rng.uniform(curve["threshold"].min(), curve["threshold"].max(), 25):
        point = operating_point(curve, threshold)
        share, quality, cost = routed(queries, threshold)
        assert (point["strong_share"], point["quality"]) == pytest.approx((share, quality))
        assert point["cost_per_query"] == pytest.approx(cost)


def test_many_distinct_scores_are_thinned_to_quantiles(queries) -> None:
    continuous = dict(queries, scores=np.linspace(0.0, 1.0, N))
    thinned = threshold_curve(**continuous, max_points=50, n_boot=0)
    assert len(thinned) == 51
    assert thinned["quality_low"].isna().all()  # no bootstrap asked, no interval invented
    assert thinned["strong_share"].iloc[0] == 1.0 and thinned["strong_share"].iloc[-1] == 0.0


def test_bad_inputs_are_refused(queries) -> None:
    with pytest.raises(ValueError, match="one non-zero length"):
        threshold_curve(**dict(queries, weak_cost=queries["weak_cost"][:-1]))
    with pytest.raises(ValueError, match="finite"):
        threshold_curve(
            **dict(queries, strong_quality=np.where(queries["scores"] > 0.9, np.nan, 1.0))
        )


def marker(figure, measure: str) -> tuple[float, float]:
    (trace,) = [
        t for t in figure.data if t.name == "current threshold" and t.meta["measure"] == measure
    ]
    return trace.x[0], trace.y[0]


def test_figure_draws_the_curve_and_the_current_point(curve) -> None:
    plain = routing_tradeoff(curve)
    assert not [t for t in plain.data if t.name == "current threshold"]
    lines = {t.name: t for t in plain.data if t.mode == "lines"}
    assert list(lines["strong-call share"].y) == pytest.approx(curve["strong_share"].tolist())
    assert list(lines["cost per query (USD)"].x) == pytest.approx(curve["threshold"].tolist())
    bands = [t for t in plain.data if t.fill == "toself"]
    assert len(bands) == 2  # quality and cost have intervals; the share is exact

    threshold = float(curve["threshold"].iloc[len(curve) // 2])
    row = operating_point(curve, threshold)
    marked = routing_tradeoff(curve, current=threshold)
    assert marker(marked, "strong_share") == pytest.approx((threshold, row["strong_share"]))
    assert marker(marked, "quality") == pytest.approx((threshold, row["quality"]))
    assert marker(marked, "cost_per_query") == pytest.approx((threshold, row["cost_per_query"]))


def test_moving_the_slider_moves_readout_and_markers_together(queries, curve) -> None:
    explorer = ThresholdExplorer(curve)
    # It starts near a 50% strong-call share.
    assert abs(explorer.current["strong_share"] - 0.5) < 0.1
    shares, costs = [], []
    for threshold in np.linspace(curve["threshold"].min(), curve["threshold"].max(), 9):
        explorer.slider.value = float(threshold)
        share, quality, cost = routed(queries, explorer.slider.value)
        point = explorer.current
        assert (point["strong_share"], point["quality"]) == pytest.approx((share, quality))
        assert point["cost_per_query"] == pytest.approx(cost)
        text = explorer.readout_text
        assert f"{share:.1%} strong calls" in text and f"${cost:.6f} per query" in text
        assert f"quality {quality:.3f} [" in text  # with its interval
        assert text in explorer.readout.value.replace("&#x27;", "'")
        assert marker(explorer.figure, "strong_share") == pytest.approx(
            (explorer.slider.value, share)
        )
        assert marker(explorer.figure, "cost_per_query")[1] == pytest.approx(cost)
        shares.append(share)
        costs.append(cost)
    # Raising the threshold sends fewer queries to the strong model, so spending falls too.
    assert shares[0] == 1.0 and shares[-1] == 0.0
    assert shares == sorted(shares, reverse=True) and costs == sorted(costs, reverse=True)
    assert costs[0] > costs[-1]


def test_explorer_starts_where_asked_and_clamps_to_the_curve(curve) -> None:
    threshold = float(curve["threshold"].iloc[3])
    explorer = ThresholdExplorer(curve, initial=threshold)
    assert explorer.slider.value == pytest.approx(threshold)
    assert explorer.current["threshold"] == threshold
    beyond = ThresholdExplorer(curve, initial=99.0)
    assert beyond.current["strong_share"] == 0.0
    without_ci = ThresholdExplorer(
        threshold_curve(
            np.array([0.1, 0.9]), np.ones(2), np.zeros(2), np.ones(2), np.zeros(2), n_boot=0
        )
    )
    assert "[" not in without_ci.readout_text
    with pytest.raises(ValueError, match="no thresholds"):
        ThresholdExplorer(curve.iloc[0:0])


def test_slider_moves_keep_the_saved_widget_state_small(curve) -> None:
    # Fails with a FigureWidget pane: plotly.js (~5 MB) in the widget state of every figure
    # the explorer drew, so a notebook saved with widget state grew 5 MB per slider move.
    import json

    from ipywidgets.embed import dependency_state
    from ipywidgets.widgets.widget import _instances

    explorer = ThresholdExplorer(curve)
    before = len(_instances)
    for threshold in np.linspace(curve["threshold"].min(), curve["threshold"].max(), 5):
        explorer.slider.value = float(threshold)
    assert len(_instances) == before
    (shown,) = explorer.widget.children[2].outputs
    markers = [
        t
        for t in shown["data"]["application/vnd.plotly.v1+json"]["data"]
        if t.get("name") == "current threshold"
    ]
    assert markers and markers[0]["x"] == [explorer.slider.value]
    state = dependency_state(explorer.widget, drop_defaults=False)
    assert len(json.dumps(state)) < 300_000
