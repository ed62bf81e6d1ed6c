"""What was run: the experiment's definition as the log recorded it (``experiments.config_json``
and its ``experiment_runs`` rows), written as the report's opening section.

A definition written before the log recorded provenance (or an experiment built in Python
without it) lacks the sample size, seed and categories it was drawn with; the section says
"not recorded" rather than guess.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aigw_lab.report.format import usd

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.analysis._source import Reader

__all__ = ["ExperimentRecord", "read_record", "description_html"]


@dataclass(frozen=True)
class ExperimentRecord:
    """The experiment's recorded definition (empty values when the log has none) and runs."""

    experiment_id: str | None
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    dataset_name: str | None = None
    repetitions: int | None = None
    code_version: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def read_record(read: Reader, experiment_id: str | None) -> ExperimentRecord:
    """The log's ``experiments`` row (the latest definition) and runs of ``experiment_id``."""
    if experiment_id is None:
        return ExperimentRecord(None)
    rows = read(
        "SELECT name, config_json, dataset_name, repetitions, code_version FROM experiments "
        "WHERE experiment_id = ? ORDER BY created_at DESC LIMIT 1",
        [experiment_id],
    )
    runs = read(
        "SELECT run_id, started_at, ended_at, status, planned, skipped, completed, failed, "
        "estimated_cost_usd, cost_usd, code_version, message FROM experiment_runs "
        "WHERE experiment_id = ? ORDER BY started_at",
        [experiment_id],
    )
    run_rows = runs.to_dict("records")
    if rows.empty:
        return ExperimentRecord(experiment_id, runs=run_rows)
    row = rows.iloc[0]
    try:
        config = json.loads(row["config_json"]) if isinstance(row["config_json"], str) else {}
    except ValueError:
        config = {}
    repetitions = None if _missing(row["repetitions"]) else int(row["repetitions"])
    return ExperimentRecord(
        experiment_id,
        name=_text(row["name"]),
        config=config if isinstance(config, dict) else {},
        dataset_name=_text(row["dataset_name"]),
        repetitions=repetitions,
        code_version=_text(row["code_version"]),
        runs=run_rows,
    )


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA (a NULL read through pandas)."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value
        return False


def _text(value: Any) -> str | None:
    return None if _missing(value) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def description_html(
    record: ExperimentRecord,
    *,
    scorer: str | None,
    categories: pd.Series | None,
    items: int,
    calls: int,
    first_call: Any,
    last_call: Any,
    simulated_targets: list[str],
) -> str:
    """The "What was run" section: facts table, targets table and runs table."""
    esc = html.escape
    if record.experiment_id is None:
        return (
            '<p class="note" id="experiment-facts">No experiment: every call in the log, '
            f"{calls:,} of them ({esc(_span(first_call, last_call))}), each its own unit, "
            "grouped by provider/model.</p>"
        )
    config = record.config
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    provenance = config.get("provenance") if isinstance(config.get("provenance"), dict) else {}
    facts: list[tuple[str, str]] = []
    facts.append(
        ("experiment", f"{record.name or '(no name recorded)'} (id {record.experiment_id})")
    )
    dataset_name = dataset.get("name") or record.dataset_name
    source = provenance.get("dataset") or dataset.get("source")
    facts.append(
        (
            "dataset",
            (dataset_name or "(not recorded)")
            + (f", from {source}" if source and source != dataset_name else ""),
        )
    )
    recorded_n = dataset.get("items")
    facts.append(
        (
            "items (n)",
            f"{items:,} in the log"
            + (f", {int(recorded_n):,} in the definition" if isinstance(recorded_n, int) else ""),
        )
    )
    facts.append(("selection", _selection(provenance)))
    if categories is not None and len(categories):
        counts = categories.value_counts().sort_index()
        facts.append(
            ("categories", ", ".join(f"{name} ({count})" for name, count in counts.items()))
        )
    if dataset.get("fingerprint"):
        facts.append(("dataset fingerprint", f"sha256 {str(dataset['fingerprint'])[:16]}..."))
    scorers = config.get("scorers")
    facts.append(
        (
            "scorers",
            (", ".join(map(str, scorers)) if scorers else "(none recorded)")
            + f"; quality in this report: {scorer or 'no scores'}",
        )
    )
    repetitions = config.get("repetitions", record.repetitions)
    facts.append(("repetitions", str(repetitions) if repetitions is not None else "(not recorded)"))
    if config.get("params"):
        facts.append(("params every target sends", _json(config["params"])))
    for key, label in (("concurrency", "concurrency"), ("budget_usd", "budget")):
        if config.get(key) is not None:
            value = config[key]
            facts.append((label, usd(value) if key == "budget_usd" else str(value)))
    gateway = _gateway(provenance, simulated_targets)
    if gateway:
        facts.append(("gateway", gateway))
    if record.code_version:
        facts.append(("code version", record.code_version))
    facts.append(("calls", f"{calls:,}, {_span(first_call, last_call)}"))
    parts = ['<table class="table facts" id="experiment-facts">']
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts]
    parts.append("</table>")
    parts.append(_targets_table(config, simulated_targets))
    parts.append(_runs_table(record.runs))
    return "\n".join(parts)


def _selection(provenance: dict[str, Any]) -> str:
    if not provenance:
        return "sample size, seed and categories not recorded (not run from an experiment file)"
    bits = []
    if provenance.get("categories"):
        bits.append("categories " + ", ".join(map(str, provenance["categories"])))
    if "sample" in provenance:
        bits.append(f"a sample of {provenance['sample']} items, seed {provenance.get('seed', 0)}")
    if provenance.get("max_items"):
        bits.append(f"the first {provenance['max_items']} (--max-items)")
    where = f" (from {provenance['spec']})" if provenance.get("spec") else ""
    return ("; ".join(bits) if bits else "every item of the dataset") + where


def _gateway(provenance: dict[str, Any], simulated_targets: list[str]) -> str:
    bits = []
    if provenance.get("providers"):
        bits.append("providers " + ", ".join(map(str, provenance["providers"])))
    in_file = provenance.get("gateway_in_file")
    if isinstance(in_file, dict) and "simulated" in in_file:
        options = in_file["simulated"] or {}
        bits.append(
            "the simulated fleet, seed "
            + str(options.get("seed", 0))
            + (f", time_scale {options['time_scale']}" if "time_scale" in options else "")
            + (f", faults {_json(options['faults'])}" if options.get("faults") else "")
        )
    elif isinstance(in_file, dict) and in_file.get("config"):
        bits.append(f"config file {in_file['config']}")
    if simulated_targets and not bits:
        bits.append("simulated targets: " + ", ".join(simulated_targets))
    return "; ".join(bits)


def _span(first: Any, last: Any) -> str:
    try:
        seconds = (last - first).total_seconds()
        return f"{first:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S} UTC ({_duration(seconds)})"
    except (TypeError, AttributeError, ValueError):
        return "time span unknown"


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN: a run that never recorded its end
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _targets_table(config: dict[str, Any], simulated_targets: list[str]) -> str:
    targets = config.get("targets")
    if not isinstance(targets, list) or not targets:
        return '<p class="note">The log has no target definitions for this experiment.</p>'
    esc = html.escape
    rows = [
        '<table class="table" id="targets-table"><tr><th>target</th><th>model</th>'
        "<th>params</th><th>simulated</th></tr>"
    ]
    for target in targets:
        if not isinstance(target, dict):
            continue
        name = str(target.get("name", ""))
        rows.append(
            f'<tr><td>{esc(name)}</td><td class="text">{esc(str(target.get("model", "")))}</td>'
            f'<td class="text"><code>{esc(_json(target.get("params") or {}))}</code></td>'
            f"<td>{'yes' if name in simulated_targets else ''}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _runs_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return '<p class="note">No runs recorded.</p>'
    esc = html.escape
    head = (
        "run", "started (UTC)", "took", "status", "done", "failed", "skipped", "cost",
        "estimated", "code version",
    )  # fmt: skip
    rows = ['<table class="table" id="runs-table"><tr>']
    rows += [f"<th>{esc(h)}</th>" for h in head]
    rows.append("</tr>")
    for run in runs:
        started, ended = run.get("started_at"), run.get("ended_at")
        try:
            took = _duration((ended - started).total_seconds())
        except (TypeError, AttributeError, ValueError):
            took = ""
        try:
            began = f"{started:%Y-%m-%d %H:%M:%S}"
        except (TypeError, ValueError):  # None or NaT
            began = ""
        cells = (
            run.get("run_id"),
            began,
            took,
            run.get("status"),
            _int(run.get("completed")),
            _int(run.get("failed")),
            _int(run.get("skipped")),
            usd(run.get("cost_usd")),
            usd(run.get("estimated_cost_usd")),
            run.get("code_version"),
        )
        rows.append(
            "<tr>"
            + "".join(f"<td>{esc('' if c is None else str(c))}</td>" for c in cells)
            + "</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _int(value: Any) -> str:
    return "" if _missing(value) else f"{int(value):,}"
