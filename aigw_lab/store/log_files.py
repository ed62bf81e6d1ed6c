"""Opening a call log's DuckDB file for writing, and read-only snapshots of one another
process is writing: the file-level half of `aigw_lab.store.calllog.CallLog` (owner-only
creation, encryption, the error a user sees for each way opening fails).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store import files
from aigw_lab.store.encryption import database_creator, open_encrypted

if TYPE_CHECKING:
    import duckdb

    from aigw_lab.store.encryption import Encryption
    from aigw_lab.store.engine import LogEngine

__all__ = ["connect_file", "open_error", "open_readonly_snapshot", "tightening_wal"]

# DuckDB's default memory limit is 80% of RAM, and it keeps every block it wrote cached up to
# that limit: a gateway logging for days would grow towards most of the machine's memory.
# Capped, the log's footprint stays flat (DuckDB spills large queries to disk instead).
# Set after connecting rather than as connect() config, so that other duckdb.connect() calls
# on the same file in this process still work (DuckDB refuses differing connect configs).
_DEFAULT_MEMORY_LIMIT = "256MB"


def open_readonly_snapshot(
    path: str | os.PathLike[str], *, encryption: Encryption | None = None
) -> duckdb.DuckDBPyConnection:
    """Copy the log at ``path`` (with its write-ahead log) to a temporary file and open the
    copy read-only: for analysing a log that another process is writing.

    The copy shows the rows that process had committed when it was taken. It is deleted
    as soon as it is open (on systems that allow that), so nothing is left behind. An
    encrypted log needs its ``encryption`` (the copy stays encrypted on disk).
    """
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    source = Path(path).expanduser()
    if not source.is_file():
        raise StoreError(
            f"no call log at {source}", hint="pass the path of an existing .duckdb file"
        )
    folder = Path(tempfile.mkdtemp(prefix="aigw-snapshot-"))
    try:
        copy = files.copy_database(source, folder)
        if encryption is not None:
            what = f"a snapshot of the call log {source}"
            conn: Any = open_encrypted(copy, encryption, what=what, read_only=True)
        else:
            conn = duckdb.connect(str(copy), read_only=True)
    except StoreError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except (OSError, duckdb.Error) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if "without a key" in str(exc):
            raise StoreError(
                f"cannot open a snapshot of {source}: the log is encrypted",
                hint="pass encryption=Encryption(key) with the key it was written with "
                "(aigw-lab report: --config the gateway config whose [log] "
                "encryption_key_env holds it)",
            ) from exc
        raise StoreError(
            f"cannot open a snapshot of {source}: {exc}",
            hint="the writer may have been mid-checkpoint; try again",
        ) from exc
    # An open DuckDB file stays readable after unlinking on POSIX; elsewhere the copy stays
    # in the temp directory.
    shutil.rmtree(folder, ignore_errors=True)
    return conn


def connect_file(
    path: Path,
    *,
    config: Mapping[str, Any] | None,
    encryption: Encryption | None = None,
    engine: LogEngine | None = None,
    catalog: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the database file for writing, turning every failure into a `StoreError` that
    says what to do. A new file (and new directories) are created owner-only. With an
    ``engine``, the file is attached to it (as ``catalog``) instead of opened in an instance
    of its own; ``config`` is then the engine's and must be None."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    if path.is_dir():
        raise StoreError(
            f"the call log path {path} is a directory",
            hint=f"pass a file path such as {path / 'calls.duckdb'}",
        )
    folder = path.parent
    try:
        files.make_private_dirs(folder)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory {folder} for the call log {path}: {exc.strerror or exc}",
            hint="create the directory, or choose a writable location for the log",
        ) from exc
    what = f"the call log {path}"
    # In a folder only this user can enter, no one else can reach a new file even for a
    # moment: DuckDB creates it in place (made 0600 just below), which saves creating it in
    # a staging folder, closing and reopening it (about a quarter of opening a new log).
    in_place = not path.exists() and files.is_private_dir(folder)
    try:
        if not path.exists() and not in_place:
            if engine is None:
                create = database_creator(what, config, encryption)
            else:
                create = partial(_create_on, engine, what=what, encryption=encryption)
            files.create_private_database(path, create)
        if engine is not None:
            conn: Any = engine.attach(path, catalog=catalog, encryption=encryption, what=what)
        elif encryption is not None:
            conn = open_encrypted(path, encryption, what=what, config=dict(config or {}))
        else:
            conn = duckdb.connect(str(path), config=dict(config or {}))
    except (duckdb.Error, OSError) as exc:
        raise open_error(path, exc) from exc
    if in_place:
        files.tighten(path)
    if engine is None and (not config or "memory_limit" not in config):
        conn.execute(f"SET memory_limit = '{_DEFAULT_MEMORY_LIMIT}'")
    return conn


def _create_on(
    engine: LogEngine, staging: Path, *, what: str, encryption: Encryption | None
) -> None:
    """Create an empty database at ``staging`` by attaching it to ``engine`` and detaching
    it (for `files.create_private_database`; cheaper than an instance of its own)."""
    engine.attach(staging, encryption=encryption, what=what).close()


def tightening_wal(
    path: Path, before_insert: Callable[[int], None] | None
) -> Callable[[int], None]:
    """A ``before_insert`` hook that also makes the write-ahead log owner-only: DuckDB
    deletes it at every checkpoint and recreates it with the process umask. (Inside a 0700
    directory, which the log creates when the directory is new, it is unreachable anyway.)"""
    wal = path.with_name(path.name + ".wal")

    def hook(rows: int) -> None:
        files.tighten(wal)
        if before_insert is not None:
            before_insert(rows)

    return hook


def open_error(path: Path, exc: Exception) -> StoreError:
    """The `StoreError` a user sees when opening the log file ``path`` failed with ``exc``."""
    message = str(exc)
    lowered = message.lower()
    if "encrypted database" in lowered and "without a key" in lowered:
        return StoreError(
            f"the call log {path} is encrypted",
            hint="set [log] encryption_key_env to the variable holding its key (CallLog("
            "..., encryption=Encryption(key))); without the key its rows cannot be read",
        )
    if "unique file handle conflict" in lowered:
        return StoreError(
            f"the call log {path} is open elsewhere in this process (on a LogEngine, or on an "
            "instance of its own)",
            hint="DuckDB opens a file once per process: use the log that has it open (on an "
            "engine, open it on that engine), or close it first",
        )
    if "could not set lock" in lowered or "conflicting lock" in lowered:
        pid = re.search(r"PID (\d+)", message)
        holder = f" (PID {pid.group(1)})" if pid else ""
        return StoreError(
            f"the call log {path} is in use by another process{holder}",
            hint="DuckDB allows one writing process per file: close the log (or Gateway) in "
            "that process, use a different file, or analyse a read-only copy with "
            f"CallLog.snapshot({str(path)!r})",
        )
    if "permission denied" in lowered or not os.access(path.parent, os.W_OK):
        return StoreError(
            f"cannot open the call log {path}: permission denied",
            hint="choose a location you can write to, or fix the file's permissions",
        )
    return StoreError(
        f"cannot open the call log {path}: {message}",
        hint="check that the file is a DuckDB database written by a compatible DuckDB "
        "version, or choose another path",
    )
