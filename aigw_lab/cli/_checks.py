"""Cheap checks of command-line options against a call log, run before a command's
expensive work, so a misspelt name is one message at once rather than a wrong result (or an
error) after the work."""

from __future__ import annotations

import os

from aigw_lab.errors import ConfigError

__all__ = ["check_scorer_in_log"]


def check_scorer_in_log(
    db: str | os.PathLike[str], scorer: str, experiment_id: str | None = None
) -> None:
    """A `ConfigError` listing the scorers there are when the log at ``db`` has no score by
    ``scorer`` (in ``experiment_id``, when given)."""
    from aigw_lab.store import CallLog

    conn = CallLog.snapshot(db)
    try:
        rows = conn.execute(
            "SELECT DISTINCT scorer FROM scores WHERE ? IS NULL OR experiment_id = ? "
            "ORDER BY scorer",
            [experiment_id, experiment_id],
        ).fetchall()
    finally:
        conn.close()
    scorers = [str(row[0]) for row in rows if row[0] is not None]
    if scorer in scorers:
        return
    where = f" of experiment {experiment_id!r}" if experiment_id else ""
    shown = ", ".join(repr(s) for s in scorers[:20]) + (", ..." if len(scorers) > 20 else "")
    raise ConfigError(
        f"--scorer {scorer!r}: no scores by that scorer in {os.fspath(db)}{where}",
        hint=f"choose one of: {shown}" if scorers else "drop --scorer: the log has no scores",
    )
