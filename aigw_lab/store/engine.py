"""`LogEngine`: one DuckDB database instance that hosts several call logs, each attached as a
catalog of its own, so opening a log costs an ``ATTACH`` instead of a new instance.

    with LogEngine() as engine:
        logs = [CallLog(p, engine=engine) for p in paths]      # ~4 ms each, not ~35
        engine.query(
            "SELECT 'a' AS log, count(*) FROM a.calls UNION ALL SELECT 'b', count(*) FROM b.calls"
        )

DuckDB builds its catalog of built-in functions for every database instance, about 30 ms of
CPU per ``duckdb.connect`` (docs/performance.md, "The test suite's time, session 9
(systemic)"); attaching a file to a running instance skips that. What a log on an engine
shares with the other logs of that engine, and what it keeps, is listed in docs/call_log.md
("Many logs on one engine"): the instance's settings (memory limit, threads, checkpoint
threshold, temporary directory) are the engine's; each file is still locked against other
processes; each encrypted file keeps its own key.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.encryption import attach_error, attach_sql, load_crypto
from aigw_lab.store.insert_path import tune_log_database
from aigw_lab.store.log_files import open_error

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from aigw_lab.store.encryption import Encryption

__all__ = ["AttachedConnection", "LogEngine", "check_catalog_name"]

_MEMORY = ":memory:"
# The same cap a file log's own instance gets (aigw_lab.store.log_files), here for all the
# engine's logs together.
_DEFAULT_MEMORY_LIMIT = "256MB"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
# DuckDB's own catalogs, and "main", which SQL like ``main.calls`` means as the schema.
_RESERVED = frozenset({"memory", "system", "temp", "main", "information_schema", "pg_catalog"})


def check_catalog_name(name: str) -> str:
    """``name`` if it can name a log's catalog on an engine (letters, digits, underscores;
    not one of DuckDB's own catalogs), else a `StoreError`: it goes into ``ATTACH ... AS
    "name"`` (quoted, as a keyword like ``select`` would otherwise not parse)."""
    if not isinstance(name, str) or not _NAME.match(name) or name.lower() in _RESERVED:
        raise StoreError(
            f"{name!r} cannot name a call log's catalog",
            hint="use letters, digits and underscores, starting with a letter (at most 63), "
            f"and none of {', '.join(sorted(_RESERVED))}",
        )
    return name


class LogEngine:
    """One DuckDB database instance for several call logs: ``CallLog(path, engine=engine)``
    attaches ``path`` to it as a catalog (named after the file, or ``catalog=``) instead of
    starting an instance of its own. Owned by the caller, who closes it (or uses ``with``).

    ``config`` is passed to ``duckdb.connect`` for the instance; its settings are every
    attached log's. Without a ``memory_limit`` the instance is capped at 256MB of cache, and
    without a ``checkpoint_threshold`` it checkpoints every 64MiB of write-ahead log, as a
    log's own instance is. DuckDB spills large queries to ``temp_directory`` (default:
    ``.tmp`` in the working directory, where a log's own instance uses ``<file>.tmp``).

    `query` and `execute` run SQL across the attached logs: name a log's tables with its
    catalog (``CallLog.catalog``), e.g. ``SELECT count(*) FROM run_a.calls``. Thread-safe:
    each call gets a cursor of its own (DuckDB's connections are one thread's each).
    """

    def __init__(self, *, config: Mapping[str, Any] | None = None) -> None:
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        settings = dict(config or {})
        try:
            conn = duckdb.connect(_MEMORY, config=settings)
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot start a DuckDB engine: {exc}",
                hint="check the config's setting names and values against DuckDB's",
            ) from exc
        if "memory_limit" not in settings:
            conn.execute(f"SET memory_limit = '{_DEFAULT_MEMORY_LIMIT}'")
        tune_log_database(conn, settings)
        self._conn = conn
        # The engine's own connection is one thread's at a time. Reentrant: a log left open
        # can be collected (and so closed, detaching it) on this thread while it holds the lock;
        # such a detach waits in `_pending` until the section it interrupted ends
        # (`_locked`), so no section sees its dicts change under it.
        self._lock = threading.RLock()
        self._busy = False
        self._pending: list[str] = []
        self._attached: dict[str, str] = {}  # catalog -> file (or ":memory:")
        self._users: dict[str, int] = {}  # catalog -> logs open on it
        self._closing = False
        self._closed = False
        self._encrypting = False
        self._crypto: set[str] = set()
        self._keyed: set[str] = set()  # catalogs of encrypted files

    # --- attaching (for CallLog) ---------------------------------------------------------

    def attach(
        self,
        path: Path | str,
        *,
        catalog: str | None = None,
        encryption: Encryption | None = None,
        what: str,
    ) -> AttachedConnection:
        """Attach the database ``path`` (a file, created if missing, or ``":memory:"``) as
        ``catalog`` (default: from the file's name, made unique) and return a connection
        whose cursors start in it. ``what`` names it in errors. Closing the connection
        detaches it. For `aigw_lab.store.calllog.CallLog`; raises `StoreError`."""
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        target = _MEMORY if str(path) == _MEMORY else os.path.abspath(path)
        with self._locked():
            self._check_open(what)
            if catalog is not None:
                check_catalog_name(catalog)
            shared = self._shared(target, catalog, encryption, what)
            if shared is not None:
                # A second log on a file the engine has attached shares its catalog, as two
                # logs of one file share an instance when each opens its own.
                self._users[shared] += 1
                return self._connection(shared)
            if catalog is not None:
                name = catalog
                if name.lower() in (c.lower() for c in self._attached):
                    raise StoreError(
                        f"cannot open {what} as catalog {name!r}: the engine has a log by "
                        "that name already",
                        hint="pass another catalog= or close that log first",
                    )
            else:
                name = self._free_name(target)
            try:
                if encryption is not None:
                    self._load_crypto(encryption, what=what)
                    try:
                        self._conn.execute(attach_sql(Path(target), encryption, alias=f'"{name}"'))
                    except duckdb.Error as exc:
                        # never chain: the statement holding the key could show in a traceback
                        raise attach_error(exc, encryption, what=what) from None
                    self._keyed.add(name)
                    if not self._encrypting:
                        # DuckDB's spill files would otherwise hold the rows in the clear; the
                        # setting is the instance's, so from here every log's spills are.
                        self._conn.execute("SET temp_file_encryption = true")
                        self._encrypting = True
                else:
                    quoted = target.replace("'", "''")
                    self._conn.execute(f"ATTACH '{quoted}' AS \"{name}\"")
            except duckdb.Error as exc:
                raise open_error(Path(target), exc) from exc
            self._attached[name] = target
            self._users[name] = 1
            return self._connection(name)

    def _shared(
        self, target: str, catalog: str | None, encryption: Encryption | None, what: str
    ) -> str | None:
        """The catalog of ``target`` if the engine has the file attached already."""
        if target == _MEMORY:
            return None  # every in-memory log is a database of its own
        for name, attached in list(self._attached.items()):
            if attached == target:
                if encryption is not None or name in self._keyed:
                    # Sharing would skip DuckDB's key check: a wrong key would read the rows.
                    raise StoreError(
                        f"{what} is open on this engine already (encrypted: it is not shared)",
                        hint="use the CallLog that has it open, or close it first",
                    )
                if catalog is not None and catalog.lower() != name.lower():
                    raise StoreError(
                        f"{what} is open on this engine already, as catalog {name!r}",
                        hint=f"open it as catalog {name!r} (or without catalog=), or close "
                        "the log that has it open first",
                    )
                return name
        return None

    def _connection(self, name: str) -> AttachedConnection:
        # Called with the lock held: the engine's connection is one thread's at a time.
        home = self._conn.cursor()
        try:
            home.execute(f'USE "{name}"')
        except BaseException:
            home.close()
            self._release(name)
            raise
        return AttachedConnection(self, home, name)

    def _load_crypto(self, encryption: Encryption, *, what: str) -> None:
        if encryption.crypto not in self._crypto:
            load_crypto(self._conn, encryption, what=what)
            self._crypto.add(encryption.crypto)

    def _free_name(self, target: str) -> str:
        stem = "memory_log" if target == _MEMORY else Path(target).stem
        base = re.sub(r"\W", "_", stem, flags=re.ASCII)[:56] or "log"
        if not base[0].isalpha():
            base = f"log_{base}"
        if base.lower() in _RESERVED:
            base = f"{base}_log"
        taken = {c.lower() for c in self._attached}
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}_{n}"
        return name

    @contextmanager
    def _locked(self) -> Iterator[bool]:
        """The engine's lock; yields False when this thread already holds it (a finalizer
        run inside a locked section), True for the outermost section, which then performs
        the detaches that arrived meanwhile."""
        with self._lock:
            if self._busy:
                yield False
                return
            self._busy = True
            try:
                yield True
            finally:
                try:
                    while self._pending:
                        self._release(self._pending.pop())
                finally:
                    self._busy = False

    def _detach(self, name: str) -> None:
        """One log of the catalog ``name`` closed: the last one detaches it (DuckDB
        checkpoints the file and releases its lock), and closes the instance when `close`
        was called and this was its last catalog."""
        with self._locked() as outermost:
            if outermost:
                self._release(name)
            else:  # collected inside a locked section on this thread: after it
                self._pending.append(name)

    def _release(self, name: str) -> None:
        users = self._users.get(name, 0) - 1
        if users > 0:
            self._users[name] = users
            return
        self._users.pop(name, None)
        self._keyed.discard(name)
        if self._attached.pop(name, None) is None or self._closed:
            return
        try:
            self._conn.execute(f'DETACH "{name}"')
        except Exception:  # noqa: BLE001 - the log's rows are committed; best effort
            pass
        if self._closing and not self._attached:
            self._shut()

    def _check_open(self, what: str) -> None:
        if self._closing or self._closed:
            raise StoreError(
                f"cannot open {what}: its engine is closed", hint="open a new LogEngine"
            )

    # --- reading across logs ------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> pd.DataFrame:
        """Run ``sql`` over the engine's logs and return a pandas DataFrame. Name each log's
        tables with its catalog (``CallLog.catalog``). Reads what the logs have written: call
        a log's ``flush`` first for rows still queued."""
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        cursor = self._cursor()
        try:
            return cursor.execute(sql, params).df()
        except duckdb.Error as exc:
            raise _query_error(exc) from exc
        finally:
            cursor.close()

    def execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run any SQL statement on the engine; return its result rows, if any."""
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        cursor = self._cursor()
        try:
            result = cursor.execute(sql, params)
            return result.fetchall() if cursor.description else []
        except duckdb.Error as exc:
            raise _query_error(exc) from exc
        finally:
            cursor.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._locked():
            self._check_open("a query")
            return self._conn.cursor()

    @property
    def catalogs(self) -> dict[str, str]:
        """The attached logs: catalog name -> database file (or ``":memory:"``)."""
        with self._locked():
            return dict(self._attached)

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the instance; logs still open on it keep it until the last one closes (so
        none loses its pending rows). No new log can be opened on it. Idempotent."""
        with self._locked():
            self._closing = True
            if not self._attached:
                self._shut()

    def _shut(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()

    @property
    def closed(self) -> bool:
        """True once the instance is closed (after `close` and the last log's close)."""
        return self._closed

    def __enter__(self) -> LogEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._attached)} logs"
        return f"<LogEngine ({state})>"


class AttachedConnection:
    """A log's connection on a `LogEngine`: a cursor of the engine that has ``USE``d the
    log's catalog, so the log's unqualified SQL (``FROM calls``) reads its own tables; every
    cursor it hands out (the writer's, each reader's) starts there too. Other attributes are
    the cursor's. `close` detaches the log."""

    __slots__ = ("_engine", "_home", "catalog", "_closed")

    def __init__(self, engine: LogEngine, home: duckdb.DuckDBPyConnection, catalog: str) -> None:
        self._engine = engine
        self._home = home
        self.catalog = catalog
        self._closed = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._home.cursor()
        cursor.execute(f'USE "{self.catalog}"')
        return cursor

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._home.close()
        finally:
            self._engine._detach(self.catalog)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._home, name)

    def __enter__(self) -> AttachedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _query_error(exc: Exception) -> StoreError:
    return StoreError(
        f"query on the log engine failed: {exc}",
        hint="name each log's tables with its catalog (CallLog.catalog), e.g. run_a.calls",
    )
