"""Plotly figures of an experiment: pure functions from the analysis frames to `go.Figure`.

They need no kernel: a notebook shows them, tests read their data (the HTML report draws its
own figures without plotly: `aigw_lab.report.charts`). Each target keeps one colour across
figures: pass the same ``colors`` mapping (from `target_colors`, `aigw_lab.palette`) to every
figure; without one, colours follow the sorted target names of the frame at hand. They need
the ``notebook`` extra (plotly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from aigw_lab.analysis.pareto import pareto_frontier
from aigw_lab.extras import require_notebook
from aigw_lab.palette import target_colors

# A view module needs the notebook extra (plotly, ipywidgets): one clear error on import,
# not a ModuleNotFoundError at the first drawing. A check, not an import (find_spec).
require_notebook(__name__)

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = [
    "target_colors",
    "latency_distribution",
    "cost_bars",
    "quality_vs_cost",
    "error_breakdown",
    "cost_over_time",
]

_SIMULATED_NOTE = "simulated"
_LAYOUT = {"template": "plotly_white", "hovermode": "closest", "legend_title_text": "target"}


def latency_distribution(
    frame: pd.DataFrame, *, colors: Mapping[str, str] | None = None, metric: str = "latency_ms"
) -> go.Figure:
    """Box plot per target of the logical latency (or ``metric``, e.g. ``"ttft_ms"``) of the
    units that ended ok, from `aigw_lab.analysis.unit_frame`. Boxes show the quartiles and
    whiskers; hovering shows the numbers."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    palette = _colors(colors, frame["target"])
    label = "time to first token (ms)" if metric == "ttft_ms" else "logical latency (ms)"
    figure = go.Figure()
    for target in sorted(ok["target"].unique()):
        values = ok.loc[ok["target"] == target, metric]
        figure.add_trace(
            go.Box(
                y=values.to_numpy(),
                name=target,
                marker_color=palette[target],
                boxmean=True,
                hovertemplate=f"{target}<br>%{{y:.0f}} ms<extra></extra>",
            )
        )
    figure.update_layout(
        title=f"{label.capitalize()} per target (units that ended ok)",
        xaxis_title="target",
        yaxis_title=label,
        showlegend=False,
        **_LAYOUT,
    )
    return figure


def cost_bars(summary: pd.DataFrame, *, colors: Mapping[str, str] | None = None) -> go.Figure:
    """Bar per target of the cost per unit (USD, retries and fallbacks included), from
    `aigw_lab.analysis.target_summary`; hover adds the total cost and the unit count."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    palette = _colors(colors, summary["target"])
    rows = summary.sort_values("cost_per_call")
    figure = go.Figure(
        go.Bar(
            x=rows["target"].tolist(),
            y=rows["cost_per_call"].to_numpy(dtype=float),
            marker_color=[palette[t] for t in rows["target"]],
            customdata=rows[["total_cost", "units"]].to_numpy(),
            hovertemplate=(
                "%{x}<br>$%{y:.6f} per call<br>total $%{customdata[0]:.4f}"
                " over %{customdata[1]} calls<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        title="Cost per call by target",
        xaxis_title="target",
        yaxis_title="cost per call (USD)",
        showlegend=False,
        **_LAYOUT,
    )
    return figure


def quality_vs_cost(
    summary: pd.DataFrame,
    *,
    frontier: bool = True,
    colors: Mapping[str, str] | None = None,
    cost: str = "cost_per_call",
    quality: str = "quality_mean",
) -> go.Figure:
    """Scatter of quality against cost per call, one point (trace) per target with its
    bootstrap interval as error bars; simulated targets drawn as open diamonds; with
    ``frontier``, the Pareto frontier (`aigw_lab.analysis.pareto_frontier`) as a line."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    palette = _colors(colors, summary["target"])
    scorer = summary.attrs.get("scorer")
    confidence = summary.attrs.get("confidence", 0.95)
    plotted = summary[summary[cost].notna() & summary[quality].notna()]
    figure = go.Figure()
    for row in plotted.sort_values(cost).itertuples(index=False):
        values = row._asdict()
        simulated = bool(values.get("simulated", False))
        mean = float(values[quality])
        low, high = values.get("quality_ci_low"), values.get("quality_ci_high")
        error_y = None
        if low is not None and high is not None and low == low and high == high:
            error_y = {
                "type": "data",
                "symmetric": False,
                "array": [float(high) - mean],
                "arrayminus": [mean - float(low)],
            }
        name = f"{values['target']} ({_SIMULATED_NOTE})" if simulated else values["target"]
        figure.add_trace(
            go.Scatter(
                x=[float(values[cost])],
                y=[mean],
                mode="markers",
                name=name,
                marker={
                    "color": palette[values["target"]],
                    "size": 13,
                    "symbol": "diamond-open" if simulated else "circle",
                    "line": {"width": 2, "color": palette[values["target"]]},
                },
                error_y=error_y,
                meta={"target": values["target"], "simulated": simulated},
                hovertemplate=(
                    f"{values['target']}<br>$%{{x:.6f}} per call<br>quality %{{y:.3f}}"
                    + (f" [{float(low):.3f}, {float(high):.3f}]" if error_y is not None else "")
                    + ("<br>simulated" if simulated else "")
                    + "<extra></extra>"
                ),
            )
        )
    if frontier and len(plotted):
        front = pareto_frontier(plotted, cost=cost, quality=quality)
        figure.add_trace(
            go.Scatter(
                x=front[cost].to_numpy(dtype=float),
                y=front[quality].to_numpy(dtype=float),
                mode="lines",
                name="Pareto frontier",
                line={"color": "#444", "dash": "dash", "width": 1.5},
                hoverinfo="skip",
            )
        )
    quality_label = f"quality ({scorer})" if scorer else "quality"
    figure.update_layout(
        title=f"Quality vs cost ({confidence:.0%} bootstrap intervals)",
        xaxis_title="cost per call (USD)",
        yaxis_title=f"{quality_label}, mean",
        **_LAYOUT,
    )
    return figure


def error_breakdown(errors: pd.DataFrame) -> go.Figure:
    """Stacked bars of failed attempts per target, one colour per error type (the colours
    here tell error types apart, not targets), from `aigw_lab.analysis.errors_by_target`;
    hover adds how many units ended in that error."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    figure = go.Figure()
    targets = sorted(errors["target"].unique()) if len(errors) else []
    error_palette = target_colors(errors["error_type"]) if len(errors) else {}
    for error_type in sorted(error_palette):
        rows = errors[errors["error_type"] == error_type].set_index("target")
        rows = rows.reindex(targets)
        figure.add_trace(
            go.Bar(
                x=targets,
                y=rows["failed_attempts"].fillna(0).to_numpy(dtype=float),
                name=error_type,
                marker_color=error_palette[error_type],
                customdata=rows["failed_units"].fillna(0).to_numpy(dtype=float),
                hovertemplate=(
                    f"%{{x}}<br>{error_type}: %{{y}} failed attempts,"
                    " %{customdata} units ended so<extra></extra>"
                ),
            )
        )
    figure.update_layout(
        title="Failed attempts by target and error type",
        xaxis_title="target",
        yaxis_title="failed attempts",
        barmode="stack",
        **{**_LAYOUT, "legend_title_text": "error type"},
    )
    return figure


def cost_over_time(frame: pd.DataFrame, *, colors: Mapping[str, str] | None = None) -> go.Figure:
    """Cumulative cost per group over time, one line per group, from
    `aigw_lab.analysis.cost_over_time` (grouped by target unless it says otherwise)."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.graph_objects as go

    by = frame.attrs.get("by", "target")
    freq = frame.attrs.get("freq", "hour")
    palette = _colors(colors, frame[by].astype(str)) if len(frame) else {}
    figure = go.Figure()
    for group in sorted(frame[by].astype(str).unique()):
        rows = frame[frame[by].astype(str) == group].sort_values("bucket")
        figure.add_trace(
            go.Scatter(
                x=rows["bucket"].tolist(),
                y=rows["cumulative_cost_usd"].to_numpy(dtype=float),
                mode="lines+markers",
                name=group,
                line={"color": palette.get(group)},
                customdata=rows["cost_usd"].to_numpy(dtype=float),
                hovertemplate=(
                    f"{group}<br>%{{x}}<br>cumulative $%{{y:.4f}}"
                    f" (this {freq}: $%{{customdata:.4f}})<extra></extra>"
                ),
            )
        )
    figure.update_layout(
        title=f"Cumulative cost by {by} (per {freq}, UTC)",
        xaxis_title="time (UTC)",
        yaxis_title="cumulative cost (USD)",
        **{**_LAYOUT, "legend_title_text": by},
    )
    return figure


def _colors(colors: Mapping[str, str] | None, targets: Iterable[str]) -> dict[str, str]:
    """The given colours, completed by the default assignment for any target they lack."""
    defaults = target_colors(targets)
    if colors is None:
        return defaults
    merged = dict(defaults)
    merged.update(colors)
    return merged
