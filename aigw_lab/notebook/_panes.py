"""Small building blocks shared by the notebook views: a pane that shows one plotly figure,
a filtered in-memory copy of a call log, and HTML tables.

A figure pane uses `plotly.graph_objects.FigureWidget` when plotly can build one (plotly 6+
needs the ``anywidget`` package for it), and otherwise an ``ipywidgets.Output`` that displays
the figure with plotly's own renderer. Both work in JupyterLab and VS Code without custom
JavaScript; the second just redraws the whole figure on every change.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["FigurePane", "filtered_copy", "frame_html", "json_path"]


class FigurePane:
    """One figure on screen; `show` replaces it. ``figure`` is the plain `go.Figure` last
    shown (what tests and callers read); ``widget`` is what goes into a layout."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.figure: go.Figure | None = None
        self._use_figure_widget = _figure_widget_available()
        self.widget = widgets.Box() if self._use_figure_widget else widgets.Output()

    def show(self, figure: go.Figure) -> None:
        import plotly.graph_objects as go

        self.figure = figure
        if self._use_figure_widget:
            # A new FigureWidget per redraw: resetting traces and layout in place leaves
            # stale layout keys (axis types, annotations) from the previous figure behind.
            self.widget.children = (go.FigureWidget(figure),)
            return
        from IPython.display import display

        self.widget.clear_output(wait=True)
        with self.widget:
            display(figure)


@functools.cache
def _figure_widget_available() -> bool:
    """Whether plotly can build a `FigureWidget` here (asked once per process)."""
    try:
        import plotly.graph_objects as go

        go.FigureWidget()
    except ImportError:
        return False
    return True


def json_path(key: str) -> str:
    """A DuckDB JSON path selecting the top-level ``key`` (quoted, so any key works)."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filtered_copy(read: Any, where: str, params: Sequence[Any] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory call log holding the ``calls`` rows matching ``where`` (SQL over the
    ``calls`` table, read with the `Reader` ``read``) and their scores, so the analysis
    functions, which filter by experiment only, can be run on any subset of calls.

    The copy gets the real schema (the store's migrations), so its column types are those
    of a log file whatever pandas made of the rows on the way.
    """
    import duckdb

    from aigw_lab.store.schema import apply_migrations

    calls = read(f"SELECT * FROM calls WHERE {where}", params)
    scores = read(
        f"SELECT * FROM scores WHERE call_id IN (SELECT call_id FROM calls WHERE {where})",
        params,
    )
    conn = duckdb.connect(":memory:")
    apply_migrations(conn, where="the dashboard's filtered copy")
    for table, frame in (("calls", calls), ("scores", scores)):
        if len(frame):
            conn.register("incoming", frame)
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
            conn.unregister("incoming")
    return conn


def frame_html(
    frame: pd.DataFrame,
    *,
    formats: Mapping[str, str] | None = None,
    empty: str = "Nothing to show.",
    max_rows: int = 200,
) -> str:
    """``frame`` as a compact HTML table; ``formats`` maps a column to a format spec such
    as ``".3f"`` or ``"$.6f"`` (a leading ``$`` is printed)."""
    if frame.empty:
        return f"<p><i>{html.escape(empty)}</i></p>"
    formats = dict(formats or {})
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.head(max_rows).itertuples(index=False):
        cells = "".join(
            f"<td>{html.escape(_cell(v, formats.get(c)))}</td>"
            for c, v in zip(frame.columns, values, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    more = len(frame) - max_rows
    tail = f"<p><i>... and {more} more rows</i></p>" if more > 0 else ""
    return (
        '<table style="border-collapse:collapse;font-size:12px" class="aigw-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{tail}"
    )


def _cell(value: Any, spec: str | None) -> str:
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if spec and isinstance(value, int | float) and not isinstance(value, bool):
        dollar = spec.startswith("$")
        text = format(value, spec.removeprefix("$"))
        return "$" + text if dollar else text
    return str(value)
