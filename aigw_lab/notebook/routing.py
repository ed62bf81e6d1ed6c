"""The threshold of a two-model router, made visible: `threshold_curve` (what each threshold
does on held-out items), `routing_tradeoff` (its figure) and `ThresholdExplorer` (a slider).

A two-model router sends a query to the strong model when its strong-win score is ``>= T``.
Raising ``T`` sends fewer queries there, so the strong-call share, the cost per query and
(usually) the quality fall together; the explorer shows how fast each falls::

    curve = threshold_curve(router.strong_scores_from(X_test), strong_q, weak_q,
                            strong_cost, weak_cost)
    ThresholdExplorer(curve)          # drag the threshold; the readout and markers follow

The numbers come from `aigw_lab.policy.evaluate.metrics` (the routing rule of RouteLLM's
sweep) and `aigw_lab.analysis.stats` (bootstrap over items); this module only arranges them.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.stats import bootstrap_means, percentile_interval
from aigw_lab.extras import require_notebook
from aigw_lab.notebook._panes import FigurePane

# A view module needs the notebook extra (plotly, ipywidgets): one clear error on import,
# not a ModuleNotFoundError at the first drawing. A check, not an import (find_spec).
require_notebook(__name__)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["threshold_curve", "operating_point", "routing_tradeoff", "ThresholdExplorer"]

#: The curve's columns, in order.
CURVE_COLUMNS = (
    "threshold",
    "strong_share",
    "quality",
    "quality_low",
    "quality_high",
    "cost_per_query",
    "cost_low",
    "cost_high",
)
# The figure's rows: (column, axis title, hover format).
_PANELS = (
    ("strong_share", "strong-call share", ".1%"),
    ("quality", "quality (mean)", ".3f"),
    ("cost_per_query", "cost per query (USD)", "$.6f"),
)
_MARKER = "current threshold"


def threshold_curve(
    scores: np.ndarray,
    strong_quality: np.ndarray,
    weak_quality: np.ndarray,
    strong_cost: np.ndarray,
    weak_cost: np.ndarray,
    *,
    max_points: int = 200,
    n_boot: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """What each threshold does on a set of (held-out) queries: one row per threshold with
    the share of queries sent to the strong model, their mean quality and mean cost per
    query, each routed query scored by the recorded outcome of the model it went to.

    ``scores`` are the router's strong-win scores; the other arrays are each query's
    recorded quality and cost per model. The thresholds are every distinct score (or, above
    ``max_points`` of them, ``max_points`` score quantiles) plus one above the highest score
    (no strong calls). With every distinct score, a row is exact for any threshold in
    (previous row's threshold, its threshold]. ``quality_low``/``quality_high`` and
    ``cost_low``/``cost_high`` are percentile bootstrap intervals over the queries (NaN
    when ``n_boot`` is 0). Rows are sorted by threshold, so the share never rises.
    """
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
    import numpy as np
    import pandas as pd

    # lazy: the metrics load numpy (~0.1 s); only a sweep needs them
    from aigw_lab.policy.evaluate.metrics import sweep_choices

    arrays = [
        np.asarray(a, dtype=float)
        for a in (scores, strong_quality, weak_quality, strong_cost, weak_cost)
    ]
    scores = arrays[0]
    if scores.ndim != 1 or not len(scores) or any(a.shape != scores.shape for a in arrays):
        raise ValueError(
            "scores, qualities and costs must be 1-d arrays of one non-zero length "
            f"(got shapes {[a.shape for a in arrays]})"
        )
    if not np.isfinite(np.stack(arrays)).all():
        raise ValueError(
            "scores, qualities and costs must be finite: drop the queries without a recorded "
            "label or price first"
        )
    _, strong_q, weak_q, strong_c, weak_c = arrays
    distinct = np.unique(scores)
    if len(distinct) > max_points:
        distinct = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, max_points)))
    # One threshold above every score: RouteLLM's sweep uses ">" at its top edge, ">=" at
    # the others; above the highest score both mean "no strong call", so every row follows
    # the router's own ">=" rule.
    top = np.nextafter(distinct[-1], np.inf)
    thresholds = np.concatenate([distinct, [top]])
    chosen = sweep_choices(scores, thresholds)  # (thresholds, queries), True = strong
    quality = np.where(chosen, strong_q[None, :], weak_q[None, :])
    cost = np.where(chosen, strong_c[None, :], weak_c[None, :])
    frame = pd.DataFrame(
        {
            "threshold": thresholds,
            "strong_share": chosen.mean(axis=1),
            "quality": quality.mean(axis=1),
            "cost_per_query": cost.mean(axis=1),
        }
    )
    nan = np.full(len(thresholds), np.nan)
    lows = {"quality": nan, "cost_per_query": nan}
    highs = dict(lows)
    if n_boot > 0:
        # One set of resampled queries for every threshold and both measures (paired), so
        # the bands move together the way the curve does.
        rng = np.random.default_rng(seed)
        replicates = bootstrap_means(np.hstack([quality.T, cost.T]), n_boot=n_boot, rng=rng)
        low, high = percentile_interval(replicates, confidence)
        k = len(thresholds)
        lows = {"quality": low[:k], "cost_per_query": low[k:]}
        highs = {"quality": high[:k], "cost_per_query": high[k:]}
    frame["quality_low"], frame["quality_high"] = lows["quality"], highs["quality"]
    frame["cost_low"], frame["cost_high"] = lows["cost_per_query"], highs["cost_per_query"]
    frame = frame.loc[:, list(CURVE_COLUMNS)]
    frame.attrs.update(confidence=confidence, n=len(scores), n_boot=n_boot)
    return frame


def operating_point(curve: pd.DataFrame, threshold: float) -> pd.Series:
    """The row of ``curve`` that threshold ``threshold`` realises: the one with the smallest
    threshold at or above it (the last row when it is above them all)."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    values = curve["threshold"].to_numpy(dtype=float)
    index = int(np.searchsorted(values, threshold, side="left"))
    return curve.iloc[min(index, len(values) - 1)]


def routing_tradeoff(curve: pd.DataFrame, *, current: float | None = None) -> go.Figure:
    """Strong-call share, quality (with its interval as a band) and cost per query against
    the threshold, stacked on one shared threshold axis, from `threshold_curve`. With
    ``current``, a marker (trace name "current threshold") on each panel at the operating
    point that threshold realises, and a vertical line through all three."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = curve["threshold"].to_numpy(dtype=float)
    figure = make_subplots(rows=len(_PANELS), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for row, (column, title, fmt) in enumerate(_PANELS, start=1):
        low, high = _band(curve, column)
        if low is not None and high is not None:
            figure.add_trace(
                go.Scatter(
                    x=list(x) + list(x[::-1]),
                    y=list(high) + list(low[::-1]),
                    fill="toself",
                    fillcolor="rgba(99, 110, 250, 0.18)",
                    line={"width": 0},
                    hoverinfo="skip",
                    name=f"{title} {curve.attrs.get('confidence', 0.95):.0%} interval",
                    showlegend=False,
                ),
                row=row,
                col=1,
            )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=curve[column].to_numpy(dtype=float),
                mode="lines",
                line={"shape": "hv", "color": "#636EFA"},
                name=title,
                showlegend=False,
                hovertemplate=f"threshold %{{x:.4f}}<br>{title} %{{y:{fmt}}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        figure.update_yaxes(title_text=title, row=row, col=1)
    if current is not None:
        point = operating_point(curve, current)
        for row, (column, title, fmt) in enumerate(_PANELS, start=1):
            figure.add_trace(
                go.Scatter(
                    x=[float(current)],
                    y=[float(point[column])],
                    mode="markers",
                    marker={"size": 11, "color": "#EF553B"},
                    name=_MARKER,
                    showlegend=row == 1,
                    meta={"measure": column},
                    hovertemplate=f"threshold %{{x:.4f}}<br>{title} %{{y:{fmt}}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        figure.add_vline(x=float(current), line={"color": "#EF553B", "dash": "dot", "width": 1})
    figure.update_xaxes(title_text="threshold (strong model when score >= threshold)", row=3)
    figure.update_yaxes(tickformat=".0%", row=1, col=1)
    figure.update_layout(
        title=f"What the threshold does, on {curve.attrs.get('n', '?')} held-out queries",
        template="plotly_white",
        hovermode="closest",
        height=620,
    )
    return figure


def _band(curve: pd.DataFrame, column: str) -> tuple[Any, Any]:
    """The interval columns of ``column``, or (None, None) when the curve has none."""
    names = {
        "quality": ("quality_low", "quality_high"),
        "cost_per_query": ("cost_low", "cost_high"),
    }.get(column)
    if names is None or not set(names) <= set(curve.columns) or curve[names[0]].isna().all():
        return None, None
    return curve[names[0]].to_numpy(dtype=float), curve[names[1]].to_numpy(dtype=float)


class ThresholdExplorer:
    """A slider over a two-model router's threshold, from a `threshold_curve` frame.

    Moving ``slider`` (an ``ipywidgets.FloatSlider``) updates ``readout`` (the strong-call
    share, quality with its interval, cost per query) and moves the markers of the figure
    (`routing_tradeoff`). ``initial`` is the starting threshold (default: the one whose
    strong-call share is nearest 50%). ``current`` is the operating point shown now;
    ``figure`` the figure last drawn. Display the explorer itself, or put ``widget`` in a
    layout.
    """

    def __init__(self, curve: pd.DataFrame, *, initial: float | None = None) -> None:
        # lazy: ipywidgets (with IPython) loads in ~0.5 s; only a notebook needs it
        import ipywidgets as widgets

        if curve.empty or "threshold" not in curve.columns:
            raise ValueError("the curve has no thresholds: build it with threshold_curve(...)")
        self.curve = curve.sort_values("threshold").reset_index(drop=True)
        thresholds = self.curve["threshold"].to_numpy(dtype=float)
        low, high = float(thresholds[0]), float(thresholds[-1])
        if initial is None:
            nearest = (self.curve["strong_share"] - 0.5).abs().to_numpy().argmin()
            initial = float(thresholds[nearest])
        step = (high - low) / 1000 if high > low else 1e-3
        self.slider = widgets.FloatSlider(
            value=min(max(float(initial), low), high),
            min=low,
            max=high,
            step=step,
            description="threshold",
            readout_format=".3f",
            continuous_update=False,  # each move redraws the figure: only on release
            layout=widgets.Layout(width="520px"),
        )
        self.readout = widgets.HTML()
        self._pane = FigurePane()
        #: The operating point shown now (a row of the curve).
        self.current: pd.Series = self.curve.iloc[0]
        self.widget = widgets.VBox([self.slider, self.readout, self._pane.widget])
        self.slider.observe(self._on_move, names="value")
        self._show(self.slider.value)

    @property
    def figure(self) -> go.Figure | None:
        """The figure shown now."""
        return self._pane.figure

    @property
    def readout_text(self) -> str:
        """The readout as plain text (what the HTML says, for logs and tests)."""
        point, threshold = self.current, self.slider.value
        quality = f"{point['quality']:.3f}"
        if _known(point.get("quality_low")) and _known(point.get("quality_high")):
            confidence = self.curve.attrs.get("confidence", 0.95)
            quality += (
                f" [{point['quality_low']:.3f}, {point['quality_high']:.3f}] ({confidence:.0%} CI)"
            )
        return (
            f"threshold {threshold:.3f}: {point['strong_share']:.1%} strong calls, "
            f"quality {quality}, ${point['cost_per_query']:.6f} per query"
        )

    def _on_move(self, change: Any) -> None:
        self._show(change["new"])

    def _show(self, threshold: float) -> None:
        self.current = operating_point(self.curve, threshold)
        self.readout.value = f"<code>{html.escape(self.readout_text)}</code>"
        self._pane.show(routing_tradeoff(self.curve, current=threshold))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _known(value: Any) -> bool:
    return value is not None and value == value  # NaN is the only value unequal to itself
