"""The report's figures: plotly figures from the analysis frames, drawn for a reader who
decides (cost axes in log scale with dollar ticks, hover text in the report's own number
formats, every name from the log escaped), and the rule for which ones an experiment gets.

These differ from `aigw_lab.notebook.figures` on purpose: a notebook explores one frame at a
time with linear axes; the report compares targets whose costs differ a hundredfold.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.pareto import pareto_frontier
from aigw_lab.notebook.figures import target_colors
from aigw_lab.report.format import PLOTLY_USD_TICKFORMAT, quality, usd

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["COST_OVER_TIME_MIN_SECONDS", "show_cost_over_time", "figure_json"]

#: A cost-over-time chart is drawn only for runs at least this long (seconds): a run of a
#: few seconds or minutes has no "over time" to show, just one step per target.
COST_OVER_TIME_MIN_SECONDS = 600

# No plotly template (a template adds ~10 kB of JSON per figure): a light grid by hand.
_AXIS = {"gridcolor": "#e8e8e8", "zerolinecolor": "#ccc", "automargin": True}
_LAYOUT: dict[str, Any] = {
    "template": "none",
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "hovermode": "closest",
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
}


def _usd_axis(values: Any) -> dict[str, Any]:
    """A log axis with dollar ticks the report writes itself (``$0.00005``): at 1-2-5 steps
    per decade over the values' range, only the powers of ten when that would crowd it."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data) & (data > 0)]
    axis: dict[str, Any] = {"type": "log", "exponentformat": "none"}
    if data.size == 0:
        return axis | {"tickprefix": "$", "tickformat": PLOTLY_USD_TICKFORMAT}
    low, high = float(data.min()) / 1.5, float(data.max()) * 1.5
    ticks: list[float] = []
    for _ in range(4):  # values close together: widen until two ticks fit
        ticks = [
            m * 10.0**k
            for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            for m in (1, 2, 5)
        ]
        ticks = [t for t in ticks if low <= t <= high]
        if len(ticks) >= 2:
            break
        low, high = low / 2, high * 2
    axis["range"] = [math.log10(low), math.log10(high)]
    if len(ticks) > 9:
        ticks = [t for t in ticks if f"{t:.0e}".startswith("1")]
    return axis | {"tickvals": ticks, "ticktext": [usd(t) for t in ticks]}


def show_cost_over_time(span_seconds: float) -> bool:
    """Whether a run that lasted ``span_seconds`` gets a cost-over-time chart."""
    return span_seconds >= COST_OVER_TIME_MIN_SECONDS


def _name(value: Any) -> str:
    # Plotly renders a few HTML tags in text; a name from the log must stay plain text.
    return html.escape(str(value), quote=False)


def _layout(figure: go.Figure, **kwargs: Any) -> go.Figure:
    figure.update_layout(**_LAYOUT, **kwargs)
    figure.update_xaxes(**_AXIS)
    figure.update_yaxes(**_AXIS)
    return figure


def quality_vs_cost(summary: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure:
    """One point per target: mean quality (with its interval) against cost per call on a
    log axis; simulated targets as open diamonds; the Pareto frontier dashed."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    plotted = summary[(summary["cost_per_call"] > 0) & summary["quality_mean"].notna()]
    figure = go.Figure()
    for row in plotted.sort_values("cost_per_call").itertuples(index=False):
        mean, low, high = row.quality_mean, row.quality_ci_low, row.quality_ci_high
        has_ci = low == low and high == high
        figure.add_trace(
            go.Scatter(
                x=[float(row.cost_per_call)],
                y=[float(mean)],
                mode="markers",
                name=_name(row.target) + (" (simulated)" if row.simulated else ""),
                marker={
                    "color": colors[row.target],
                    "size": 13,
                    "symbol": "diamond-open" if row.simulated else "circle",
                    "line": {"width": 2, "color": colors[row.target]},
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [float(high - mean)],
                    "arrayminus": [float(mean - low)],
                }
                if has_ci
                else None,
                customdata=[[usd(row.cost_per_call), quality(low), quality(high)]],
                hovertemplate=(
                    f"{_name(row.target)}<br>%{{customdata[0]}} per call<br>quality %{{y:.3f}}"
                    + (" [%{customdata[1]}, %{customdata[2]}]" if has_ci else "")
                    + "<extra></extra>"
                ),
            )
        )
    if len(plotted) > 1:
        front = pareto_frontier(plotted)
        figure.add_trace(
            go.Scatter(
                x=front["cost_per_call"].to_numpy(dtype=float),
                y=front["quality_mean"].to_numpy(dtype=float),
                mode="lines",
                name="Pareto frontier",
                line={"color": "#444", "dash": "dash", "width": 1.5},
                hoverinfo="skip",
            )
        )
    _layout(figure, xaxis_title="cost per call (log scale)", yaxis_title="quality, mean")
    figure.update_xaxes(**_usd_axis(plotted["cost_per_call"]))
    return figure


def quality_by_category(frame: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure:
    """Grouped bars: per category, each target's mean quality with its interval."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    figure = go.Figure()
    categories = sorted(frame["category"].unique())
    for target in sorted(frame["target"].unique()):
        rows = frame[frame["target"] == target].set_index("category").reindex(categories)
        means = rows["quality_mean"].to_numpy(dtype=float)
        figure.add_trace(
            go.Bar(
                x=[_name(c) for c in categories],
                y=means,
                name=_name(target),
                marker_color=colors[target],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (rows["ci_high"].to_numpy(dtype=float) - means).tolist(),
                    "arrayminus": (means - rows["ci_low"].to_numpy(dtype=float)).tolist(),
                },
                customdata=[
                    [quality(lo), quality(hi), "" if n != n else int(n), str(method)]
                    for lo, hi, n, method in zip(
                        rows["ci_low"],
                        rows["ci_high"],
                        rows["items"],
                        rows["interval"],
                        strict=True,
                    )
                ],
                hovertemplate=(
                    f"{_name(target)}<br>%{{x}}: %{{y:.3f}} [%{{customdata[0]}}, "
                    "%{customdata[1]}]<br>%{customdata[2]} items, %{customdata[3]} interval"
                    "<extra></extra>"
                ),
            )
        )
    _layout(figure, barmode="group", xaxis_title="category", yaxis_title="quality, mean")
    return figure


def _spread_boxes(
    spread: pd.DataFrame, metric: str, colors: Mapping[str, str], hover: bool
) -> go.Figure | None:
    """Horizontal boxes from `unit_spread` statistics: the box from the first to the third
    quartile, the median, the mean dashed, whiskers from the 5th to the 95th percentile."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    rows = spread[spread["metric"] == metric].sort_values("target", ascending=False)
    if rows.empty:
        return None
    figure = go.Figure()
    for row in rows.itertuples(index=False):
        name = _name(row.target)
        figure.add_trace(
            go.Box(
                y=[name],
                q1=[row.q1],
                median=[row.median],
                q3=[row.q3],
                lowerfence=[row.p05],
                upperfence=[row.p95],
                mean=[row.mean],
                name=name,
                marker_color=colors[row.target],
                orientation="h",
                hoverinfo="x" if hover else "skip",
            )
        )
    return figure


def cost_per_call(spread: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure | None:
    """Per target, the spread of what each unit cost (log axis; units that cost nothing,
    such as cache hits, cannot sit on it and are left out). None when nothing cost anything.
    """
    figure = _spread_boxes(spread, "cost_usd", colors, hover=False)
    if figure is None:
        return None
    rows = spread[spread["metric"] == "cost_usd"]
    _layout(figure, showlegend=False, xaxis_title="cost of each unit (log scale)")
    figure.update_xaxes(**_usd_axis(rows[["p05", "p95"]].to_numpy().ravel()))
    return figure


def latency(spread: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure | None:
    """Per target, the spread of logical latency of the units that ended ok."""
    figure = _spread_boxes(spread, "latency_ms", colors, hover=True)
    if figure is None:
        return None
    _layout(figure, showlegend=False, xaxis_title="latency (ms), units that ended ok")
    figure.update_xaxes(hoverformat=",.0f")
    return figure


def errors(frame: pd.DataFrame) -> go.Figure:
    """Stacked bars of failed attempts per target, one colour per error type."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    targets = sorted(frame["target"].unique())
    palette = target_colors(frame["error_type"])
    figure = go.Figure()
    for error_type in sorted(palette):
        rows = frame[frame["error_type"] == error_type].set_index("target").reindex(targets)
        figure.add_trace(
            go.Bar(
                x=[_name(t) for t in targets],
                y=rows["failed_attempts"].fillna(0).to_numpy(dtype=float),
                name=_name(error_type),
                marker_color=palette[error_type],
                customdata=rows["failed_units"].fillna(0).to_numpy(dtype=float),
                hovertemplate=(
                    f"%{{x}}<br>{_name(error_type)}: %{{y}} failed attempts, "
                    "%{customdata} units ended so<extra></extra>"
                ),
            )
        )
    _layout(figure, barmode="stack", xaxis_title="target", yaxis_title="failed attempts")
    return figure


def cost_over_time(frame: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure:
    """Cumulative cost per target over the run (log axis, dollar ticks)."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    figure = go.Figure()
    for target in sorted(frame["target"].astype(str).unique()):
        rows = frame[frame["target"].astype(str) == target].sort_values("bucket")
        rows = rows[rows["cumulative_cost_usd"] > 0]
        figure.add_trace(
            go.Scatter(
                x=rows["bucket"].tolist(),
                y=rows["cumulative_cost_usd"].to_numpy(dtype=float),
                mode="lines+markers",
                name=_name(target),
                line={"color": colors.get(target)},
                customdata=[[usd(v)] for v in rows["cumulative_cost_usd"]],
                hovertemplate=f"{_name(target)}<br>%{{x}}<br>%{{customdata[0]}} so far"
                "<extra></extra>",
            )
        )
    _layout(figure, xaxis_title="time (UTC)", yaxis_title="cumulative cost (log scale)")
    figure.update_yaxes(**_usd_axis(frame["cumulative_cost_usd"]))
    return figure


def figure_json(figure: go.Figure) -> str:
    """The figure as JSON for ``Plotly.newPlot`` (data and layout, no validation pass)."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.io as pio

    return pio.to_json(figure, validate=False, pretty=False, engine="json")
