"""An experiment's results, read back from the call log: `experiment_frame` (one tidy row per
unit) and `ExperimentResult` (what `run_experiment` returns).

`experiment_frame` needs nothing but the log, so results can be loaded in a later session
(or from a snapshot of a log another process is writing):

    frame = experiment_frame(CallLog("calls.duckdb"), "my-experiment-3fa2b1c0")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.experiments.estimate import CostEstimate
    from aigw_lab.store import CallLog

__all__ = ["ExperimentResult", "FRAME_COLUMNS", "experiment_frame", "summarise"]

#: The frame's columns before the ``score_<name>`` ones, in order.
FRAME_COLUMNS: tuple[str, ...] = (
    "experiment_id",
    "run_id",
    "item_id",
    "category",
    "difficulty",
    "target",
    "provider",
    "model",
    "repetition",
    "trace_id",
    "call_id",
    "status",
    "error_type",
    "attempts",
    "fell_back",
    "cache_status",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "simulated",
    "response_text",
)

# Per trace: its rows' totals, and its outcome row (highest attempt). Per unit: the latest
# ok trace, else the latest trace. Scores: the latest by each scorer of the outcome call.
# See docs/experiments.md ("How results are read") for the semantics spelled out.
_FRAME_SQL = """
WITH exp_calls AS (
    SELECT * FROM calls
    WHERE experiment_id = $experiment_id AND item_id IS NOT NULL AND target IS NOT NULL
), traces AS (
    SELECT trace_id,
           count(*) AS attempts,
           sum(cost_usd) AS cost_usd,
           bool_or(fallback_from IS NOT NULL) AS fell_back,
           min(epoch_ms("timestamp")) AS start_ms,
           max(epoch_ms("timestamp") + latency_ms) AS end_ms
    FROM exp_calls GROUP BY trace_id
), outcomes AS (
    SELECT c.*, t.attempts, t.cost_usd AS trace_cost_usd, t.fell_back,
           CASE WHEN t.attempts = 1 THEN c.latency_ms ELSE t.end_ms - t.start_ms END
               AS trace_latency_ms
    FROM exp_calls c JOIN traces t USING (trace_id)
    QUALIFY row_number() OVER (PARTITION BY c.trace_id ORDER BY c.attempt DESC) = 1
), units AS (
    SELECT * FROM outcomes
    QUALIFY row_number() OVER (
        PARTITION BY item_id, target, repetition
        ORDER BY (status = 'ok') DESC, "timestamp" DESC, call_id DESC) = 1
), latest_scores AS (
    SELECT call_id, scorer, value FROM scores
    WHERE experiment_id = $experiment_id
    QUALIFY row_number() OVER (
        PARTITION BY call_id, scorer ORDER BY created_at DESC, score_id DESC) = 1
), unit_scores AS (
    SELECT call_id{score_aggregates} FROM latest_scores GROUP BY call_id
)
SELECT u.experiment_id, u.run_id, u.item_id,
       json_extract_string(u.metadata_json, '$.aigw_experiment.category') AS category,
       json_extract_string(u.metadata_json, '$.aigw_experiment.difficulty') AS difficulty,
       u.target, u.provider_name AS provider, u.request_model AS model, u.repetition,
       u.trace_id, u.call_id, u.status, u.error_type, u.attempts, u.fell_back, u.cache_status,
       u.trace_latency_ms AS latency_ms, u.ttft_ms, u.input_tokens, u.output_tokens,
       u.trace_cost_usd AS cost_usd, u.simulated, u.response_text{score_columns}
FROM units u LEFT JOIN unit_scores s USING (call_id)
ORDER BY u.repetition, u.item_id, u.target
"""


def scorer_names(log: CallLog, experiment_id: str) -> list[str]:
    """The scorers with scores in this experiment, in order of their first score."""
    rows = log.execute(
        "SELECT scorer FROM scores WHERE experiment_id = ? GROUP BY scorer "
        "ORDER BY min(created_at), scorer",
        [experiment_id],
    )
    return [name for (name,) in rows if name is not None]


def experiment_frame(log: CallLog, experiment_id: str) -> pd.DataFrame:
    """One row per unit of the experiment (`FRAME_COLUMNS`, then ``score_<scorer>`` per
    scorer), from the call log alone.

    A unit's row is its result: its latest trace with an ok outcome, else its latest trace.
    ``attempts``, ``cost_usd``, ``fell_back`` and ``latency_ms`` are the logical call's
    (over all its attempts); scores are the latest by each scorer for the outcome call.
    Units never sent (a run stopped by its budget) have no row.
    """
    names = scorer_names(log, experiment_id)
    aggregates = "".join(
        f", max(value) FILTER (WHERE scorer = {_sql_string(n)}) AS {_identifier('score_' + n)}"
        for n in names
    )
    columns = "".join(f", s.{_identifier('score_' + n)}" for n in names)
    sql = _FRAME_SQL.format(score_aggregates=aggregates, score_columns=columns)
    return log.query(sql, {"experiment_id": experiment_id})


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per target: units ``n``, ``errors``, the mean of each score (None values left out),
    mean latency of the ok units and total cost. The full analysis, with confidence
    intervals, is `aigw_lab.analysis`'s job; this is the at-a-glance table."""
    import pandas as pd

    score_columns = [c for c in frame.columns if c.startswith("score_")]
    rows = []
    for target, group in frame.groupby("target", sort=False):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {
            "target": target,
            "n": len(group),
            "errors": int((group["status"] != "ok").sum()),
        }
        for column in score_columns:
            row[f"mean_{column.removeprefix('score_')}"] = group[column].astype(float).mean()
        row["mean_latency_ms"] = ok["latency_ms"].mean() if len(ok) else float("nan")
        row["cost_usd"] = group["cost_usd"].astype(float).sum(min_count=0)
        rows.append(row)
    columns = ["target", "n", "errors"]
    columns += [f"mean_{c.removeprefix('score_')}" for c in score_columns]
    columns += ["mean_latency_ms", "cost_usd"]
    return pd.DataFrame(rows, columns=columns).set_index("target")


@dataclass
class ExperimentResult:
    """What `run_experiment` returns: the run's outcome and, lazily, the experiment's results.

    ``status`` is ``completed``, ``stopped_budget``, ``failed`` or ``interrupted``; the
    counts are this run's (``skipped`` units were done before it started). `frame` reads the
    whole experiment (all runs) from the log.
    """

    experiment_id: str
    run_id: str
    status: str
    planned: int
    skipped: int
    completed: int
    failed: int
    cost_usd: float
    estimate: CostEstimate | None
    log: CallLog = field(repr=False)
    message: str | None = None
    _frame: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per unit (see `experiment_frame`); read once, then cached."""
        if self._frame is None:
            self._frame = experiment_frame(self.log, self.experiment_id)
        return self._frame

    def refresh(self) -> pd.DataFrame:
        """Read the frame again (after feedback scores were added, say)."""
        self._frame = None
        return self.frame

    def summary(self) -> pd.DataFrame:
        """Per target: n, errors, mean of each score, mean latency, total cost."""
        return summarise(self.frame)

    @property
    def ok(self) -> bool:
        """True when the run completed and every unit has an ok result."""
        return self.status == "completed" and self.failed == 0


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
