"""Writing and reading the ``scores`` table: quality scores and feedback on logged calls.

Every score row is linked to one call (``call_id``, the outcome row of a logical call) and
carries that call's coordinates (trace, experiment, run, item, target), copied from the
``calls`` table when the writer does not give them, so analysis joins nothing.

    write_scores(log, response.call_id, [score])            # Scores from a Scorer
    record_feedback(gateway.log, response.call_id, thumbs=True, user="ana")
    scores_frame(log, experiment_id="exp-1", scorer="judge")   # a DataFrame
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.types import Score

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.store.calllog import CallLog

__all__ = [
    "UnknownCallError",
    "SCORE_COLUMNS",
    "score_rows",
    "call_coordinates",
    "write_scores",
    "record_feedback",
    "scores_frame",
]

#: Columns of the ``scores`` table, in table order.
SCORE_COLUMNS: tuple[str, ...] = (
    "score_id",
    "call_id",
    "trace_id",
    "experiment_id",
    "run_id",
    "item_id",
    "target",
    "scorer",
    "kind",
    "value",
    "label",
    "comment",
    "details_json",
    "judge_trace_id",
    "user_id",
    "created_at",
)
_COORDINATES = ("trace_id", "experiment_id", "run_id", "item_id", "target")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


class UnknownCallError(AigwError, LookupError):
    """A score or feedback names a call_id that is not in the call log."""

    error_type = "unknown_call"


def score_rows(
    scores: Iterable[Score],
    *,
    call_id: str,
    trace_id: str | None = None,
    experiment_id: str | None = None,
    run_id: str | None = None,
    item_id: str | None = None,
    target: str | None = None,
    user: str | None = None,
    created_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """``scores`` as rows of the ``scores`` table (dicts for `CallLog.insert`), each with a
    new uuid ``score_id``; nothing is looked up (see `write_scores` for that)."""
    created = created_at or datetime.now(UTC)
    return [
        {
            "score_id": uuid.uuid4().hex,
            "call_id": call_id,
            "trace_id": trace_id,
            "experiment_id": experiment_id,
            "run_id": run_id,
            "item_id": item_id,
            "target": target,
            "scorer": score.scorer,
            "kind": score.kind,
            "value": None if score.value is None else float(score.value),
            "label": score.label,
            "comment": score.comment,
            "details_json": _JSON.encode(dict(score.details)) if score.details else None,
            "judge_trace_id": score.judge_trace_id,
            "user_id": user,
            "created_at": created,
        }
        for score in scores
    ]


def call_coordinates(log: CallLog, call_id: str) -> dict[str, Any] | None:
    """The trace, experiment, run, item and target of the logged call ``call_id``, or None
    when the log has no such call."""
    rows = log.execute(
        "SELECT trace_id, experiment_id, run_id, item_id, target FROM calls "
        "WHERE call_id = ? LIMIT 1",
        [call_id],
    )
    return dict(zip(_COORDINATES, rows[0], strict=True)) if rows else None


def write_scores(
    log: CallLog,
    call_id: str,
    scores: Score | Iterable[Score],
    *,
    user: str | None = None,
    **coordinates: str | None,
) -> list[str]:
    """Insert ``scores`` of the call ``call_id``; return their score ids.

    ``coordinates`` (``trace_id``, ``experiment_id``, ``run_id``, ``item_id``,
    ``target``) are copied from the call's row in ``calls`` unless all are given; a given
    one wins over the logged one. Raises `UnknownCallError` when a lookup finds no call.
    """
    unknown = sorted(set(coordinates) - set(_COORDINATES))
    if unknown:
        raise ConfigError(
            f"write_scores got unknown coordinate(s): {', '.join(unknown)}",
            hint=f"use {', '.join(_COORDINATES)}",
        )
    batch = [scores] if isinstance(scores, Score) else list(scores)
    if not batch:
        return []
    found: Mapping[str, Any] = {}
    if any(coordinates.get(name) is None for name in _COORDINATES):
        found = _require_call(log, call_id)
    merged = {name: coordinates.get(name) or found.get(name) for name in _COORDINATES}
    rows = score_rows(batch, call_id=call_id, user=user, **merged)
    log.insert("scores", rows)
    return [row["score_id"] for row in rows]


def record_feedback(
    log: CallLog,
    call_id: str,
    *,
    thumbs: bool | None = None,
    score: float | None = None,
    comment: str | None = None,
    user: str | None = None,
    name: str = "feedback",
) -> str:
    """Record a person's (or a program's) verdict on a logged call; return its score id.

    ``thumbs`` True/False is stored as 1.0/0.0 with the label ``"up"``/``"down"``;
    ``score`` is any number (it wins when both are given; keep it on 0-1 to compare with
    thumbs). The row has ``kind = "feedback"`` and scorer ``name``. With a gateway:
    ``record_feedback(gateway.log, response.call_id, thumbs=True)``. Raises
    `UnknownCallError` for a call_id the log does not hold.
    """
    if thumbs is None and score is None:
        raise ConfigError(
            "record_feedback needs a verdict",
            hint="pass thumbs=True/False, or score=<number>",
        )
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise ConfigError(f"feedback score {score!r} is not a number", hint="pass e.g. score=0.8")
    if log is None:
        raise ConfigError(
            "record_feedback got no call log",
            hint="pass gateway.log of a gateway that logs (one created with log=None does not)",
        )
    value = float(score) if score is not None else (1.0 if thumbs else 0.0)
    label = None if thumbs is None else ("up" if thumbs else "down")
    feedback = Score(name, value, label=label, comment=comment, kind="feedback")
    found = _require_call(log, call_id)
    rows = score_rows([feedback], call_id=call_id, user=user, **found)
    log.insert("scores", rows)
    return str(rows[0]["score_id"])


def scores_frame(
    log: CallLog,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    kind: str | None = None,
    call_id: str | None = None,
) -> pd.DataFrame:
    """The ``scores`` rows matching every given filter, oldest first."""
    filters = {"experiment_id": experiment_id, "scorer": scorer, "kind": kind, "call_id": call_id}
    given = {column: value for column, value in filters.items() if value is not None}
    # Column names come from the fixed dict above, values travel as parameters.
    where = " AND ".join(f"{column} = ?" for column in given) or "TRUE"
    return log.query(
        f"SELECT * FROM scores WHERE {where} ORDER BY created_at, score_id",
        list(given.values()),
    )


def _require_call(log: CallLog, call_id: str) -> dict[str, Any]:
    found = call_coordinates(log, call_id)
    if found is None:
        raise UnknownCallError(
            f"no call with call_id {call_id!r} in {log!r}",
            hint="pass the call_id of a response from this gateway (response.call_id), and "
            "the log that gateway writes (gateway.log)",
        )
    return found
