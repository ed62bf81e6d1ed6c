"""One tidy row per unit of an experiment, read from the call log alone: `experiment_frame`.

A query over the ``calls`` and ``scores`` tables and nothing else, so results can be loaded
in a later session (or from a snapshot of a log another process is writing), and both the
experiments (`aigw_lab.experiments.results`, which re-exports these names) and the datasets
built from a logged experiment (`aigw_lab.datasets.from_log`) read it:

    frame = experiment_frame(CallLog("calls.duckdb"), "my-experiment-3fa2b1c0")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.store import CallLog

__all__ = ["FRAME_COLUMNS", "experiment_frame", "scorer_names"]

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


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
