"""Cheap checks of command-line options against a call log, run before a command's
expensive work, so a misspelt name is one message at once rather than a wrong result (or an
error) after the work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["check_output_file", "check_scorer_in_log", "log_to_read"]


def check_output_file(path: Path, flag: str) -> None:
    """A `ConfigError` when ``path`` (the value of option ``flag``) cannot be a file we
    write: it is a directory, or its nearest existing folder is not writable."""
    out = path.expanduser()
    if out.is_dir():
        raise ConfigError(
            f"{flag} {os.fspath(path)!r} is a directory", hint=f"pass {flag} a file name in it"
        )
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders in between are created when writing
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{flag} {os.fspath(path)!r}: cannot write in {os.fspath(folder)!r}",
            hint=f"choose a writable {flag} path",
        )


def log_to_read(db: Path | None, config: str | None) -> tuple[Path, Any]:
    """The call log a reading command (``report``) opens, and its `Encryption` or None:
    ``--db`` when given, else the ``--config`` file's ``[gateway] db``; the key from that
    config's ``[log] encryption_key_env``."""
    encryption = None
    if config is not None:
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.config import load_config

        parsed = load_config(config)
        encryption = parsed.log_options.get("encryption")
        if db is None and parsed.log and parsed.db not in (None, ":memory:"):
            db = Path(parsed.db)  # type: ignore[arg-type]
    if db is None:
        raise ConfigError(
            "no call log to read" + (f": {config} has no [gateway] db" if config else ""),
            hint="pass --db the .duckdb file your gateway or experiment logged to",
        )
    return db, encryption


def check_scorer_in_log(
    db: str | os.PathLike[str],
    scorer: str,
    experiment_id: str | None = None,
    *,
    encryption: Any = None,
) -> None:
    """A `ConfigError` listing the scorers there are when the log at ``db`` has no score by
    ``scorer`` (in ``experiment_id``, when given)."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.store import CallLog

    conn = CallLog.snapshot(db, encryption=encryption)
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
