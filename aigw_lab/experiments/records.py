"""The experiment's bookkeeping in the call log: its ``experiments`` row, one
``experiment_runs`` row per execution, the ``scores`` rows, and the queries a resumed run
asks (which units are done, which lack scores, what was spent).

Everything here reads or writes through `CallLog`, so it works on any log, with or without a
runner around it.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab import __version__
from aigw_lab.errors import ConfigError
from aigw_lab.types import ChatResponse, Latency, Usage

if TYPE_CHECKING:
    from aigw_lab.experiments.experiment import Experiment
    from aigw_lab.store import CallLog

__all__ = [
    "DatasetChangedWarning",
    "DoneUnit",
    "code_version",
    "done_units",
    "record_experiment",
    "response_from_row",
    "spent_usd",
]

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


class DatasetChangedWarning(UserWarning):
    """A resumed experiment's dataset has items added or removed since its last run."""


@lru_cache(maxsize=1)
def code_version() -> str:
    """``aigw_lab.__version__``, plus ``+g<commit>`` (and ``.dirty``) when the package runs
    from a git checkout and git is installed; never fails."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__  # no git, or not a checkout (an installed wheel)
    if not commit:
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


# --- the experiments row --------------------------------------------------------------------


def record_experiment(log: CallLog, experiment: Experiment, version: str) -> str | None:
    """Insert the experiment's row, or check the existing one against this definition and
    update it. Returns a note about a dataset change (None when nothing changed).

    Raises `ConfigError` when the same experiment id now means something different for work
    already done: a target name pointing at another model or params, or an item id whose
    content changed. Items added or removed only warn (`DatasetChangedWarning`): the run
    covers the items present now, and done units of the others stay in the log.
    """
    config = experiment.config()
    rows = log.execute(
        "SELECT config_json FROM experiments WHERE experiment_id = ? ORDER BY created_at LIMIT 1",
        [experiment.id],
    )
    now = datetime.now(UTC)
    if not rows:
        log.insert("experiments", [_experiment_row(experiment, config, version, now)])
        return None
    previous = json.loads(rows[0][0]) if rows[0][0] else {}
    _check_targets(experiment, previous.get("targets") or [])
    note = _check_items(experiment, previous.get("item_hashes") or {}, config["item_hashes"])
    # Keep the hashes of items no longer present: if they come back, they are checked too.
    config["item_hashes"] = {**(previous.get("item_hashes") or {}), **config["item_hashes"]}
    known = {t["name"]: t for t in previous.get("targets") or []}
    known.update({t["name"]: t for t in config["targets"]})
    config["targets"] = list(known.values())
    log.execute(
        "UPDATE experiments SET name = ?, config_json = ?, dataset_name = ?, "
        "dataset_fingerprint = ?, targets_json = ?, repetitions = ?, code_version = ? "
        "WHERE experiment_id = ?",
        [
            experiment.name,
            _JSON.encode(config),
            experiment.dataset.name,
            config["dataset"]["fingerprint"],
            _JSON.encode(config["targets"]),
            experiment.repetitions,
            version,
            experiment.id,
        ],
    )
    return note


def _experiment_row(
    experiment: Experiment, config: Mapping[str, Any], version: str, now: datetime
) -> dict[str, Any]:
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "config_json": _JSON.encode(config),
        "dataset_name": experiment.dataset.name,
        "dataset_fingerprint": config["dataset"]["fingerprint"],
        "targets_json": _JSON.encode(config["targets"]),
        "repetitions": experiment.repetitions,
        "code_version": version,
        "created_at": now,
    }


def _check_targets(experiment: Experiment, previous: Sequence[Mapping[str, Any]]) -> None:
    before = {t.get("name"): t for t in previous}
    for now in experiment.target_records():
        old = before.get(now["name"])
        if old is None:
            continue  # a new target: its units are simply not done yet
        if old.get("model") != now["model"] or _canonical(old.get("params")) != _canonical(
            now["params"]
        ):
            raise ConfigError(
                f"experiment {experiment.id!r} already has a target named {now['name']!r} with "
                f"model {old.get('model')!r} and params {old.get('params') or {}}; now it is "
                f"{now['model']!r} with {now['params']}",
                hint="resuming would mix the two under one name: rename this target, or give "
                "the experiment a new name (or experiment_id)",
            )


def _check_items(
    experiment: Experiment, before: Mapping[str, str], now: Mapping[str, str]
) -> str | None:
    changed = sorted(i for i, h in now.items() if i in before and before[i] != h)
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise ConfigError(
            f"experiment {experiment.id!r}: {len(changed)} dataset item(s) changed content "
            f"under the same id since the last run ({shown})",
            hint="results of the old content would be reused for them: give changed items new "
            "ids, or give the experiment a new name (or experiment_id)",
        )
    added = len(set(now) - set(before))
    absent = len(set(before) - set(now))
    if not added and not absent:
        return None
    note = (
        f"experiment {experiment.id!r}: the dataset differs from the last run's "
        f"({added} item(s) added, {absent} not in this run); this run covers the "
        f"{len(now)} items present, and earlier results for the others stay in the log"
    )
    warnings.warn(note, DatasetChangedWarning, stacklevel=4)
    return note


def _canonical(params: Any) -> str:
    return json.dumps(params or {}, sort_keys=True, default=str)


# --- experiment_runs rows -------------------------------------------------------------------


@dataclass
class RunRecord:
    """The counters of one execution, written to its ``experiment_runs`` row."""

    run_id: str
    experiment_id: str
    started_at: datetime
    planned: int
    skipped: int
    estimated_cost_usd: float | None
    code_version: str
    status: str = "running"
    completed: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    message: str | None = None

    def insert(self, log: CallLog) -> None:
        log.insert(
            "experiment_runs",
            [
                {
                    "run_id": self.run_id,
                    "experiment_id": self.experiment_id,
                    "started_at": self.started_at,
                    "status": self.status,
                    "planned": self.planned,
                    "skipped": self.skipped,
                    "completed": self.completed,
                    "failed": self.failed,
                    "estimated_cost_usd": self.estimated_cost_usd,
                    "cost_usd": self.cost_usd,
                    "code_version": self.code_version,
                    "message": self.message,
                }
            ],
        )

    def finish(self, log: CallLog, status: str, message: str | None = None) -> None:
        self.status = status
        self.message = message
        log.execute(
            "UPDATE experiment_runs SET ended_at = ?, status = ?, completed = ?, failed = ?, "
            "cost_usd = ?, message = ? WHERE run_id = ?",
            [
                datetime.now(UTC),
                status,
                self.completed,
                self.failed,
                self.cost_usd,
                message,
                self.run_id,
            ],
        )


def close_abandoned_runs(log: CallLog, experiment_id: str) -> int:
    """Mark the experiment's runs still ``running`` as ``interrupted``: their process ended
    without recording it (SIGKILL, power loss). Only one process can write a DuckDB file,
    so a run that is starting holds the log and no other run can be live in it.

    Their counts were only in memory, so they are rebuilt from the log: units with an ok
    outcome (``completed``), units whose call failed (``failed``), the cost of their calls
    and of their judges' calls, and the time of their last logged call (``ended_at``)."""
    rows = log.execute(
        "SELECT run_id FROM experiment_runs WHERE experiment_id = ? AND status = 'running'",
        [experiment_id],
    )
    for (run_id,) in rows:
        completed, failed, cost, last = run_counts(log, run_id)
        log.execute(
            "UPDATE experiment_runs SET status = 'interrupted', message = ?, completed = ?, "
            "failed = ?, cost_usd = ?, ended_at = coalesce(?, ended_at) WHERE run_id = ?",
            [_ABANDONED, completed, failed, cost, last, run_id],
        )
    return len(rows)


def run_counts(log: CallLog, run_id: str) -> tuple[int, int, float, datetime | None]:
    """What the log says a run did: units with an ok outcome, units whose call failed, the
    cost of its calls and its judges' calls, and the time of its last call."""
    completed, failed, cost, last = log.execute(_RUN_COUNTS, {"run_id": run_id})[0]
    return int(completed), int(failed), float(cost), last


# A run's outcome rows (the highest attempt of each of its traces): ok ones are units done,
# the others units whose call failed. Cost: every row of the run, and its judges' calls.
_RUN_COUNTS = """
WITH outcomes AS (
    SELECT status FROM calls
    WHERE run_id = $run_id AND item_id IS NOT NULL AND target IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY attempt DESC) = 1
)
SELECT
    (SELECT count(*) FILTER (WHERE status = 'ok') FROM outcomes),
    (SELECT count(*) FILTER (WHERE status NOT IN ('ok', 'cancelled')) FROM outcomes),
    (SELECT coalesce(sum(cost_usd), 0) FROM calls WHERE run_id = $run_id OR trace_id IN (
        SELECT judge_trace_id FROM scores WHERE run_id = $run_id
        AND judge_trace_id IS NOT NULL)),
    (SELECT max("timestamp") FROM calls WHERE run_id = $run_id)
"""

_ABANDONED = "the process ended without recording the run's end (killed?); resumed later"


# --- resume queries -------------------------------------------------------------------------

# The outcome row of each of the experiment's traces (its highest attempt), then per unit the
# latest trace whose outcome is ok: the unit's result.
_DONE_UNITS = """
WITH outcomes AS (
    SELECT * FROM calls
    WHERE experiment_id = $experiment_id AND item_id IS NOT NULL AND target IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY attempt DESC) = 1
), done AS (
    SELECT * FROM outcomes WHERE status = 'ok'
    QUALIFY row_number() OVER (
        PARTITION BY item_id, target, repetition ORDER BY "timestamp" DESC, call_id DESC) = 1
), scored AS (
    SELECT call_id, list(DISTINCT scorer) AS scorers FROM scores
    WHERE experiment_id = $experiment_id GROUP BY call_id
)
SELECT d.item_id, d.target, d.repetition, d.call_id, d.trace_id, d.run_id,
       coalesce(s.scorers, []) AS scorers
FROM done d LEFT JOIN scored s USING (call_id)
"""

_ROWS_BY_CALL_ID = """
SELECT call_id, trace_id, provider_name, request_model, response_model, response_id,
       response_text, finish_reason, input_tokens, output_tokens, cache_read_input_tokens,
       cache_creation_input_tokens, reasoning_tokens, cost_usd, latency_ms, ttfb_ms, ttft_ms,
       upstream_ms, cache_status, attempt, simulated
FROM calls WHERE call_id IN (SELECT unnest($call_ids))
"""


@dataclass(frozen=True, slots=True)
class DoneUnit:
    """A unit with an ok outcome in the log: its result's call and the scorers it has."""

    call_id: str
    trace_id: str
    run_id: str | None
    scorers: frozenset[str]


def done_units(log: CallLog, experiment_id: str) -> dict[tuple[str, str, int], DoneUnit]:
    """Units of the experiment that are done, keyed ``(item_id, target, repetition)``."""
    rows = log.execute(_DONE_UNITS, {"experiment_id": experiment_id})
    return {
        (item_id, target, int(repetition)): DoneUnit(
            call_id, trace_id, run_id, frozenset(scorers or ())
        )
        for item_id, target, repetition, call_id, trace_id, run_id, scorers in rows
        if repetition is not None
    }


def logged_rows(log: CallLog, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The call rows with these ids, as dicts keyed by call_id."""
    if not call_ids:
        return {}
    cursor_rows = log.query(_ROWS_BY_CALL_ID, {"call_ids": list(call_ids)})
    return {row["call_id"]: row for row in cursor_rows.to_dict("records")}


def response_from_row(row: Mapping[str, Any]) -> ChatResponse:
    """A `ChatResponse` rebuilt from a logged ok row, for scoring a call already paid for."""

    def number(key: str) -> Any:
        value = row.get(key)
        return None if value is None or value != value else value  # NaN from pandas

    return ChatResponse(
        text=row.get("response_text") or "",
        finish_reason=row.get("finish_reason") or "unknown",
        usage=Usage(
            input_tokens=int(number("input_tokens") or 0),
            output_tokens=int(number("output_tokens") or 0),
            cache_read_tokens=int(number("cache_read_input_tokens") or 0),
            cache_write_tokens=int(number("cache_creation_input_tokens") or 0),
            reasoning_tokens=int(number("reasoning_tokens") or 0),
        ),
        provider=row.get("provider_name") or "",
        model=row.get("response_model") or row.get("request_model") or "",
        latency=Latency(
            total_ms=float(number("latency_ms") or 0.0),
            ttfb_ms=number("ttfb_ms"),
            ttft_ms=number("ttft_ms"),
            upstream_ms=number("upstream_ms"),
        ),
        cost_usd=number("cost_usd"),
        cache_status=row.get("cache_status") or "none",
        attempts=int(number("attempt") or 1),
        response_id=row.get("response_id"),
        simulated=bool(row.get("simulated")),
        call_id=row.get("call_id"),
    )


def spent_usd(log: CallLog, experiment_id: str) -> float:
    """What the experiment cost so far, over all its runs: its logged calls, and the calls
    of the LLM judges its scores name (``judge_trace_id``), each row counted once."""
    rows = log.execute(
        "SELECT coalesce(sum(cost_usd), 0) FROM calls WHERE experiment_id = $id OR trace_id IN "
        "(SELECT judge_trace_id FROM scores WHERE experiment_id = $id "
        "AND judge_trace_id IS NOT NULL)",
        {"id": experiment_id},
    )
    return float(rows[0][0]) if rows else 0.0


def trace_cost_usd(log: CallLog, trace_ids: Iterable[str]) -> float:
    """The summed cost of the logged calls of these traces (an LLM judge's own calls)."""
    ids = [t for t in trace_ids if t]
    if not ids:
        return 0.0
    rows = log.execute(
        "SELECT coalesce(sum(cost_usd), 0) FROM calls WHERE trace_id IN (SELECT unnest(?))",
        [ids],
    )
    return float(rows[0][0]) if rows else 0.0
