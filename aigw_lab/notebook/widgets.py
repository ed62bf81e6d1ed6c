"""Interactive notebook views of experiments: `ComparisonDashboard` (filter an experiment,
see its summary table and figures) and `ExperimentProgressView` (a live view of a running
experiment, for ``run_experiment(..., on_progress=view.update)``).

They are thin: every number comes from `aigw_lab.analysis`, every figure from
`aigw_lab.notebook.figures`; a view only wires filters to those functions. They use core
ipywidgets and plotly only (no custom JavaScript), so they work in JupyterLab and VS Code.
Each has a ``widget`` to display (a notebook shows the view itself too) and plain methods
and attributes, so scripts and tests can drive it without a browser.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis import experiments_frame, open_source
from aigw_lab.errors import AigwError
from aigw_lab.extras import require_notebook
from aigw_lab.notebook import figures
from aigw_lab.notebook._panes import (
    FigurePane,
    filtered_copy,
    frame_html,
    json_path,
    readable_source,
)
from aigw_lab.palette import target_colors

# A view module needs the notebook extra (plotly, ipywidgets): one clear error on import,
# not a ModuleNotFoundError at the first drawing. A check, not an import (find_spec).
require_notebook(__name__)

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from aigw_lab.analysis._source import LogSource
    from aigw_lab.experiments.progress import ProgressSnapshot

__all__ = ["ComparisonDashboard", "ExperimentProgressView"]

_ALL_CALLS = "(all calls)"
_ANY = "(any)"
_CATEGORY_SQL = "json_extract_string(metadata_json, '$.aigw_experiment.category')"
#: Summary columns the dashboard's table shows, with their formats.
_TABLE_FORMATS: dict[str, str] = {
    "target": "",
    "units": "d",
    "error_rate": ".1%",
    "fallback_rate": ".1%",
    "latency_p50_ms": ".0f",
    "latency_p95_ms": ".0f",
    "cost_per_call": "$.6f",
    "total_cost": "$.4f",
    "quality_mean": ".3f",
    "quality_ci_low": ".3f",
    "quality_ci_high": ".3f",
    "simulated": "",
}


class ComparisonDashboard:
    """Compare the targets of an experiment in the call log ``source`` (a `CallLog`, a
    DuckDB connection or a log file's path).

    Filters: the experiment (default ``experiment_id``, else the latest one; or all calls),
    the targets to show (none selected = all), the dataset category of the items, and tags
    (``key=value``; a call must have every selected tag). Any change re-queries the log and
    redraws `summary` (`aigw_lab.analysis.target_summary`, shown as a table) and `figures`
    (quality vs cost, cost per call, latency, errors). ``scorer`` picks the quality scorer
    (default: the one with the most scores); ``n_boot`` the bootstrap resamples.
    """

    def __init__(
        self,
        source: LogSource,
        *,
        experiment_id: str | None = None,
        scorer: str | None = None,
        n_boot: int = 500,
        max_points_per_target: int = 2000,
    ) -> None:
        # lazy: ipywidgets (with IPython) loads in ~0.5 s; only a notebook needs it
        import ipywidgets as widgets

        self.source = source
        self.scorer = scorer
        self.n_boot = n_boot
        self.max_points_per_target = max_points_per_target
        #: The summary shown now (one row per target that passes the filters).
        self.summary: pd.DataFrame | None = None
        #: The per-unit frame behind the latency figure, and the error table, shown now.
        self.units: pd.DataFrame | None = None
        self.errors: pd.DataFrame | None = None
        self._panes = {
            name: FigurePane() for name in ("quality_vs_cost", "cost", "latency", "errors")
        }
        self._quiet = False
        self._colors: dict[str, str] = {}

        experiments = experiments_frame(source)
        ids = [str(e) for e in experiments["experiment_id"]]
        if experiment_id is not None and experiment_id not in ids:
            raise ValueError(
                f"the call log has no experiment {experiment_id!r}; "
                f"it has: {', '.join(ids) or '(none)'}"
            )
        options: list[tuple[str, str | None]] = [(_ALL_CALLS, None)]
        for row in experiments.itertuples(index=False):
            name = row.name if isinstance(row.name, str) and row.name else None
            label = f"{name} ({row.experiment_id})" if name else str(row.experiment_id)
            options.append((label, str(row.experiment_id)))
        chosen = experiment_id if experiment_id is not None else (ids[0] if ids else None)
        self.experiment = widgets.Dropdown(options=options, value=chosen, description="experiment")
        self.targets = widgets.SelectMultiple(options=(), description="targets", rows=5)
        self.category = widgets.Dropdown(options=[(_ANY, None)], value=None, description="category")
        self.tags = widgets.SelectMultiple(options=(), description="tags", rows=4)
        self.status = widgets.HTML()
        self.table = widgets.HTML()
        tabs = widgets.Tab(children=[p.widget for p in self._panes.values()])
        for i, title in enumerate(("Quality vs cost", "Cost", "Latency", "Errors")):
            tabs.set_title(i, title)
        filters = widgets.HBox(
            [widgets.VBox([self.experiment, self.category]), self.targets, self.tags]
        )
        self.widget = widgets.VBox([filters, self.status, self.table, tabs])

        self.experiment.observe(self._on_experiment, names="value")
        for control in (self.targets, self.category, self.tags):
            control.observe(self._on_filter, names="value")
        self._load_options()
        self.refresh()

    # --- what is shown ----------------------------------------------------------------------

    @property
    def figures(self) -> dict[str, go.Figure]:
        """The figures shown now, by name: quality_vs_cost, cost, latency, errors."""
        return {name: pane.figure for name, pane in self._panes.items() if pane.figure}

    @property
    def shown_targets(self) -> list[str]:
        """The targets in the table now."""
        return [] if self.summary is None else self.summary["target"].tolist()

    def refresh(self) -> None:
        """Query the log with the current filters and redraw the table and figures."""
        # lazy: looked up per call, so a test can replace one on aigw_lab.analysis
        # (tests/notebook/test_widgets.py makes target_summary fail)
        from aigw_lab.analysis import errors_by_target, target_summary, unit_frame

        experiment_id = self.experiment.value
        source, owned = self._filtered_source()
        try:
            summary = target_summary(
                source, experiment_id=experiment_id, scorer=self.scorer, n_boot=self.n_boot
            )
            units = unit_frame(
                source,
                experiment_id,
                scorer=summary.attrs.get("scorer"),
                max_per_target=self.max_points_per_target,
            )
            errors = errors_by_target(source, experiment_id=experiment_id)
        finally:
            if owned:
                source.close()
        chosen = set(self.targets.value)
        if chosen:
            attrs = dict(summary.attrs)
            summary = summary[summary["target"].isin(chosen)].reset_index(drop=True)
            summary.attrs.update(attrs)
            units = units[units["target"].isin(chosen)]
            errors = errors[errors["target"].isin(chosen)]
        self.summary, self.units, self.errors = summary, units, errors

        scorer = summary.attrs.get("scorer")
        columns = [c for c in _TABLE_FORMATS if c in summary.columns]
        self.table.value = frame_html(
            summary[columns], formats=_TABLE_FORMATS, empty="No calls match these filters."
        )
        self.status.value = (
            f"<b>{len(summary)}</b> targets, <b>{int(summary['units'].sum())}</b> units; "
            f"quality = mean of scorer <code>{html.escape(str(scorer))}</code> "
            "with a 95% bootstrap interval over items. Simulated targets say so in the "
            "<code>simulated</code> column."
        )
        colors = self._colors
        self._panes["quality_vs_cost"].show(figures.quality_vs_cost(summary, colors=colors))
        self._panes["cost"].show(figures.cost_bars(summary, colors=colors))
        self._panes["latency"].show(figures.latency_distribution(units, colors=colors))
        self._panes["errors"].show(figures.error_breakdown(errors))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- filters --------------------------------------------------------------------------

    def _filtered_source(self) -> tuple[Any, bool]:
        """The source to analyse: the log itself, or (with a category or tag filter) an
        in-memory copy of the matching calls, which the caller must close."""
        source = readable_source(self.source)
        if self.category.value is None and not self.tags.value:
            return source, False
        conditions, params = self._conditions()
        with open_source(source) as read:
            return filtered_copy(read, " AND ".join(conditions), params), True

    def _conditions(self) -> tuple[list[str], list[Any]]:
        """SQL conditions on ``calls`` (and their parameters) for the current filters."""
        conditions, params = ["TRUE"], []
        if self.experiment.value is not None:
            conditions.append("experiment_id = ?")
            params.append(self.experiment.value)
        if self.category.value is not None:
            conditions.append(f"{_CATEGORY_SQL} = ?")
            params.append(self.category.value)
        for tag in self.tags.value:
            key, _, value = tag.partition("=")
            conditions.append("json_extract_string(tags_json, ?) = ?")
            params.extend([json_path(key), value])
        return conditions, params

    def _load_options(self) -> None:
        """Fill the target, category and tag choices from the chosen experiment."""
        where, params = "TRUE", []
        if self.experiment.value is not None:
            where, params = "experiment_id = ?", [self.experiment.value]
        with open_source(readable_source(self.source)) as read:
            targets = read(
                "SELECT DISTINCT coalesce(target, provider_name || '/' || request_model) AS t "
                f"FROM calls WHERE {where} ORDER BY t",
                params,
            )["t"].tolist()
            categories = read(
                f"SELECT DISTINCT {_CATEGORY_SQL} AS c FROM calls WHERE {where} "
                "AND c IS NOT NULL ORDER BY c",
                params,
            )["c"].tolist()
            tag_texts = read(
                f"SELECT DISTINCT tags_json FROM calls WHERE {where} AND tags_json IS NOT NULL "
                "LIMIT 1000",
                params,
            )["tags_json"].tolist()
        with self._quietly():
            self._colors = target_colors(targets)
            self.targets.options = targets
            self.targets.value = ()
            self.category.options = [(_ANY, None)] + [(c, c) for c in categories]
            self.category.value = None
            self.tags.options = _tag_options(tag_texts)
            self.tags.value = ()

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change several filters without redrawing after each one."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _on_experiment(self, change: Any) -> None:
        if self._quiet:
            return
        self._load_options()
        self._refresh_or_report()

    def _on_filter(self, change: Any) -> None:
        if not self._quiet:
            self._refresh_or_report()

    def _refresh_or_report(self) -> None:
        # Called by a widget event: an exception would only reach the browser's console,
        # so a failed query is shown where the user is looking.
        try:
            self.refresh()
        except AigwError as exc:
            self.status.value = f"<b>Could not query the log:</b> {html.escape(str(exc))}"


def _tag_options(tag_texts: Sequence[str]) -> list[str]:
    pairs: set[str] = set()
    for text in tag_texts:
        try:
            tags = json.loads(text)
        except (TypeError, ValueError):
            continue  # a malformed tags_json is the log's problem, not a filter option
        if isinstance(tags, dict):
            pairs.update(f"{k}={v}" for k, v in tags.items())
    return sorted(pairs)


class ExperimentProgressView:
    """A live view of a running experiment: a progress bar, the counts per target, what the
    run has spent and how many units failed.

        view = ExperimentProgressView()
        display(view)
        run_experiment(gateway, experiment, progress=False, on_progress=view.update)

    `update` may be called from the runner's thread: it only stores the snapshot under a
    lock and redraws at most every ``min_interval`` seconds (the final snapshot, whose
    status is not ``"running"``, always redraws). ``clock`` is injectable for tests.
    """

    def __init__(
        self, *, min_interval: float = 0.2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # lazy: ipywidgets (with IPython) loads in ~0.5 s; only a notebook needs it
        import ipywidgets as widgets

        self.min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_draw: float | None = None
        #: The latest snapshot received, drawn or not.
        self.snapshot: ProgressSnapshot | None = None
        #: How many times the view was redrawn (tests check the throttling with it).
        self.draws = 0
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.headline = widgets.HTML("<i>waiting for the first unit...</i>")
        self.table = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.bar, self.headline]), self.table])

    def update(self, snapshot: ProgressSnapshot) -> None:
        """Take a `ProgressSnapshot` (the ``on_progress`` callback of `run_experiment`)."""
        with self._lock:
            self.snapshot = snapshot
            now = self._clock()
            final = snapshot.status != "running"
            due = self._last_draw is None or now - self._last_draw >= self.min_interval
            if not (final or due):
                return
            self._last_draw = now
            self._draw(snapshot)

    def flush(self) -> None:
        """Draw the latest snapshot now, even if the last draw was recent."""
        with self._lock:
            if self.snapshot is not None:
                self._last_draw = self._clock()
                self._draw(self.snapshot)

    def _draw(self, snapshot: ProgressSnapshot) -> None:
        self.draws += 1
        self.bar.value = snapshot.fraction
        self.bar.bar_style = _bar_style(snapshot)
        skipped = f", {snapshot.skipped} done before" if snapshot.skipped else ""
        self.headline.value = (
            f"<b>{snapshot.done}/{snapshot.total}</b> units{skipped}; "
            f"<b>{snapshot.errors}</b> errors; <b>${snapshot.cost_usd:.4f}</b> spent; "
            f"{snapshot.elapsed_s:.1f} s; status <code>{html.escape(snapshot.status)}</code>"
        )
        # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
        import pandas as pd

        rows = pd.DataFrame(
            [
                {
                    "target": target,
                    "done": p.done,
                    "total": p.total,
                    "errors": p.errors,
                    "cost_usd": p.cost_usd,
                }
                for target, p in sorted(snapshot.per_target.items())
            ],
            columns=["target", "done", "total", "errors", "cost_usd"],
        )
        self.table.value = frame_html(rows, formats={"cost_usd": "$.5f"}, empty="No targets.")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _bar_style(snapshot: ProgressSnapshot) -> str:
    if snapshot.status == "running":
        return "warning" if snapshot.errors else "info"
    if snapshot.status == "completed" and not snapshot.errors:
        return "success"
    return "danger" if snapshot.status in ("failed", "interrupted") else "warning"
