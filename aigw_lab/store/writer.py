"""The background writer behind `CallLog`: buffers rows, inserts them as column batches.

Callers append `CallRecord` objects to a plain list under a lock (no per-row queue put, no
per-row wake-up); a full list is handed to the writer thread, which transposes it column by
column into a table (pyarrow when installed, else pandas: see `batches`) and inserts it with
one ``INSERT ... SELECT`` statement (see `insert_path` for why that statement is shaped so).

Batches are cut by size or by age (``batch_size`` rows, or the oldest row ``flush_interval``
seconds old): an insert costs milliseconds whatever its size, so at low rates a longer age
means fewer, larger inserts; readers see no delay, as every read through `CallLog` flushes.

Guarantees, in order of importance:

* no row is dropped silently: a failed insert keeps its rows and retries them (with backoff,
  and at once when someone flushes); `flush` raises `StoreError` while they cannot be written,
  and a `CallLogWarning` is emitted when a failure starts;
* one bad row never poisons the others: a row the database refuses (or that cannot even be
  converted, a string in a token count, say) is found by bisecting its batch and goes to the
  ``calls_dead_letter`` table with its error (to an owner-only file if even that fails); the
  rest of the batch is written. This is reported by `health` and a warning, never raised into
  another caller's `append` or `flush`;
* memory stays bounded: at most ``max_queue`` rows wait; past that `append` blocks until the
  writer catches up (backpressure) instead of growing without limit;
* rows reach the table in append order, so "every row appended before ``flush()`` was called
  is written" is just a comparison of two counters.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.batches import ColumnBatches
from aigw_lab.store.dead_letter import (
    LogHealth,
    is_row_problem,
    isolate_refused,
    spill_rows,
    write_dead_letter,
)
from aigw_lab.store.insert_path import InsertPath
from aigw_lab.store.records import CallRecord
from aigw_lab.store.row_tables import RowTables
from aigw_lab.store.schema import COLUMN_TYPES
from aigw_lab.store.unfinished import Unfinished

if TYPE_CHECKING:
    import duckdb

__all__ = ["BatchWriter", "CallLogWarning"]

_ROW_GROUP_ROWS = 122_880  # DuckDB's row group size
_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 5.0
_MAX_REJECTED = 1_000  # refused rows kept in memory (CallLog.rejected), the latest


class CallLogWarning(RuntimeWarning):
    """The call log could not write rows yet; they are kept and retried."""


class BatchWriter:
    """Owns the writer thread and the rows waiting for it. Used through `CallLog`.

    ``before_insert`` is called on the writer thread with the row count before every insert
    attempt; an exception it raises counts as a failed insert. Tests use it to slow the
    writer down or to simulate a full disk. ``arrow`` picks how batches are built (see
    `ColumnBatches`): None uses pyarrow when it is installed; tests force either path.

    ``finish`` finishes the rows queued by `append_later` in a batch, in place, on the
    writer thread (`aigw_lab.store.unfinished.finish_batch`), returning problems to report.

    ``flush_interval`` is the batch's maximum age: a row waits at most that long (from the
    moment the buffer it joined got its first row) before its insert starts.
    """

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        *,
        where: str,
        spill_dir: str | None,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        before_insert: Callable[[int], None] | None = None,
        arrow: bool | None = None,
        finish: Callable[[list[Any]], list[str]] | None = None,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive (seconds)")
        self._where = where
        self._spill_dir = spill_dir
        self._batch_size = batch_size
        # A writer that falls behind merges waiting batches, up to one DuckDB row group per
        # insert (`_merged`): a full row group is written straight to the file instead of
        # through the write-ahead log, 0.64x the CPU per row of 120,000-row inserts
        # (bench_writer_rowgroups.py). Only max_queue rows can wait, so a whole row group
        # needs max_queue above it, and a steady stream of them about two (the default).
        self._max_batch = max(batch_size, _ROW_GROUP_ROWS)
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._before_insert = before_insert
        self._finish = finish  # finishes a batch's unfinished rows (`append_later`)

        lock = threading.Lock()
        self._lock = lock  # the conditions' lock: taken directly where no wait follows
        self._work = threading.Condition(lock)  # the writer waits here for rows
        self._progress = threading.Condition(lock)  # appenders and flushers wait here

        self._buffer: list[CallRecord] = []
        self._buffer_since = 0.0  # monotonic time the buffer got its first row
        # Whether the buffer holds a row from outside the gateway (`append` without
        # ``built``): its batch re-validates JSON columns. Batches travel with this flag.
        self._buffer_raw = False
        self._pending: deque[tuple[list[CallRecord], bool]] = deque()
        self._inflight: list[CallRecord] | None = None  # taken by the writer, not yet written
        self._inflight_raw = True
        self._appended = 0
        self._done = 0  # rows written, dead-lettered or spilled: what flush() waits for
        self.rows_written = 0
        self.rejected: list[CallRecord] = []  # rows refused by `calls` (dead letter or file)
        self.rows_dead_lettered = 0
        self.rows_spilled = 0
        self.spill_files: list[str] = []
        self._last_problem: str | None = None  # for health(): kind and type, no row data
        self._aside_lock = threading.Lock()
        self._aside_file: str | None = None  # where set_aside() keeps appending

        self._flush_waiters = 0
        self._retry_now = False
        self._failures = 0  # failed insert attempts, ever
        self._failures_at_last_success = 0
        self._retry_at = 0.0  # monotonic time of the next retry of a failed insert
        self._last_error: BaseException | None = None  # set while the head batch is stuck
        self._fatal: BaseException | None = None  # the writer thread itself crashed
        self._stopping = False
        self._exit_now = False
        self.closed = False

        self._conn = conn
        self._conn_lock = threading.Lock()  # the shared connection object is not thread-safe
        self._close_lock = threading.Lock()
        self._cursor = conn.cursor()  # the writer thread's own connection handle
        self._batches = ColumnBatches(COLUMN_TYPES, arrow=arrow)
        self._inserts = InsertPath(self._cursor, json_typed=self._batches.json_typed)
        self._tables = RowTables(self._batches)
        # One empty batch through the whole path, on this thread: pyarrow imports pandas on
        # first use, and an import on the writer thread fails during interpreter exit.
        self._inserts.insert(self._tables.to_table([], raw=True)[0], built=False)
        self._thread = threading.Thread(target=self._run, name="aigw-call-log-writer", daemon=True)
        self._thread.start()

    # --- caller side -------------------------------------------------------------------

    def append(self, record: CallRecord, built: bool = False) -> None:
        """Queue one row. ``built``: the gateway built it, so its JSON columns are valid
        JSON by construction and are stored without re-validation."""
        if type(record) is not CallRecord and not isinstance(record, CallRecord):
            raise TypeError(f"CallLog.append takes a CallRecord, not {type(record).__name__}")
        self._queue(record, built)

    def append_later(self, item: Unfinished) -> None:
        """Queue an unfinished row (`aigw_lab.store.unfinished`): the writer thread finishes
        it with the rest of its batch. Needs ``finish``."""
        if self._finish is None:
            raise TypeError("this writer takes finished rows only (no finish was given)")
        self._queue(item, True)

    def _queue(self, record: CallRecord | Unfinished, built: bool) -> None:
        # The condition's lock itself: `with` on a Condition adds two Python calls per row.
        with self._lock:
            if self._stopping:
                raise self._refusal()
            if self._appended - self._done >= self._max_queue:
                self._wait_for_room()
            buffer = self._buffer
            if not buffer:
                self._buffer_since = time.monotonic()  # the batch's age counts from here
            if not built:
                self._buffer_raw = True
            buffer.append(record)
            self._appended += 1
            if len(buffer) >= self._batch_size:
                self._hand_over()
                self._work.notify()

    def append_many(self, records: Iterable[CallRecord], built: bool = False) -> None:
        for record in records:
            self.append(record, built)

    def _hand_over(self) -> None:
        # With the lock held: the buffer becomes a pending batch, with its flag.
        self._pending.append((self._buffer, self._buffer_raw))
        self._buffer = []
        self._buffer_raw = False

    def _wait_for_room(self) -> None:
        # Called with the lock held and the queue full: hand over what we have, then wait.
        if self._buffer:
            self._hand_over()
        failures_before = self._failures
        self._retry_now = True  # if the writer is backing off after a failure, retry now
        self._work.notify()
        while True:
            if self._stopping:  # closed (or crashed) while we waited: the writer may be gone
                raise self._refusal()
            if self._appended - self._done < self._max_queue:
                return
            if self._failures > failures_before:
                # Blocking forever on a broken disk would hang every call; say so instead.
                raise StoreError(
                    f"{self._where} cannot take more rows: {self._max_queue} rows are waiting "
                    f"and writing them fails: {self._last_error}",
                    hint="fix the cause (disk full? file removed?); the waiting rows are "
                    "kept and retried, this row was not accepted",
                )
            self._progress.wait(self._flush_interval)

    def flush(self, timeout: float | None = None) -> None:
        """Return once every row appended before the call is written: to ``calls``, or,
        for a row the database refused, to ``calls_dead_letter`` (that is not an error of
        this flush: see `health`). Raises `StoreError` while inserts fail (the rows are kept
        and retried), if the writer crashed, or after ``timeout`` seconds."""
        error = self._wait_written(timeout)
        if error is not None:
            raise error

    def settle(self, timeout: float | None = None) -> bool:
        """`flush` for reads made on behalf of a call (budget seeding): waits the same way
        but never raises; returns False if rows are still unwritten (then see `health`)."""
        return self._wait_written(timeout) is None

    def _wait_written(self, timeout: float | None) -> StoreError | None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("CallLog.flush() cannot be called from the writer thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._work:
            if self.closed:
                return None  # close() flushed, and reported anything it could not write
            target = self._appended
            failures_before = self._failures
            if self._done >= target:
                return None
            self._flush_waiters += 1
            self._retry_now = True
            self._work.notify()
            try:
                while self._done < target:
                    if self._fatal is not None:
                        error = self._refusal()
                        error.__cause__ = self._fatal
                        return error
                    if self._failures > failures_before:
                        error = StoreError(
                            f"{target - self._done} rows could not be written to "
                            f"{self._where} yet: {self._last_error}",
                            hint="they are kept and retried; fix the cause (disk full? "
                            "file removed?) and flush again",
                        )
                        error.__cause__ = self._last_error
                        return error
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return StoreError(
                            f"flush of {self._where} timed out after {timeout}s with "
                            f"{target - self._done} rows still waiting",
                            hint="flush again, or pass a longer timeout",
                        )
                    self._progress.wait(remaining)
            finally:
                self._flush_waiters -= 1
        return None

    def health(self) -> LogHealth:
        """Counts and state of the writer; see `LogHealth`."""
        with self._work:
            if self.closed:
                state = "closed"
            elif self._fatal is not None:
                state = "crashed"
            elif self._last_error is not None:
                state = "retrying"
            else:
                state = "ok"
            return LogHealth(
                state=state,
                rows_written=self.rows_written,
                rows_pending=self._appended - self._done,
                rows_dead_lettered=self.rows_dead_lettered,
                rows_spilled=self.rows_spilled,
                insert_failures=self._failures,
                last_error=self._last_problem,
            )

    def set_aside(self, records: list[CallRecord], reason: str) -> str | None:
        """Save rows that could not even be queued (closed log, queue full while inserts
        fail) to an owner-only file; counted in `health`. Returns the file, or None."""
        with self._aside_lock:  # one file for all of them, written a batch at a time
            path = spill_rows(
                self._spill_dir,
                records,
                reasons=[reason] * len(records),
                append_to=self._aside_file,
            )
            new_file = path is not None and path != self._aside_file
            self._aside_file = path or self._aside_file
        with self._work:
            if path:
                self.rows_spilled += len(records)
                if new_file:
                    self.spill_files.append(path)
            self._last_problem = f"rows could not be queued, saved to a file: {reason}"
        warnings.warn(
            f"{len(records)} rows could not be queued in {self._where} ({reason}); "
            + (f"saved to {path}" if path else "they could not be saved to a file either"),
            CallLogWarning,
            stacklevel=3,
        )
        return path

    @property
    def flush_interval(self) -> float:
        return self._flush_interval

    @property
    def pending_rows(self) -> int:
        """Rows appended but not yet written."""
        return self._appended - self._done

    @property
    def thread(self) -> threading.Thread:
        """The writer thread (a close from it must not wait for itself)."""
        return self._thread

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the log's database, for one reader thread."""
        with self._conn_lock:
            if self.closed:
                raise StoreError(f"{self._where} is closed", hint="query it before close()")
            return self._conn.cursor()

    def close(self) -> None:
        """Flush, stop the thread and close the connection. Idempotent.

        If rows cannot be written, they are saved to a JSON-lines file next to the database
        (or in the temp directory) and a `StoreError` names that file.
        """
        if threading.current_thread() is self._thread:
            # Garbage collection ran the finalizer on the writer thread, which must not wait
            # for itself: close from a helper thread (not a daemon, so exit waits for it).
            threading.Thread(target=self.close_quietly, name="aigw-call-log-close").start()
            return
        with self._close_lock:
            if not self.closed:
                self._close()

    def _close(self) -> None:
        with self._work:
            self._stopping = True  # from here on append() refuses rows
        error: StoreError | None = None
        try:
            self.flush()
        except StoreError as exc:
            error = exc
        with self._work:
            self._exit_now = True
            self._work.notify()
        self._thread.join()
        leftovers = self._unwritten_rows()
        self._close_connection()
        if error is None:
            return
        unwritten = leftovers
        spill = spill_rows(self._spill_dir, unwritten)
        if spill:
            with self._work:
                self.rows_spilled += len(unwritten)
                self.spill_files.append(spill)
        kept = f"saved to {spill}" if spill else "they could not be saved to a file either"
        raise StoreError(
            f"closing {self._where}: {len(unwritten)} rows were not written ({kept}): "
            f"{error.message}",
            hint="append the saved rows to a log again once the cause is fixed",
        ) from error

    def close_quietly(self) -> None:
        """`close` for finalizers and interpreter exit: turns errors into a warning."""
        try:
            self.close()
        except StoreError as exc:
            warnings.warn(str(exc), CallLogWarning, stacklevel=2)

    def _refusal(self) -> StoreError:
        if self._fatal is not None:
            return StoreError(
                f"the writer thread of {self._where} crashed: {self._fatal!r}",
                hint="this is a bug in aigw_lab; please report it with the error above",
            )
        return StoreError(f"{self._where} is closed", hint="append before close()")

    def _unwritten_rows(self) -> list[CallRecord]:
        with self._work:
            rows = list(self._inflight or ())
            for batch, _ in self._pending:
                rows.extend(batch)
            rows.extend(self._buffer)
            self._inflight, self._buffer = None, []
            self._pending.clear()
        if self._finish is not None:
            self._finish(rows)  # the rows are kept in a file: finished, like every other
        return rows

    def _close_connection(self) -> None:
        with self._conn_lock:
            if self.closed:
                return
            self.closed = True
            for handle in (self._cursor, self._conn):
                try:
                    handle.close()
                except Exception:  # noqa: BLE001 - closing is best effort; data is committed
                    pass

    # --- writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                if self._finish is not None:
                    self._finish_rows(batch)
                self._write(batch, raw=self._inflight_raw)
        except BaseException as exc:  # noqa: BLE001 - reported to every caller, never lost
            with self._work:
                self._fatal = exc
                self._last_problem = f"the writer thread crashed: {type(exc).__name__}"
                self._stopping = True  # refuse new rows: nobody would write them
                self._progress.notify_all()
            warnings.warn(
                f"the writer thread of {self._where} crashed: {exc!r}",
                CallLogWarning,
                stacklevel=1,
            )
            return

    def _next_batch(self) -> list[CallRecord] | None:
        with self._work:
            while True:
                if self._exit_now:
                    return None
                if self._inflight is not None:  # the last insert failed: retry it
                    wait = self._retry_at - time.monotonic()
                    if self._retry_now or wait <= 0:
                        self._retry_now = False
                        return self._inflight
                    self._work.wait(wait)
                    continue
                wait = self._flush_interval  # idle: look again after one age
                if self._buffer:
                    wait = self._buffer_since + self._flush_interval - time.monotonic()
                    if wait <= 0 or self._flush_waiters > 0 or self._stopping:
                        self._hand_over()
                if self._pending:
                    batch, raw = self._merged()
                    self._inflight = batch
                    self._inflight_raw = raw
                    self._retry_now = False
                    return batch
                if self._stopping:
                    return None
                self._work.wait(wait)

    def _merged(self) -> tuple[list[CallRecord], bool]:
        """The next batch to insert (lock held): the head pending batch and those behind it,
        cut at exactly `_max_batch` rows when more wait (the batch that does not fit is
        split, its rest first in line). A whole row group goes straight to the file; one row
        short, through the write-ahead log at 1.6x the CPU per row (bench_writer_rowgroups)."""
        pending, most = self._pending, self._max_batch
        batch, raw = pending.popleft()
        while pending and len(batch) < most:
            more, more_raw = pending[0]
            room = most - len(batch)
            if len(more) > room:
                pending[0] = (more[room:], more_raw)
                more = more[:room]
            else:
                pending.popleft()
            batch += more
            raw = raw or more_raw
        return batch, raw

    def _finish_rows(self, batch: list[Any]) -> None:
        problems = self._finish(batch)  # type: ignore[misc]
        if problems:
            with self._work:
                self._last_problem = problems[-1]
            message = f"{self._where}: {problems[0]} (and the row written)"
            warnings.warn(message, CallLogWarning, stacklevel=2)

    def _write(self, batch: list[CallRecord], *, raw: bool) -> None:
        table, good, bad = self._tables.to_table(batch, raw=raw)
        # A batch that needed sanitising here held rows the gateway did not make storable.
        built = not raw and not bad and good is batch
        try:
            if self._before_insert is not None:
                self._before_insert(len(batch))
            if self._batches.num_rows(table):
                self._inserts.insert(table, built=built)
            written, refused = len(good), []
        except Exception as exc:  # noqa: BLE001 - any failure keeps the rows for a retry
            if not is_row_problem(exc):
                self._insert_failed(exc, batch, written=0)
                return
            # Some row's values were refused: bisect, so only the culprits are set aside.
            written, refused, left, failure = isolate_refused(
                partial(self._insert_slice, table, built), good, exc
            )
            if failure is not None:  # the database itself failed half-way: retry the rest
                self._insert_failed(failure, left + [r for r, _ in bad], written=written)
                return
        dead = bad + refused
        if dead:
            failure = self._dead_letter(dead)
            if failure is not None:  # neither the table nor a file took them: retry them
                self._insert_failed(failure, [record for record, _ in dead], written=written)
                return
        with self._work:
            self._inflight = None
            self._last_error = None
            self._failures_at_last_success = self._failures
            self._done += len(batch)
            self.rows_written += written
            self._progress.notify_all()

    def _insert_failed(self, exc: Exception, keep: list[CallRecord], *, written: int) -> None:
        """Keep ``keep`` (the rows of the batch not yet written) for a retry with backoff."""
        if self._last_error is None:  # only this thread writes it: no lock needed
            # Warn before waking flush() so the warning precedes the error it raises.
            warnings.warn(
                f"could not write {len(keep)} rows to {self._where}: {exc}; "
                "they are kept and retried",
                CallLogWarning,
                stacklevel=2,
            )
        with self._work:
            if written:
                self._done += written
                self.rows_written += written
                self._inflight = keep
            self._failures += 1
            self._last_error = exc
            self._last_problem = f"inserts failing, rows kept and retried: {type(exc).__name__}"
            streak = self._failures - self._failures_at_last_success
            delay = _FIRST_RETRY_DELAY * 2 ** min(streak - 1, 10)
            self._retry_at = time.monotonic() + min(delay, _MAX_RETRY_DELAY)
            self._progress.notify_all()

    def _dead_letter(self, dead: list[tuple[CallRecord, str]]) -> Exception | None:
        """Put refused rows in ``calls_dead_letter`` (or, failing that, an owner-only file)
        and say so in a warning for the operator; never an error for any caller. Returns
        the dead-letter insert's error if no file could be written either."""
        records = [record for record, _ in dead]
        kind = dead[0][1].partition(":")[0]
        path, where, failure = write_dead_letter(self._cursor, dead, self._spill_dir, spill_rows)
        if failure is not None:
            return failure
        with self._work:
            if path is not None:
                self.spill_files.append(path)
                self.rows_spilled += len(dead)
            else:
                self.rows_dead_lettered += len(dead)
            self.rejected.extend(records)
            if len(self.rejected) > _MAX_REJECTED:  # all of them are in the table or a file
                del self.rejected[:-_MAX_REJECTED]
            self._last_problem = f"rows refused by the database, set aside: {kind}"
        warnings.warn(
            f"{self._where} refused {len(dead)} rows (first: call_id={records[0].call_id!r}, "
            f"{dead[0][1]}); they were saved to {where}, the other rows were written",
            CallLogWarning,
            stacklevel=2,
        )
        return None

    def _insert_slice(self, table: Any, built: bool, start: int, stop: int) -> None:
        if self._before_insert is not None:
            self._before_insert(stop - start)
        self._inserts.insert(self._batches.slice(table, start, stop), built=built)
