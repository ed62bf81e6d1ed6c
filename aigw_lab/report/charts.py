"""The report's figures: plotly figures from the analysis frames, drawn for a reader who
decides (cost axes in log scale with dollar ticks, hover text in the report's own number
formats, every name from the log escaped), and the rule for which ones an experiment gets.

Each figure is a plain dict, ``{"data": [trace, ...], "layout": {...}}``, in plotly's JSON
schema, written by `figure_json` with the standard library and drawn by the plotly.js the
page carries: the report needs no plotly package (that comes with the ``notebook`` extra).
tests/report/test_report_figures.py checks every figure against plotly's own validation.

These differ from `aigw_lab.notebook.figures` on purpose: a notebook explores one frame at a
time with linear axes; the report compares targets whose costs differ a hundredfold.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.pareto import pareto_frontier
from aigw_lab.palette import target_colors
from aigw_lab.report.format import PLOTLY_USD_TICKFORMAT, quality, usd

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COST_OVER_TIME_MIN_SECONDS", "Figure", "show_cost_over_time", "figure_json"]

#: A figure as plotly.js takes it: ``{"data": [...], "layout": {...}}``.
Figure = dict[str, Any]

#: A cost-over-time chart is drawn only for runs at least this long (seconds): a run of a
#: few seconds or minutes has no "over time" to show, just one step per target.
COST_OVER_TIME_MIN_SECONDS = 600

# No plotly template (a template adds ~10 kB of JSON per figure): a light grid by hand. The
# template is what the plotly package writes for ``template="none"``, so a page's figures
# read as they did when plotly built them.
_AXIS = {"gridcolor": "#e8e8e8", "zerolinecolor": "#ccc", "automargin": True}
_LAYOUT: dict[str, Any] = {
    "template": {"data": {"scatter": [{"type": "scatter"}]}},
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


def _layout(
    *, xaxis: Mapping[str, Any] | None = None, yaxis: Mapping[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The report's layout with ``kwargs`` on top and both axes gridded (``xaxis`` and
    ``yaxis`` add to the grid, e.g. a title or a log scale)."""
    return {
        **_LAYOUT,
        **kwargs,
        "xaxis": {**_AXIS, **(xaxis or {})},
        "yaxis": {**_AXIS, **(yaxis or {})},
    }


def _title(text: str) -> dict[str, Any]:
    return {"title": {"text": text}}


def _floats(values: Any) -> list[float | None]:
    """Numbers as a JSON list: floats, missing and infinite values as ``null`` (as plotly's
    JSON encoder writes them; plotly.js leaves a gap)."""
    out: list[float | None] = []
    for value in values:
        try:
            number = float(value)
        except TypeError:  # None or pandas.NA: missing (text that is no number still raises)
            number = math.nan
        out.append(number if math.isfinite(number) else None)
    return out


def quality_vs_cost(summary: pd.DataFrame, colors: Mapping[str, str]) -> Figure:
    """One point per target: mean quality (with its interval) against cost per call on a
    log axis; simulated targets as open diamonds; the Pareto frontier dashed."""
    plotted = summary[(summary["cost_per_call"] > 0) & summary["quality_mean"].notna()]
    data: list[dict[str, Any]] = []
    for row in plotted.sort_values("cost_per_call").itertuples(index=False):
        mean, low, high = row.quality_mean, row.quality_ci_low, row.quality_ci_high
        has_ci = low == low and high == high
        trace: dict[str, Any] = {
            "type": "scatter",
            "x": _floats([row.cost_per_call]),
            "y": _floats([mean]),
            "mode": "markers",
            "name": _name(row.target) + (" (simulated)" if row.simulated else ""),
            "marker": {
                "color": colors[row.target],
                "size": 13,
                "symbol": "diamond-open" if row.simulated else "circle",
                "line": {"width": 2, "color": colors[row.target]},
            },
            "customdata": [[usd(row.cost_per_call), quality(low), quality(high)]],
            "hovertemplate": (
                f"{_name(row.target)}<br>%{{customdata[0]}} per call<br>quality %{{y:.3f}}"
                + (" [%{customdata[1]}, %{customdata[2]}]" if has_ci else "")
                + "<extra></extra>"
            ),
        }
        if has_ci:
            trace["error_y"] = {
                "type": "data",
                "symmetric": False,
                "array": _floats([high - mean]),
                "arrayminus": _floats([mean - low]),
            }
        data.append(trace)
    if len(plotted) > 1:
        front = pareto_frontier(plotted)
        data.append(
            {
                "type": "scatter",
                "x": _floats(front["cost_per_call"]),
                "y": _floats(front["quality_mean"]),
                "mode": "lines",
                "name": "Pareto frontier",
                "line": {"color": "#444", "dash": "dash", "width": 1.5},
                "hoverinfo": "skip",
            }
        )
    layout = _layout(
        xaxis=_title("cost per call (log scale)") | _usd_axis(plotted["cost_per_call"]),
        yaxis=_title("quality, mean"),
    )
    return {"data": data, "layout": layout}


def quality_by_category(frame: pd.DataFrame, colors: Mapping[str, str]) -> Figure:
    """Grouped bars: per category, each target's mean quality with its interval."""
    data: list[dict[str, Any]] = []
    categories = sorted(frame["category"].unique())
    for target in sorted(frame["target"].unique()):
        rows = frame[frame["target"] == target].set_index("category").reindex(categories)
        means = rows["quality_mean"].to_numpy(dtype=float)
        data.append(
            {
                "type": "bar",
                "x": [_name(c) for c in categories],
                "y": _floats(means),
                "name": _name(target),
                "marker": {"color": colors[target]},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": _floats(rows["ci_high"].to_numpy(dtype=float) - means),
                    "arrayminus": _floats(means - rows["ci_low"].to_numpy(dtype=float)),
                },
                "customdata": [
                    [quality(lo), quality(hi), "" if n != n else int(n), str(method)]
                    for lo, hi, n, method in zip(
                        rows["ci_low"],
                        rows["ci_high"],
                        rows["items"],
                        rows["interval"],
                        strict=True,
                    )
                ],
                "hovertemplate": (
                    f"{_name(target)}<br>%{{x}}: %{{y:.3f}} [%{{customdata[0]}}, "
                    "%{customdata[1]}]<br>%{customdata[2]} items, %{customdata[3]} interval"
                    "<extra></extra>"
                ),
            }
        )
    layout = _layout(barmode="group", xaxis=_title("category"), yaxis=_title("quality, mean"))
    return {"data": data, "layout": layout}


def _spread_boxes(
    spread: pd.DataFrame, metric: str, colors: Mapping[str, str], hover: bool
) -> list[dict[str, Any]]:
    """Horizontal boxes from `unit_spread` statistics: the box from the first to the third
    quartile, the median, the mean dashed, whiskers from the 5th to the 95th percentile.
    Empty when the frame has no row for ``metric``."""
    rows = spread[spread["metric"] == metric].sort_values("target", ascending=False)
    data = []
    for row in rows.itertuples(index=False):
        name = _name(row.target)
        data.append(
            {
                "type": "box",
                "y": [name],
                "q1": _floats([row.q1]),
                "median": _floats([row.median]),
                "q3": _floats([row.q3]),
                "lowerfence": _floats([row.p05]),
                "upperfence": _floats([row.p95]),
                "mean": _floats([row.mean]),
                "name": name,
                "marker": {"color": colors[row.target]},
                "orientation": "h",
                "hoverinfo": "x" if hover else "skip",
            }
        )
    return data


def cost_per_call(spread: pd.DataFrame, colors: Mapping[str, str]) -> Figure | None:
    """Per target, the spread of what each unit cost (log axis; units that cost nothing,
    such as cache hits, cannot sit on it and are left out). None when nothing cost anything.
    """
    data = _spread_boxes(spread, "cost_usd", colors, hover=False)
    if not data:
        return None
    rows = spread[spread["metric"] == "cost_usd"]
    axis = _title("cost of each unit (log scale)") | _usd_axis(
        rows[["p05", "p95"]].to_numpy().ravel()
    )
    return {"data": data, "layout": _layout(showlegend=False, xaxis=axis)}


def latency(spread: pd.DataFrame, colors: Mapping[str, str]) -> Figure | None:
    """Per target, the spread of logical latency of the units that ended ok."""
    data = _spread_boxes(spread, "latency_ms", colors, hover=True)
    if not data:
        return None
    axis = _title("latency (ms), units that ended ok") | {"hoverformat": ",.0f"}
    return {"data": data, "layout": _layout(showlegend=False, xaxis=axis)}


def errors(frame: pd.DataFrame) -> Figure:
    """Stacked bars of failed attempts per target, one colour per error type."""
    targets = sorted(frame["target"].unique())
    palette = target_colors(frame["error_type"])
    data = []
    for error_type in sorted(palette):
        rows = frame[frame["error_type"] == error_type].set_index("target").reindex(targets)
        data.append(
            {
                "type": "bar",
                "x": [_name(t) for t in targets],
                "y": _floats(rows["failed_attempts"].fillna(0)),
                "name": _name(error_type),
                "marker": {"color": palette[error_type]},
                "customdata": _floats(rows["failed_units"].fillna(0)),
                "hovertemplate": (
                    f"%{{x}}<br>{_name(error_type)}: %{{y}} failed attempts, "
                    "%{customdata} units ended so<extra></extra>"
                ),
            }
        )
    layout = _layout(barmode="stack", xaxis=_title("target"), yaxis=_title("failed attempts"))
    return {"data": data, "layout": layout}


def cost_over_time(frame: pd.DataFrame, colors: Mapping[str, str]) -> Figure:
    """Cumulative cost per target over the run (log axis, dollar ticks)."""
    data = []
    for target in sorted(frame["target"].astype(str).unique()):
        rows = frame[frame["target"].astype(str) == target].sort_values("bucket")
        rows = rows[rows["cumulative_cost_usd"] > 0]
        trace: dict[str, Any] = {
            "type": "scatter",
            # ISO 8601 text, as plotly's encoder writes datetimes; plotly.js reads it as a date.
            "x": [_iso(t) for t in rows["bucket"]],
            "y": _floats(rows["cumulative_cost_usd"]),
            "mode": "lines+markers",
            "name": _name(target),
            "customdata": [[usd(v)] for v in rows["cumulative_cost_usd"]],
            "hovertemplate": f"{_name(target)}<br>%{{x}}<br>%{{customdata[0]}} so far"
            "<extra></extra>",
        }
        if colors.get(target) is not None:
            trace["line"] = {"color": colors[target]}
        data.append(trace)
    layout = _layout(
        xaxis=_title("time (UTC)"),
        yaxis=_title("cumulative cost (log scale)") | _usd_axis(frame["cumulative_cost_usd"]),
    )
    return {"data": data, "layout": layout}


def _iso(value: Any) -> str | None:
    if value is None or value != value:  # NaT
        return None
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def figure_json(figure: Figure) -> str:
    """The figure as JSON for ``Plotly.newPlot``: data and layout, compact. Builders give
    plain values; a number that is not finite still becomes ``null`` here, never the
    ``NaN`` that JSON (and the page's ``JSON.parse``) refuses."""
    return json.dumps(_plain(figure), separators=(",", ":"), allow_nan=False)


def _plain(value: Any) -> Any:
    """``value`` with every number a finite float or int (else None) and every sequence a
    list: what `json.dumps` writes without a custom encoder."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "tolist"):  # a numpy array or scalar the builders let through
        return _plain(value.tolist())
    raise TypeError(f"not a JSON value in a figure: {type(value).__name__}")
