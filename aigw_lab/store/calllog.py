"""`CallLog`: the DuckDB file every gateway call is logged into, and read back from.

    log = CallLog("calls.duckdb")
    log.append(record)                       # cheap; never waits for the disk
    log.query("SELECT request_model, count(*) FROM calls GROUP BY ALL")   # a DataFrame
    log.close()                              # or `with CallLog(...) as log:`

Rows are written by a background thread in column batches (see `aigw_lab.store.writer`).
A file log also spools every row (and the gateway every call's start) to an append-only
file first, replayed when the log is next opened, so a killed process loses no call (see
`aigw_lab.store.spool`).
DuckDB lets one process at a time write a file; to analyse a log another process is writing,
open a read-only copy with `CallLog.snapshot(path)`.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.batches import rows_table
from aigw_lab.store.dead_letter import LogHealth
from aigw_lab.store.engine import AttachedConnection
from aigw_lab.store.insert_path import tune_log_database
from aigw_lab.store.log_files import connect_file, open_readonly_snapshot, tightening_wal
from aigw_lab.store.records import CallRecord
from aigw_lab.store.schema import MIGRATIONS, Migration, apply_migrations
from aigw_lab.store.spool import (
    DURABILITY_LEVELS,
    Spool,
    known_call_ids,
    read_leftovers,
    spool_dir,
    warn_invalid,
)
from aigw_lab.store.spool_rows import plain_item
from aigw_lab.store.unfinished import finish_batch, finish_row
from aigw_lab.store.writer import BatchWriter, CallLogWarning

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from aigw_lab.store.encryption import Encryption
    from aigw_lab.store.engine import LogEngine
    from aigw_lab.store.redact import BodyPolicy

__all__ = ["CallLog", "open_readonly_snapshot"]

_MEMORY = ":memory:"
_REQUEST_JSON = CallRecord._fields.index("request_json")
# The tables besides ``calls`` that `CallLog.insert` writes to.
_SIDE_TABLES = ("scores", "experiments", "experiment_runs")
#: A batch's default maximum age when its rows are crash-safe anyway (spooled, or in memory)
#: and when not (durability "none"). At 100 calls/s an insert's fixed cost (a few ms of CPU)
#: is shared by 500 rows at 5 s against 200 at 2 s; what the longer age costs is that another
#: process reading the file (`CallLog.snapshot`) sees rows up to 5 s after their call.
#: bench/bench_log_rates.py measures both (docs/performance.md, "The log's calling thread
#: and batch age, session 10").
SPOOLED_BATCH_AGE = 5.0
UNSPOOLED_BATCH_AGE = 0.2


class CallLog:
    """An append-only log of gateway calls in a DuckDB file (table ``calls``); a gateway's
    first `aigw_lab.store.sink.CallSink` (``append``, ``flush``, ``close``).

    ``path`` is the database file (created, with its directory, if missing) or ``":memory:"``.
    Rows are buffered and written by a background thread in batches of ``batch_size``, at the
    latest ``flush_interval`` seconds after the batch's first row (unset: 5 s when rows are
    crash-safe anyway, spooled or in memory; 0.2 s without a spool; reads through the log flush
    first, other processes' snapshots see rows once inserted: see docs/call_log.md). At most
    ``max_queue`` rows wait in memory; beyond that `append` blocks until the writer catches up.
    The default, 250,000, is two DuckDB row groups: a writer that falls behind then inserts a
    whole row group while the next one waits (see `aigw_lab.store.writer`). ``config`` is
    passed to ``duckdb.connect``; without a ``memory_limit`` in it, a file log's database is
    capped at 256MB of cache (DuckDB spills bigger queries to disk); without a
    ``checkpoint_threshold``, the database checkpoints every 64MiB of write-ahead log, not
    DuckDB's 16MB (see `aigw_lab.store.insert_path.tune_log_database`). ``before_insert`` is
    called on the writer thread before every insert with the row count (a test hook: raising
    simulates a failed write).

    ``bodies`` (a `BodyPolicy`) redacts, hashes or drops request and response bodies in
    `append`, before a row is queued (and redacts the text of ``scores`` rows in `insert`).
    ``encryption`` (an `Encryption`) opens the file as an encrypted DuckDB database. A file
    the log creates is owner-only (0600), as are the directories it creates (0700); see
    docs/security.md.

    ``engine`` (a `LogEngine`) attaches the file (or ``":memory:"``) to that shared DuckDB
    instance as the catalog ``catalog`` (default: from the file's name; see `catalog`)
    instead of starting an instance of its own: about a tenth of the cost of opening, and
    SQL across logs in one statement (`LogEngine.query`). The instance's settings are then
    the engine's, so ``config`` must be None; the file is locked against other processes as
    usual; see docs/call_log.md, "Many logs on one engine".

    Pending rows are written by `close`, when a ``with`` block exits (even by an exception),
    when the log is garbage collected and at normal interpreter exit. A row the database
    refuses goes to the ``calls_dead_letter`` table while the rest of its batch is written;
    `health` reports it (see docs/call_log.md, "Bad rows never poison the log").

    ``durability`` protects a file log against the process being killed: ``"os"`` (default)
    first copies every row, and the gateway every call's start, into the spool
    ``<path>.spool/`` (a memory-mapped file: in the page cache at once); ``"fsync"`` also syncs
    it to disk every ``fsync_interval`` seconds (0: after every frame); ``"none"`` keeps rows
    only in memory until written. Whatever a
    killed process left in the spool is written when the log is opened again (`recovered`
    rows): ended calls as their rows, calls that were in flight as ``status =
    'interrupted'``. An in-memory log has no spool. The spool is not encrypted, so an
    encrypted log has none (its default durability is ``"none"``, and asking for another
    with ``encryption`` is an error: see docs/security.md).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 5_000,
        flush_interval: float | None = None,
        max_queue: int = 250_000,
        config: Mapping[str, Any] | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
        before_insert: Callable[[int], None] | None = None,
        bodies: BodyPolicy | None = None,
        encryption: Encryption | None = None,
        durability: str | None = None,
        fsync_interval: float = 0.05,
        engine: LogEngine | None = None,
        catalog: str | None = None,
    ) -> None:
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        if engine is not None and config is not None:
            raise StoreError(
                "a call log on a LogEngine takes no config: the database settings are the engine's",
                hint="pass config to LogEngine(config=...), or open the log without engine=",
            )
        if catalog is not None and engine is None:
            raise StoreError(
                "catalog= names a call log on a LogEngine", hint="pass engine= as well"
            )

        if durability is None:
            durability = "none" if encryption is not None else "os"
        elif encryption is not None and durability != "none":
            # The spool holds every row in plain text until it is written: it would undo
            # the encryption for anyone who can read the log's directory.
            raise StoreError(
                f"durability {durability!r} cannot be used with an encrypted call log: its "
                "crash spool is not encrypted",
                hint="leave durability unset (an encrypted log runs without a spool, so a "
                "killed process can lose rows not yet written), or drop the encryption",
            )
        if durability not in DURABILITY_LEVELS:
            raise StoreError(
                f"unknown call log durability {durability!r}",
                hint=f"use one of {', '.join(DURABILITY_LEVELS)} (see docs/call_log.md)",
            )
        if not isinstance(fsync_interval, (int, float)) or fsync_interval < 0:
            raise StoreError(
                f"fsync_interval must be a number of seconds >= 0, not {fsync_interval!r}"
            )
        #: Rows written from a dead process's spool when this log was opened.
        self.recovered = 0
        self._spool: Spool | None = None
        # Spooled rows handed over unfinished get ``u`` end frames (`spool_rows`). False
        # only to measure against rows finished on the calling thread (bench_spool_threads).
        self._unfinished_ends = True

        self._path: Path | str
        # None for "full": append then costs one comparison more than before.
        self._bodies = None if bodies is None or bodies.mode == "full" else bodies
        if flush_interval is None:
            # A spooled row is crash-safe before its insert, so waiting costs no durability.
            spooled = durability != "none" or str(path) == _MEMORY
            flush_interval = SPOOLED_BATCH_AGE if spooled else UNSPOOLED_BATCH_AGE
        if str(path) == _MEMORY:
            self._path, self._where, spill_dir = _MEMORY, "the in-memory call log", None
            if engine is None:
                conn = duckdb.connect(_MEMORY, config=dict(config or {}))
            else:
                conn = engine.attach(_MEMORY, catalog=catalog, what=self._where)
        else:
            self._path = Path(path).expanduser()
            self._where, spill_dir = f"call log {self._path}", str(self._path.parent)
            conn = connect_file(
                self._path, config=config, encryption=encryption, engine=engine, catalog=catalog
            )
            before_insert = tightening_wal(self._path, before_insert)
        #: The log's catalog on its engine (None: the log has an instance of its own).
        self.catalog: str | None = conn.catalog if isinstance(conn, AttachedConnection) else None
        try:
            if engine is None:  # an engine's instance was tuned when it started
                tune_log_database(conn, config)
            apply_migrations(conn, migrations, where=self._where)
            self._writer = BatchWriter(
                conn,
                where=self._where,
                spill_dir=spill_dir,
                batch_size=batch_size,
                flush_interval=flush_interval,
                max_queue=max_queue,
                before_insert=before_insert,
                finish=partial(finish_batch, bodies=self._bodies),
            )
        except BaseException:
            conn.close()
            raise
        if self._path != _MEMORY:
            try:
                self._spool = self._open_spool(conn, durability, fsync_interval)
            except BaseException:
                self._writer.close_quietly()
                raise
        # Holds the log weakly: an abandoned log is flushed when collected, and every live
        # one at interpreter exit (weakref.finalize runs at exit by default).
        self._finalizer = weakref.finalize(self, _shutdown_quietly, self._writer, self._spool)

    def _open_spool(
        self, conn: duckdb.DuckDBPyConnection, durability: str, fsync_interval: float
    ) -> Spool | None:
        """Write what a killed process left in the spool, then start this log's segment."""
        directory = spool_dir(self._path)
        leftovers = read_leftovers(directory)
        if leftovers.invalid:
            warn_invalid(directory, leftovers.invalid)
        written = False
        try:
            known = known_call_ids(conn, leftovers.records)
            fresh = [r for r in leftovers.records if r.call_id not in known]
            self._writer.append_many(fresh)
            self._writer.flush()
            self.recovered = len(fresh)
            written = True
        except StoreError as exc:
            warnings.warn(
                f"could not write the rows left in the spool {directory}: {exc}; the spool "
                "is kept and replayed at the next open",
                CallLogWarning,
                stacklevel=3,
            )
        finally:
            leftovers.release(delete=written)
        if durability == "none":
            return None
        writer = self._writer
        spool: Spool

        def committed() -> int:
            # Read under the spool's lock, so no append moves the counters meanwhile.
            return spool.ends - writer.pending_rows

        try:
            spool = Spool(
                directory,
                committed=committed,
                durability=durability,
                fsync_interval=fsync_interval,
            )
        except OSError as exc:
            raise StoreError(
                f"cannot create the call log spool {directory}: {exc.strerror or exc}",
                hint="make the log's directory writable, or set durability = 'none'",
            ) from exc
        return spool

    # --- writing -----------------------------------------------------------------------

    def append(self, record: CallRecord, *, built: bool = False) -> None:
        """Queue one row. Thread-safe and cheap; blocks only while ``max_queue`` rows wait
        (backpressure), so it is fine to call from async code. Raises `StoreError` after
        `close`, or when the queue is full because writing keeps failing.

        ``built=True``: the gateway built the row and made it storable, so its JSON columns
        are stored without being parsed again; other rows' are checked, and text that is not
        JSON is stored as a JSON string."""
        if self._bodies is not None:
            # Before the spool and the queue: an unredacted body never reaches either.
            record = self._bodies.apply(record)
        spool = self._spool
        if spool is None or type(record) is not CallRecord:
            self._writer.append(record, built)
            return
        with spool.lock:
            # Spooled before it is queued: from here a crash cannot lose it.
            spool.write_end(record)
            try:
                self._writer.append(record, built)
            except BaseException:
                spool.refused()  # spooled but not queued: the next open must replay it
                raise
            spool.ends += 1

    def append_later(self, values: tuple[Any, ...], max_body_chars: int) -> None:
        """Queue a row the writer thread finishes (`aigw_lab.store.unfinished`): ``values``
        as `aigw_lab.gateway.records.success_values_later` gives them, made storable with
        ``max_body_chars`` (`sanitize_record`). The stored row is the one `append` would
        store for the finished row. A spooled log first writes the unfinished row's end
        frame (`aigw_lab.store.spool_rows`), which replay finishes the same way; one with a
        body mode other than ``"full"`` (whose policy must reach the row before the file
        does), or a row no frame can hold, is finished here, first. Raises as `append`
        does."""
        item = (values, max_body_chars)
        spool = self._spool
        if spool is None:
            self._writer.append_later(item)
            return
        if self._bodies is None and self._unfinished_ends:
            if type(values[_REQUEST_JSON]) is not tuple:
                # The request itself (the gateway gives a spooled log its plain fields
                # already): put in plain fields, or finished below when it has another shape.
                try:
                    item = plain_item(values, max_body_chars)
                except ValueError:
                    item = None
            if item is not None:
                with spool.lock:
                    # Spooled before it is queued, as in `append`. The writer is given the
                    # frame's bytes, not the tuples: no container waits for it that the
                    # garbage collector would walk (`aigw_lab.store.unfinished`).
                    payload = spool.write_unfinished(item)
                    if payload is not None:
                        try:
                            self._writer.append_later(payload)
                        except BaseException:
                            spool.refused()
                            raise
                        spool.ends += 1
                        return
        record, _ = finish_row((values, max_body_chars), None)
        self.append(record, built=True)

    @property
    def takes_unfinished(self) -> bool:
        """True when `append_later` leaves a row's finishing to the writer thread: no
        spool, or a spool whose end frames hold unfinished rows (body mode ``"full"``). The
        gateway then hands rows over unfinished (`aigw_lab.gateway.recorder.Recorder`)."""
        return self._spool is None or (self._bodies is None and self._unfinished_ends)

    def append_many(self, records: Iterable[CallRecord], *, built: bool = False) -> None:
        """Queue several rows, in order (`append` for each)."""
        if self._spool is None:
            if self._bodies is not None:
                records = [self._bodies.apply(record) for record in records]
            self._writer.append_many(records, built)
            return
        for record in records:
            self.append(record, built=built)

    @property
    def spool(self) -> Spool | None:
        """The spool this log writes before queueing rows (None: in-memory, or durability
        ``"none"``). The gateway writes each call's start to it before sending it."""
        return self._spool

    def flush(self, timeout: float | None = None) -> None:
        """Return once every row appended before this call is in the database: in ``calls``,
        or, for a row the database refused, in ``calls_dead_letter`` (not an error: it is
        counted by `health` and announced by a `CallLogWarning`).

        Raises `StoreError` if inserts fail (the rows are kept and retried: flush again
        after fixing the cause), if the writer thread crashed, or if ``timeout`` seconds
        pass first. Code that reads the log on behalf of a call uses
        ``query(..., strict=False)`` instead, so a log problem never fails that call.
        """
        self._writer.flush(timeout)

    def health(self) -> LogHealth:
        """The log's own health: ``state`` (``ok``, ``retrying``, ``crashed``, ``closed``),
        rows written, pending, dead-lettered and spilled, failed inserts and the kind of the
        last problem (no row data, call id or path: safe to show any client). Cheap."""
        return self._writer.health()

    def set_aside(self, records: Sequence[CallRecord], reason: str) -> str | None:
        """Save rows that `append` refused (the log is closed, or its queue is full while
        inserts fail) to a new owner-only ``calls.unwritten-*.jsonl`` file next to the
        database, so a call's row is kept without failing the call; counted in `health`.
        ``reason`` (no caller data) is stored with each row. Returns the file, or None.
        The log's body policy applies here too (callers hand over the row `append` refused,
        as they built it): an unredacted body never reaches the file."""
        bodies = self._bodies
        if bodies is not None:
            records = [r if r.bodies == bodies.mode else bodies.apply(r) for r in records]
        return self._writer.set_aside(list(records), reason)

    def close(self) -> None:
        """Flush, stop the writer thread and close the database. Idempotent.

        Rows that still cannot be written are saved to a ``calls.unwritten-*.jsonl`` file
        next to the database (or in the temp directory), and a `StoreError` names it.
        """
        self._finalizer.detach()
        _shutdown(self._writer, self._spool)

    def __enter__(self) -> CallLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reading -----------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        strict: bool = True,
    ) -> pd.DataFrame:
        """Run a SQL query over the log (after a flush) and return a pandas DataFrame.

        ``strict=False``: if rows cannot be written yet, run over what is written instead of
        raising (for reads made on behalf of a call, like budget seeding; see `health`)."""
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        self._flush_before_read(strict)
        # A cursor is a separate connection to the same database: the query runs alongside
        # the writer's inserts (DuckDB isolates them) instead of stalling them.
        cursor = self._writer.cursor()
        try:
            return cursor.execute(sql, params).df()
        except duckdb.Error as exc:
            raise StoreError(
                f"query on {self._where} failed: {exc}",
                hint="check the SQL; the table is `calls`, its columns are in docs/call_log.md",
            ) from exc
        finally:
            cursor.close()

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        strict: bool = True,
    ) -> list[tuple[Any, ...]]:
        """Run any SQL statement (after a flush); return its result rows, if any.
        ``strict`` as for `query`."""
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        self._flush_before_read(strict)
        cursor = self._writer.cursor()
        try:
            result = cursor.execute(sql, params)
            return result.fetchall() if cursor.description else []
        except duckdb.Error as exc:
            raise StoreError(
                f"statement on {self._where} failed: {exc}", hint="check the SQL"
            ) from exc
        finally:
            cursor.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor on the log's database, after a flush, for one thread (DuckDB's
        connections are not shared between threads); close it when done. On a `LogEngine`
        it starts in the log's catalog, so unqualified names (``calls``) are this log's."""
        self._writer.flush()
        return self._writer.cursor()

    def _flush_before_read(self, strict: bool) -> None:
        if strict:
            self._writer.flush()
        else:
            self._writer.settle()

    def insert(self, table: str, rows: Any | Sequence[Mapping[str, Any]]) -> int:
        """Insert rows into one of the log's other tables (``scores``, ``experiments``,
        ``experiment_runs``) in one statement; return how many were inserted.

        ``rows`` is an Arrow table (pyarrow is optional) or a sequence of dicts keyed by column
        name; columns the rows leave out are NULL. Unlike `append` this writes at once, on
        the caller's thread: these tables get a few rows per experiment or per score, not
        one per gateway call.
        """
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        if table not in _SIDE_TABLES:
            raise StoreError(
                f"cannot insert into {table!r}",
                hint=f"insert into one of {', '.join(_SIDE_TABLES)}; calls go through append()",
            )
        if self._bodies is not None and table == "scores":
            # Judge rationales and feedback comments can quote prompts and answers.
            # An Arrow table (only pyarrow makes one) becomes dicts to be redacted.
            rows = self._bodies.scores(rows.to_pylist() if hasattr(rows, "to_pylist") else rows)
        batch = rows_table(rows)
        if len(batch) == 0:
            return 0
        names = batch.column_names if hasattr(batch, "column_names") else batch.columns
        columns = ", ".join(f'"{name}"' for name in names)
        cursor = self._writer.cursor()
        try:
            cursor.register("_aigw_rows", batch)
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _aigw_rows")
        except duckdb.Error as exc:
            raise StoreError(
                f"insert into {table} of {self._where} failed: {exc}",
                hint=f"check the column names and types against `DESCRIBE {table}`",
            ) from exc
        finally:
            cursor.close()
        return len(batch)

    # --- state -------------------------------------------------------------------------

    @property
    def path(self) -> Path | str:
        """The database file, or ``":memory:"``."""
        return self._path

    @property
    def rows_written(self) -> int:
        """Rows inserted into the database so far by this log."""
        return self._writer.rows_written

    @property
    def pending_rows(self) -> int:
        """Rows appended but not yet written."""
        return self._writer.pending_rows

    @property
    def flush_interval(self) -> float:
        """The longest a batch waits for more rows before its insert (seconds)."""
        return self._writer.flush_interval

    @property
    def rejected(self) -> list[CallRecord]:
        """Rows the database refused (wrong field types, a constraint), as appended: not in
        ``calls`` but in ``calls_dead_letter`` (or a spill file, see `health`). The latest
        1,000 are kept here."""
        return self._writer.rejected

    @property
    def closed(self) -> bool:
        """True once `close` ran."""
        return self._writer.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.rows_written} rows written"
        return f"<CallLog {str(self._path)!r} ({state})>"

    @staticmethod
    def snapshot(
        path: str | os.PathLike[str], *, encryption: Encryption | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A read-only connection to a copy of the log at ``path``; see
        `open_readonly_snapshot`."""
        return open_readonly_snapshot(path, encryption=encryption)


def _shutdown(writer: BatchWriter, spool: Spool | None) -> None:
    """Close the writer, then the spool: deleted if every row was written, else kept for
    the next open to replay."""
    if spool is not None and threading.current_thread() is writer.thread:
        # Collected on the writer thread: close from a helper, which may wait for it.
        threading.Thread(
            target=_shutdown_quietly, args=(writer, spool), name="aigw-call-log-close"
        ).start()
        return
    try:
        writer.close()
    except BaseException:
        if spool is not None:
            spool.close(delete=False)
        raise
    if spool is not None:
        spool.close(delete=True)


def _shutdown_quietly(writer: BatchWriter, spool: Spool | None) -> None:
    """`_shutdown` for finalizers and interpreter exit: turns errors into a warning."""
    try:
        _shutdown(writer, spool)
    except StoreError as exc:
        warnings.warn(str(exc), CallLogWarning, stacklevel=2)
