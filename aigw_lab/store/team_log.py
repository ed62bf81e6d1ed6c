"""The team log: every process of a team writes its call-log rows into one PostgreSQL
database; readers sync a local DuckDB mirror from it (`aigw_lab.store.team_mirror`).

    sink = TeamLogSink("postgresql://aigw@db.internal/aigw", spool_dir="team.spool")
    gateway = Gateway(providers, log="worker-1.duckdb", sinks=[sink])   # or [log] backend

`TeamLogSink` is a `aigw_lab.store.sink.CallSink` beside the process's own log. ``append``
copies the row into a crash spool (the call log's `aigw_lab.store.spool.Spool`: a
memory-mapped file, in the page cache at once) and queues it; a background thread sends the
queue in batches with a binary ``COPY`` (bench/bench_team_log.py: COPY against
executemany). When
PostgreSQL is unreachable the rows stay queued and spooled and the thread retries with
backoff (one `TeamLogWarning` when the outage starts, one when it ends; the same when
it cannot write its schema); a process killed
meanwhile leaves its rows in the spool, which the next sink opened on the same spool
directory sends first, skipping call ids the team log already has. A row PostgreSQL refuses
(a NUL character, say) is sent again with NULs replaced, and else goes to the team log's
``calls_dead_letter`` table: no paid call is missing.

The spool is bounded (``max_spool_bytes``, default 1 GiB): once its directory holds more
while rows wait, the sink is ``full`` (one warning and one log line); the gateway's
`aigw_lab.gateway.spool_guard.SpoolGuard` then refuses new calls with `TeamLogFullError`
(503) before they are sent, until PostgreSQL has every waiting row. Calls already in flight
are still spooled (the bound is passed by at most their rows): a paid call is never dropped,
only unpaid ones are not made. Those refusals' own rows stay in the process's log.

Writers serialise their inserts with an advisory lock (`team_log_schema.WRITE_LOCK`), so
the ``_seq`` watermark commits in order; the lock is held for one COPY of one batch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import MissingExtraError, StoreError, TeamLogFullError
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.store.spool import Spool, read_leftovers, warn_invalid
from aigw_lab.store.team_log_schema import WRITE_LOCK, ensure_schema, pg_columns

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_MAX_SPOOL_BYTES",
    "TEAM_LOG_INSTALL",
    "TeamLogSink",
    "TeamLogWarning",
    "import_psycopg",
    "safe_url",
]

#: The install command of the ``team-log`` extra.
TEAM_LOG_INSTALL = 'pip install "aigw-lab[team-log]"'
#: The spool's default bound: about a million typical rows.
DEFAULT_MAX_SPOOL_BYTES = 1 << 30
_CHECK_EVERY = 32  # appends between two measures of the spool while it is not full
_log = logging.getLogger("aigw_lab.team_log")

_DEAD_COLUMNS = (
    "call_id", "trace_id", "timestamp", "provider_name", "request_model", "status",
    "tenant_id", "user_id", "experiment_id", "cost_usd", "budget_usd",
)  # fmt: skip


# PostgreSQL's name of a column type (as `pg_columns` reports it) -> psycopg's name for a
# binary COPY.
_BINARY_TYPES = {
    "text": "text",
    "timestamp with time zone": "timestamptz",
    "integer": "int4",
    "bigint": "int8",
    "double precision": "float8",
    "boolean": "bool",
    "text[]": "text[]",
}


_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1


class TeamLogWarning(RuntimeWarning):
    """The team log is unreachable (rows wait in the spool) or reachable again."""


def import_psycopg(feature: str) -> ModuleType:
    """psycopg, or a `MissingExtraError` naming ``feature`` and the install command."""
    try:
        # lazy: psycopg is the optional team-log extra; only a team log needs it
        import psycopg
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the optional 'team-log' extra, and psycopg cannot be "
            f"imported ({exc})",
            hint=TEAM_LOG_INSTALL,
        ) from exc
    return psycopg


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)


class TeamLogSink:
    """A call sink that writes every row into the PostgreSQL team log.

    ``url`` is a libpq connection URL (``postgresql://user@host:port/db``); read it from an
    environment variable, never from a file (``[log] url_env``). ``spool_dir`` is this
    sink's crash spool: rows wait there until PostgreSQL has them (one directory per team
    log and machine; processes may share it, each writes its own segments). Rows are sent
    in batches of up to ``batch_size``, at the latest ``flush_interval`` seconds after they
    were appended. While PostgreSQL is down, the thread retries after ``retry_interval``
    seconds, doubling up to ``max_retry_interval``. ``flush_timeout`` bounds `flush` (and
    so a gateway's close) during an outage: the rows stay spooled for the next start.
    ``max_spool_bytes``: the spool directory's bound while rows wait (None: unbounded); past
    it the sink is ``full`` until PostgreSQL has every waiting row (see the module doc).
    ``connect`` opens a connection (default ``psycopg.connect(url, autocommit=True)``).
    """

    name = "team_log"

    def __init__(
        self,
        url: str,
        *,
        spool_dir: str | os.PathLike[str],
        batch_size: int = 2_000,
        flush_interval: float = 0.2,
        retry_interval: float = 0.5,
        max_retry_interval: float = 30.0,
        flush_timeout: float = 10.0,
        max_spool_bytes: int | None = DEFAULT_MAX_SPOOL_BYTES,
        connect: Callable[[str], psycopg.Connection[Any]] | None = None,
    ) -> None:
        psycopg = import_psycopg("the team log")
        if not isinstance(url, str) or not re.match(r"postgres(ql)?://", url):
            raise StoreError(
                "the team log URL must start with postgresql://",
                hint="e.g. postgresql://aigw@db.internal:5432/aigw (password in ~/.pgpass "
                "or the URL held in an environment variable)",
            )
        for label, value in (("batch_size", batch_size), ("max_spool_bytes", max_spool_bytes)):
            if value is None and label == "max_spool_bytes":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise StoreError(f"{label} must be a positive integer, not {value!r}")
        self._psycopg = psycopg
        self._url = url
        self.where = f"team log {safe_url(url)}"
        self._connect = connect or (
            lambda u: psycopg.connect(u, autocommit=True, connect_timeout=5)
        )
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry = (retry_interval, max_retry_interval)
        self._flush_timeout = flush_timeout
        self._cond = threading.Condition()
        self._queue: deque[CallRecord] = deque()
        self._appended = 0  # rows appended through the spool
        self._committed = 0  # of those, rows PostgreSQL has (in append order)
        self._stop = False
        self._conn: psycopg.Connection[Any] | None = None
        self._columns: list[str] = []
        self._types: list[str] = []
        self._int4: list[int] = []
        #: Rows sent from a dead process's spool; rows sent to ``calls_dead_letter``.
        self.recovered = 0
        self.dead_lettered = 0
        #: True while PostgreSQL is unreachable; the last error's type and text.
        self.outage = False
        self.last_error: str | None = None
        #: The bound, the spool's bytes when last measured, whether it is over the bound
        #: with rows waiting, and the rows of calls refused for it (not sent: not paid).
        self.max_spool_bytes = max_spool_bytes
        self.spool_bytes = 0
        self.full = False
        self.refused_rows = 0
        self._until_check = 0
        directory = Path(spool_dir).expanduser()
        self._leftovers = read_leftovers(directory)
        if self._leftovers.invalid:
            warn_invalid(directory, self._leftovers.invalid)
        try:
            self._spool = Spool(directory, committed=lambda: self._committed)
        except OSError as exc:
            self._leftovers.release(delete=False)
            raise StoreError(
                f"cannot create the team log spool {directory}: {exc.strerror or exc}",
                hint="make the directory writable, or set [log] team_spool elsewhere",
            ) from exc
        self.spool_dir = directory
        self._thread = threading.Thread(target=self._run, name="aigw-team-log", daemon=True)
        self._thread.start()
        # The thread holds the sink, so this runs at interpreter exit: rows still unsent
        # get a short last chance, then stay in the spool for the next start.
        self._finalizer = weakref.finalize(self, self._at_exit)

    # --- the calling side ---------------------------------------------------------------

    def append(self, record: CallRecord) -> None:
        """Spool and queue one row (cheap; never waits for PostgreSQL). Raises `StoreError`
        after `close` (a gateway counts it in ``sink_health``; its own log has the row)."""
        if self._stop:
            raise StoreError(f"the sink of the {self.where} is closed")
        if record.error_type == TeamLogFullError.error_type:
            self.refused_rows += 1  # refused for this sink, never sent: the own log has it
            return
        spool = self._spool
        with spool.lock:
            spool.write_end(record)
            spool.ends += 1
            with self._cond:
                self._queue.append(record)
                self._appended += 1
                if len(self._queue) >= self._batch_size:
                    self._cond.notify_all()
        if self.max_spool_bytes is not None:
            self._until_check -= 1
            if self._until_check <= 0 or self.full:
                self._until_check = _CHECK_EVERY
                self._check_spool()

    def _check_spool(self) -> None:
        """Measure the spool directory and set `full`: over the bound while rows wait. One
        warning and log line when it fills, one when it is taken again."""
        total = 0
        try:
            with os.scandir(self.spool_dir) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            return  # gone (closed) or unreadable: the spool itself reports its problems
        self.spool_bytes = total
        waiting = self._appended > self._committed or bool(self._leftovers.segments)
        full = waiting and self.max_spool_bytes is not None and total > self.max_spool_bytes
        if full == self.full:
            return
        self.full = full
        if full:
            message = (
                f"{self.where}: its spool {self.spool_dir} holds {total} bytes, over "
                f"max_spool_bytes={self.max_spool_bytes}, while {self.pending_rows} rows wait "
                f"({self.last_error or 'PostgreSQL is slow'}); new calls are refused "
                "(TeamLogFullError, 503) until it has them"
            )
        else:
            message = f"{self.where} has every waiting row again; new calls are accepted"
        _log.warning("%s", message)
        warnings.warn(message, TeamLogWarning, stacklevel=3)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until PostgreSQL has every row appended so far. Raises `StoreError` after
        ``timeout`` seconds (default ``flush_timeout``) if it does not: the rows are still
        spooled and queued, and will be sent when it is back."""
        timeout = self._flush_timeout if timeout is None else timeout
        with self._cond:
            target = self._appended
            self._cond.notify_all()
            done = self._cond.wait_for(
                lambda: (self._committed >= target and not self._leftovers.segments) or self._stop,
                timeout=timeout,
            )
            if not done or self._committed < target or self._leftovers.segments:
                waiting = target - self._committed + len(self._leftovers.records)
                raise StoreError(
                    f"{self.where} has not taken {waiting} rows yet"
                    + (f" ({self.last_error})" if self.last_error else ""),
                    hint=f"the rows wait in {self.spool_dir} and are sent when PostgreSQL "
                    "is reachable; check that it is running",
                )

    def close(self) -> None:
        """Send what is queued (waiting at most ``flush_timeout``), stop the thread and
        release the spool (kept on disk when rows are still unsent)."""
        if self._stop:
            return
        try:
            self.flush()
        except StoreError as exc:
            warnings.warn(f"{exc}; closing anyway", TeamLogWarning, stacklevel=2)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=self._flush_timeout)
        with self._cond:
            sent = self._committed >= self._appended and not self._leftovers.segments
        self._spool.close(delete=sent)
        self._finalizer.detach()
        if self._conn is not None:
            self._close_conn()

    def _at_exit(self) -> None:
        try:
            self.flush(timeout=min(self._flush_timeout, 2.0))
        except StoreError:
            pass
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            sent = self._committed >= self._appended and not self._leftovers.segments
        try:
            self._spool.close(delete=sent)
        except OSError:
            pass

    @property
    def start_spool(self) -> Spool | None:
        """This sink's spool, for the gateway to write each call's start in before its
        request leaves (`aigw_lab.gateway.start_spools`): a process killed mid-call leaves
        the start without an end, and the next sink opened on the spool directory sends it
        as an ``interrupted`` row. None once closed."""
        return None if self._stop else self._spool

    @property
    def pending_rows(self) -> int:
        """Rows appended that PostgreSQL does not have yet."""
        return self._appended - self._committed

    @property
    def rows_written(self) -> int:
        """Rows this sink appended that PostgreSQL has (recovered rows not counted)."""
        return self._committed

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        delay = self._retry[0]
        while True:
            with self._cond:
                if not self._stop and len(self._queue) < self._batch_size:
                    self._cond.wait(self._flush_interval)
                if self._stop and (not self._queue or self.outage):
                    return
                batch = [self._queue[i] for i in range(min(len(self._queue), self._batch_size))]
            try:
                self._ensure_connected()
                if self._leftovers.segments:
                    self._send_leftovers()
                    with self._cond:
                        self._cond.notify_all()
                if batch:
                    self._send(batch)
            except Exception as exc:  # noqa: BLE001 - the thread must live: rows wait on it
                # Unreachable, or a schema it cannot write (StoreError): either way the rows
                # stay queued and spooled, and it tries again.
                self._outage(exc)
                with self._cond:
                    self._cond.wait_for(lambda: self._stop, timeout=delay)
                delay = min(delay * 2, self._retry[1])
                continue
            delay = self._retry[0]
            if self.outage:
                self.outage = False
                warnings.warn(f"{self.where} is reachable again", TeamLogWarning, stacklevel=1)
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self._committed += len(batch)
                self._cond.notify_all()
            if self.full:
                self._check_spool()  # no call appends while full: the thread clears it

    def _ensure_connected(self) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        self._conn = self._connect(self._url)
        columns = ensure_schema(self._conn)["calls"]
        if list(CALL_COLUMNS) != columns:
            # A CallRecord field without a migration, or the reverse: a bug, caught here
            # rather than as rows in the wrong columns.
            raise StoreError(f"CallRecord's fields differ from the calls table: {columns}")
        self._columns = columns
        have = pg_columns(self._conn, "calls")
        self._types = [_BINARY_TYPES[have[c]] for c in columns]
        self._int4 = [i for i, kind in enumerate(self._types) if kind == "int4"]

    def _outage(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        self._close_conn()
        if not self.outage:
            self.outage = True
            warnings.warn(
                f"{self.where} cannot take rows ({self.last_error}); rows wait in "
                f"{self.spool_dir} and are retried",
                TeamLogWarning,
                stacklevel=1,
            )

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _send(self, rows: Sequence[CallRecord]) -> None:
        """COPY ``rows`` in one transaction; a batch PostgreSQL (or the binary encoding: an
        integer out of its column's range) refuses goes row by row."""
        assert self._conn is not None
        try:
            self._copy(rows)
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError):
            raise
        except Exception:  # noqa: BLE001 - a refused row: found and set aside below
            for row in rows:
                self._send_one(row)

    def _copy(self, rows: Sequence[CallRecord]) -> None:
        assert self._conn is not None
        columns = ", ".join(f'"{c}"' for c in self._columns)
        with self._conn.transaction(), self._conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            # Binary: 2.9x executemany's rows/s and 40% of text COPY's client CPU per row
            # (bench/bench_team_log.py).
            with cursor.copy(f"COPY calls ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(self._types)
                int4 = self._int4
                for row in rows:
                    for i in int4:
                        # The binary encoder wraps an int4 out of range (2**40 is stored as
                        # 0) where PostgreSQL's own parser refuses it: refuse it here.
                        if row[i] is not None and not _INT4_MIN <= row[i] <= _INT4_MAX:
                            raise ValueError(f"{self._columns[i]} = {row[i]} is out of range")
                    # psycopg sends lists, not tuples, as arrays.
                    copy.write_row(row if row.flags is None else row._replace(flags=[*row.flags]))

    def _send_one(self, row: CallRecord) -> None:
        """One refused row: again with NUL characters replaced, else as a dead letter."""
        try:
            self._copy([_without_nul(row)])
            return
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError):
            raise
        except Exception as exc:  # noqa: BLE001 - refused again: a dead letter
            error = f"{type(exc).__name__}: {exc}"
        values = [getattr(row, c) for c in _DEAD_COLUMNS]
        row_json = json.dumps(dict(zip(CALL_COLUMNS, row, strict=True)), default=str)
        assert self._conn is not None
        with self._conn.transaction():
            self._conn.execute(
                f"INSERT INTO calls_dead_letter ({', '.join(_DEAD_COLUMNS)}, error, row_json, "
                f"dead_lettered_at) VALUES ({', '.join(['%s'] * (len(_DEAD_COLUMNS) + 3))})",
                [*(_clean(v) for v in values), error.replace("\x00", "\ufffd"),
                 row_json.replace("\\u0000", "\\ufffd"), datetime.now(UTC)],
            )  # fmt: skip
        self.dead_lettered += 1

    def _send_leftovers(self) -> None:
        """Send what a dead process left in the spool (call ids already there skipped)."""
        assert self._conn is not None
        records = self._leftovers.records
        ids = [r.call_id for r in records]
        found = {
            cid
            for (cid,) in self._conn.execute(
                "SELECT call_id FROM calls WHERE call_id = ANY(%s)", [ids]
            ).fetchall()
        }
        fresh = [r for r in records if r.call_id not in found]
        for start in range(0, len(fresh), self._batch_size):
            self._send(fresh[start : start + self._batch_size])
        self.recovered += len(fresh)
        self._leftovers.release(delete=True)


def _clean(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _without_nul(row: CallRecord) -> CallRecord:
    values = [
        [_clean(v) for v in value] if isinstance(value, (list, tuple)) else _clean(value)
        for value in row
    ]
    return CallRecord._make(values)
