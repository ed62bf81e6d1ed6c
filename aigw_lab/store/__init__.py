"""The DuckDB call log: `CallLog` writes every gateway call as a row of table ``calls``;
`aigw_lab.store.queries` holds the analytics over it.

Names are imported lazily: the gateway's hot path imports `aigw_lab.store.records`, which
must not pull in DuckDB, pyarrow or pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "CallLog": "aigw_lab.store.calllog",
    "open_readonly_snapshot": "aigw_lab.store.calllog",
    "LogEngine": "aigw_lab.store.engine",
    "CallRecord": "aigw_lab.store.records",
    "CALL_COLUMNS": "aigw_lab.store.records",
    "CallLogWarning": "aigw_lab.store.writer",
    "LogHealth": "aigw_lab.store.dead_letter",
    "sanitize_record": "aigw_lab.store.sanitize",
    "MIGRATIONS": "aigw_lab.store.schema",
    "SCHEMA_VERSION": "aigw_lab.store.schema",
    "summary_by_model": "aigw_lab.store.queries",
    "errors_by_type": "aigw_lab.store.queries",
    "cost_by": "aigw_lab.store.queries",
    "record_feedback": "aigw_lab.store.scores",
    "write_scores": "aigw_lab.store.scores",
    "scores_frame": "aigw_lab.store.scores",
    "TeamLogSink": "aigw_lab.store.team_log",
    "TeamLogWarning": "aigw_lab.store.team_log",
    "TeamLogMirror": "aigw_lab.store.team_mirror",
    "SyncResult": "aigw_lab.store.team_mirror",
}

__all__ = [
    "CallLog",
    "open_readonly_snapshot",
    "LogEngine",
    "CallRecord",
    "CALL_COLUMNS",
    "CallLogWarning",
    "LogHealth",
    "sanitize_record",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "summary_by_model",
    "errors_by_type",
    "cost_by",
    "record_feedback",
    "write_scores",
    "scores_frame",
    "TeamLogSink",
    "TeamLogWarning",
    "TeamLogMirror",
    "SyncResult",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.store.calllog import CallLog, open_readonly_snapshot
    from aigw_lab.store.dead_letter import LogHealth
    from aigw_lab.store.engine import LogEngine
    from aigw_lab.store.queries import cost_by, errors_by_type, summary_by_model
    from aigw_lab.store.records import CALL_COLUMNS, CallRecord
    from aigw_lab.store.sanitize import sanitize_record
    from aigw_lab.store.schema import MIGRATIONS, SCHEMA_VERSION
    from aigw_lab.store.scores import record_feedback, scores_frame, write_scores
    from aigw_lab.store.team_log import TeamLogSink, TeamLogWarning
    from aigw_lab.store.team_mirror import SyncResult, TeamLogMirror
    from aigw_lab.store.writer import CallLogWarning
