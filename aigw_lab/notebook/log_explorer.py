"""`LogExplorer`: search the call log from a notebook and read one call in full.

Like the other views it is thin (one SQL query per search, over the ``calls`` table) and
uses core ipywidgets only, so it works in JupyterLab and VS Code.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis import open_source
from aigw_lab.extras import require_notebook
from aigw_lab.notebook._panes import frame_html, readable_source

# A view module needs the notebook extra (plotly, ipywidgets): one clear error on import,
# not a ModuleNotFoundError at the first drawing. A check, not an import (find_spec).
require_notebook(__name__)

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.analysis._source import LogSource

__all__ = ["LogExplorer", "RESULT_COLUMNS"]

_ANY = "(any)"
_MODEL_SQL = "provider_name || '/' || request_model"
#: Columns of `LogExplorer.results`.
RESULT_COLUMNS = (
    "timestamp",
    "call_id",
    "trace_id",
    "attempt",
    "model",
    "status",
    "error_type",
    "cache_status",
    "latency_ms",
    "cost_usd",
    "experiment_id",
    "simulated",
    "prompt",
    "response",
)
_PREVIEW_CHARS = 80


class LogExplorer:
    """Find calls in the log ``source`` (a `CallLog`, DuckDB connection or log path) and
    show one call's request messages and response.

    Filters: ``search`` (words that must all appear, case-insensitive, in the request JSON
    or the response text), ``model`` (``provider/model``), ``status``, ``experiment``, and a
    time window ``since``/``until`` (``DatetimePicker``s: timezone-aware datetimes).
    Every filter change runs the search again; `results` is the frame listed (newest first,
    at most ``limit`` rows) and `select` shows one call in `detail`.
    """

    def __init__(self, source: LogSource, *, limit: int = 200) -> None:
        # lazy: ipywidgets (with IPython) loads in ~0.5 s; only a notebook needs it
        import ipywidgets as widgets

        self.source = source
        self.limit = limit
        #: The calls listed now (see `RESULT_COLUMNS`).
        self.results: pd.DataFrame | None = None
        #: The call shown in the detail pane, as a dict of its logged columns.
        self.selected: dict[str, Any] | None = None

        with open_source(source) as read:
            choices = read(
                f"SELECT DISTINCT 'model' AS kind, {_MODEL_SQL} AS value FROM calls "
                "UNION SELECT DISTINCT 'status', status FROM calls "
                "UNION SELECT DISTINCT 'experiment', experiment_id FROM calls "
                "WHERE experiment_id IS NOT NULL ORDER BY kind, value"
            )

        def options(kind: str) -> list[tuple[str, str | None]]:
            values = choices.loc[choices["kind"] == kind, "value"].dropna().astype(str)
            return [(_ANY, None)] + [(v, v) for v in values]

        self.search = widgets.Text(description="search", placeholder="words in prompt/response")
        self.model = widgets.Dropdown(options=options("model"), value=None, description="model")
        self.status = widgets.Dropdown(options=options("status"), value=None, description="status")
        self.experiment = widgets.Dropdown(
            options=options("experiment"), value=None, description="experiment"
        )
        self.since = widgets.DatetimePicker(description="since")
        self.until = widgets.DatetimePicker(description="until")
        self.calls = widgets.Select(
            options=(), rows=10, description="calls", layout=widgets.Layout(width="100%")
        )
        self.count = widgets.HTML()
        self.table = widgets.HTML()
        self.detail = widgets.HTML("<i>select a call to see its messages and response</i>")
        filters = widgets.VBox(
            [
                widgets.HBox([self.search, self.model, self.status]),
                widgets.HBox([self.experiment, self.since, self.until]),
            ]
        )
        self.widget = widgets.VBox([filters, self.count, self.calls, self.detail, self.table])
        for control in (
            self.search,
            self.model,
            self.status,
            self.experiment,
            self.since,
            self.until,
        ):
            control.observe(lambda _change: self.run(), names="value")
        self.calls.observe(self._on_select, names="value")
        self.run()

    def run(self) -> pd.DataFrame:
        """Search with the current filters, list the results and return them."""
        conditions, params = self._conditions()
        with open_source(readable_source(self.source)) as read:
            frame = read(
                f"""
                SELECT "timestamp", call_id, trace_id, attempt, {_MODEL_SQL} AS model,
                       status, error_type, cache_status, latency_ms, cost_usd, experiment_id,
                       simulated, request_json, response_text
                FROM calls
                WHERE {" AND ".join(conditions)}
                ORDER BY "timestamp" DESC, call_id
                LIMIT ?
                """,
                [*params, int(self.limit)],
            )
        frame["prompt"] = frame["request_json"].map(_last_user_text)
        frame["response"] = frame["response_text"].fillna("")
        self.results = frame.loc[:, list(RESULT_COLUMNS)]
        self.calls.options = [(_label(row), row.call_id) for row in self.results.itertuples()]
        self.count.value = f"<b>{len(frame)}</b> calls" + (
            f" (the newest {self.limit})" if len(frame) >= self.limit else ""
        )
        table = self.results.drop(columns=["call_id", "trace_id"]).copy()
        for column in ("prompt", "response"):
            table[column] = table[column].map(_preview)
        self.table.value = frame_html(
            table,
            formats={"latency_ms": ".0f", "cost_usd": "$.6f"},
            empty="No call matches these filters.",
        )
        return self.results

    def select(self, call_id: str) -> dict[str, Any]:
        """Show the call ``call_id`` (any call of the log) in the detail pane; return it."""
        with open_source(readable_source(self.source)) as read:
            rows = read("SELECT * FROM calls WHERE call_id = ?", [call_id])
        if rows.empty:
            raise KeyError(f"the call log has no call {call_id!r}")
        record = rows.iloc[0].to_dict()
        self.selected = record
        self.detail.value = _detail_html(record)
        return record

    def messages(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """The request messages of ``call_id`` (default: the selected call)."""
        record = self.select(call_id) if call_id is not None else self.selected
        if record is None:
            return []
        return _request_messages(record.get("request_json"))

    def _conditions(self) -> tuple[list[str], list[Any]]:
        conditions, params = ["TRUE"], []
        for word in self.search.value.split():
            like = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                "(request_json ILIKE ? ESCAPE '\\' OR response_text ILIKE ? ESCAPE '\\')"
            )
            params.extend([like, like])
        for column, control in (
            (_MODEL_SQL, self.model),
            ("status", self.status),
            ("experiment_id", self.experiment),
        ):
            if control.value is not None:
                conditions.append(f"{column} = ?")
                params.append(control.value)
        for operator, control in ((">=", self.since), ("<=", self.until)):
            if control.value is not None:
                conditions.append(f'"timestamp" {operator} ?')
                params.append(control.value)
        return conditions, params

    def _on_select(self, change: Any) -> None:
        if change["new"] is not None:
            self.select(change["new"])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _request_messages(request_json: Any) -> list[dict[str, Any]]:
    if not isinstance(request_json, str):
        return []
    try:
        data = json.loads(request_json)
    except ValueError:
        return []
    messages = data.get("messages") if isinstance(data, dict) else None
    return [m for m in messages or () if isinstance(m, dict)]


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else json.dumps(content)


def _last_user_text(request_json: Any) -> str:
    for message in reversed(_request_messages(request_json)):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _preview(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


def _label(row: Any) -> str:
    when = row.timestamp.strftime("%H:%M:%S") if hasattr(row.timestamp, "strftime") else ""
    return f"{when}  {row.model}  {row.status}  {_preview(row.prompt)}"


def _detail_html(record: dict[str, Any]) -> str:
    parts = [
        f"<p><b>{html.escape(str(record.get('provider_name')))}/"
        f"{html.escape(str(record.get('request_model')))}</b> - status "
        f"<code>{html.escape(str(record.get('status')))}</code>, attempt "
        f"{record.get('attempt')}, call <code>{html.escape(str(record.get('call_id')))}</code>"
        + (" (simulated)" if record.get("simulated") else "")
        + "</p>"
    ]
    system = _system_text(record.get("request_json"))
    if system:
        parts.append(_message_html("system", system))
    for message in _request_messages(record.get("request_json")):
        parts.append(_message_html(str(message.get("role")), _content_text(message.get("content"))))
    if record.get("status") == "ok":
        parts.append(_message_html("response", str(record.get("response_text") or "")))
    else:
        error = f"{record.get('error_type')}: {record.get('error_message')}"
        parts.append(_message_html("error", error))
    return "".join(parts)


def _system_text(request_json: Any) -> str:
    if not isinstance(request_json, str):
        return ""
    try:
        data = json.loads(request_json)
    except ValueError:
        return ""
    system = data.get("system") if isinstance(data, dict) else None
    return _content_text(system) if system else ""


def _message_html(role: str, text: str) -> str:
    return (
        f'<div style="margin:4px 0"><b>{html.escape(role)}</b>'
        f'<pre style="white-space:pre-wrap;margin:2px 0">{html.escape(text)}</pre></div>'
    )
