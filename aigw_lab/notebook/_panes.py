"""Small building blocks shared by the notebook views: a pane that shows one plotly figure,
a filtered in-memory copy of a call log, and HTML tables.

A figure pane is an ``ipywidgets.Output`` holding the figure as plotly's JSON mime type
(``application/vnd.plotly.v1+json``), which JupyterLab draws with the ``jupyterlab-plotly``
extension installed with the plotly package, and VS Code draws natively; both offline.
Not a `plotly.graph_objects.FigureWidget`: since plotly 6 each of those carries plotly.js
(about 5 MB) in its widget state, so every figure a view drew added 5 MB to a saved notebook.
The pane redraws the whole figure on every change, which the views did anyway.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aigw_lab.extras import require_notebook
from aigw_lab.store.calllog import CallLog
from aigw_lab.store.schema import apply_migrations

# A view module needs the notebook extra (plotly, ipywidgets): one clear error on import,
# not a ModuleNotFoundError at the first drawing. A check, not an import (find_spec).
require_notebook(__name__)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import plotly.graph_objects as go

__all__ = [
    "FigurePane",
    "figure_bundle",
    "filtered_copy",
    "frame_html",
    "json_path",
    "readable_source",
]


class FigurePane:
    """One figure on screen; `show` replaces it. ``figure`` is the plain `go.Figure` last
    shown (what tests and callers read); ``widget`` is what goes into a layout."""

    def __init__(self) -> None:
        # lazy: ipywidgets (with IPython) loads in ~0.5 s; only a notebook needs it
        import ipywidgets as widgets

        self.figure: go.Figure | None = None
        self.widget = widgets.Output()

    def show(self, figure: go.Figure) -> None:
        self.figure = figure
        # Set as the widget's outputs rather than displayed inside ``with self.widget``: the
        # pane then holds exactly this figure, whatever else the kernel is printing meanwhile
        # (output capture is per kernel message, not per pane).
        self.widget.outputs = (
            {"output_type": "display_data", "data": figure_bundle(figure), "metadata": {}},
        )


def figure_bundle(figure: go.Figure) -> dict[str, Any]:
    """``figure`` as a mime bundle: plotly's JSON mime type (the figure's data, no plotly.js)
    and a line of plain text for frontends that cannot draw it."""
    # lazy: plotly loads in ~0.1-0.2 s; only drawing a figure needs it
    import plotly.io as pio

    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(figure.to_dict())
    title = figure.layout.title.text if figure.layout.title.text else "untitled"
    bundle["text/plain"] = f"plotly figure: {title}"
    return bundle


def readable_source(source: Any) -> Any:
    """``source`` as a view can read it now: a `CallLog` closed since the view was made (a
    notebook's last cell closing its gateway) is read from its file, so the views still on
    screen keep answering their filters. Anything else is returned as it is."""
    if isinstance(source, CallLog) and source.closed and str(source.path) != ":memory:":
        return source.path
    return source


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
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

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
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if spec and isinstance(value, int | float) and not isinstance(value, bool):
        dollar = spec.startswith("$")
        text = format(value, spec.removeprefix("$"))
        return "$" + text if dollar else text
    return str(value)
