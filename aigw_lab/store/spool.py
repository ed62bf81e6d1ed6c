"""The call log's spool: an append-only file of call *starts* and *ends*, so that a process
killed at any moment (SIGKILL, OOM killer, ``os._exit``) loses no call.

`CallLog` keeps rows in memory for up to ``flush_interval`` seconds before DuckDB has them. A
file log therefore also writes each row to the spool first (one ``os.write``), and the
gateway writes a *start* frame before a request leaves for the provider. When the log is
opened again, `read_leftovers` turns what a dead process left behind into rows: an end
becomes its row; a start with no end becomes a row with ``status = 'interrupted'`` (the
request was sent, its outcome is unknown). Replay is idempotent: `CallLog` skips call ids
already in ``calls``.

Layout: ``<db>.spool/`` holds segment files, one writer each, locked with ``flock`` while
their process lives (another `CallLog` replays only unlocked ones). A frame is a 9-byte
header (kind ``S``/``E``, payload length, CRC-32) and a `marshal`-encoded tuple of plain
values (str, int, float, bool, None; timestamps as integer microseconds since the epoch).
marshal, not JSON: a full row encodes in ~2 µs instead of ~7 µs, and each call writes two
frames. What a file supplies is checked before it becomes a row: the CRC, then marshal in a
``try``, then every value's type against its column. A torn last frame (the process died
mid-write) fails the length or CRC check and is skipped.

Durability (``durability``): ``"os"`` hands every frame to the kernel with one ``os.write``:
it survives the process dying, not the machine. ``"fsync"`` also calls ``fdatasync`` every
``fsync_interval`` seconds from a helper thread (a power loss loses at most that much), or
after every frame when ``fsync_interval`` is 0 (each call then waits for the disk).
``"none"`` writes no spool (rows can be lost, as before). Costs: docs/performance.md.

Once the writer has committed rows, their frames are dead weight: the active segment is
rotated at ``segment_bytes``, the starts of calls still in flight are copied into the new
segment, and the old one is deleted once every row appended before the rotation is written.
"""

from __future__ import annotations

import marshal
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aigw_lab.store.records import CALL_COLUMNS, CallRecord

try:  # POSIX; elsewhere segments are not locked (one log per file per process, then)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DURABILITY_LEVELS",
    "START_FIELDS",
    "Leftovers",
    "Spool",
    "interrupted_record",
    "read_leftovers",
    "read_segment",
    "spool_dir",
]

#: Values of ``durability`` (``[log] durability`` in a config file).
DURABILITY_LEVELS = ("none", "os", "fsync")

#: The fields of a start frame, in order: what an `interrupted` row can say about a call.
START_FIELDS: tuple[str, ...] = (
    "call_id",
    "trace_id",
    "timestamp",
    "provider_name",
    "request_model",
    "api_format",
    "stream",
    "cache_status",
    "attempt",
    "fallback_from",
    "user_id",
    "tenant_id",
    "experiment_id",
    "tags_json",
    "metadata_json",
    "simulated",
    "run_id",
    "item_id",
    "target",
    "repetition",
)

INTERRUPTED_MESSAGE = (
    "the gateway process ended while this call was in flight, so its outcome is unknown: "
    "the provider may have answered (and charged for it)"
)

_HEADER = struct.Struct("<cII")  # kind, payload length, CRC-32 of the payload
_START, _END = b"S", b"E"
_SUFFIX = ".spool"
_MAX_PAYLOAD = 64 << 20  # a larger length is a corrupt header, not a row
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TIMESTAMP_INDEX = CALL_COLUMNS.index("timestamp")
_NONE = type(None)
_ALLOWED_TYPES: dict[str, tuple[type, ...]] = {
    "VARCHAR": (str, _NONE),
    "JSON": (str, _NONE),
    "BIGINT": (int, _NONE),
    "INTEGER": (int, _NONE),
    "DOUBLE": (float, int, _NONE),
    "BOOLEAN": (bool, _NONE),
    "TIMESTAMPTZ": (int,),
}


def spool_dir(db_path: str | os.PathLike[str]) -> Path:
    """The spool directory of the call log at ``db_path``: ``<db_path>.spool``."""
    return Path(f"{os.fspath(db_path)}{_SUFFIX}")


def timestamp_us(value: Any) -> Any:
    """A row's timestamp as integer microseconds since the epoch (naive = UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _MICROSECOND
    return value


def _frame(kind: bytes, values: tuple[Any, ...]) -> bytes:
    payload = marshal.dumps(values)
    return _HEADER.pack(kind, len(payload), zlib.crc32(payload)) + payload


class Spool:
    """The spool segment this process appends to. Used through `CallLog`.

    ``committed`` returns how many of the rows this spool has seen (`end` calls) the writer
    has written so far; the spool deletes a rotated segment once that passes the segment's
    last row. Every method is thread-safe.
    """

    def __init__(
        self,
        directory: Path,
        *,
        committed: Callable[[], int],
        durability: str = "os",
        fsync_interval: float = 0.05,
        segment_bytes: int = 8 << 20,
    ) -> None:
        if durability not in ("os", "fsync"):
            raise ValueError(f"a spool's durability is 'os' or 'fsync', not {durability!r}")
        if fsync_interval < 0:
            raise ValueError("fsync_interval must be >= 0 seconds")
        self.directory = directory
        self.durability = durability
        self._committed = committed
        self._segment_bytes = segment_bytes
        self._sync_each = durability == "fsync" and fsync_interval == 0
        self.lock = threading.Lock()
        self._open: dict[str, bytes] = {}  # call_id -> start frame, for calls in flight
        self.ends = 0  # rows appended through this spool (CallLog.append counts them)
        self._sealed: list[tuple[int, int, Path]] = []  # (rows before the seal, fd, path)
        self._keep = False  # set when a row was spooled but refused: keep every segment
        self._counter = 0
        self._size = 0
        self._dirty = False
        self.closed = False
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd, self._path = self._new_segment()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if durability == "fsync" and fsync_interval > 0:
            self._syncer = threading.Thread(
                target=self._sync_loop,
                args=(fsync_interval,),
                name="aigw-call-log-fsync",
                daemon=True,
            )
            self._syncer.start()

    # --- writing (callers hold no lock) -------------------------------------------------

    def start(self, values: tuple[Any, ...]) -> None:
        """Record that a call (``values`` in `START_FIELDS` order) is about to be sent."""
        frame = _frame(_START, values)
        with self.lock:
            self._open[values[0]] = frame
            self._write(frame, 0)

    def write_end(self, record: CallRecord) -> None:
        """Write ``record``'s end frame. The caller holds `lock` and appends the row to the
        writer before releasing it (so a rotation never seals a segment with a row the
        writer has not been given); then it adds 1 to `ends`."""
        values = (*record[:_TIMESTAMP_INDEX], timestamp_us(record.timestamp))
        values += record[_TIMESTAMP_INDEX + 1 :]
        try:
            frame = _frame(_END, values)
        except ValueError:
            # A value marshal cannot hold (not a plain str/int/float/bool/None): the writer
            # still gets the row; only its crash safety is lost, and the start stays open.
            return
        self._open.pop(record.call_id, None)
        self._write(frame, 1)
        if self._sealed and not self._keep and self._sealed[0][0] <= self._committed():
            self._drop_sealed()

    def refused(self) -> None:
        """A spooled row was refused by the writer: keep every segment for the next open."""
        self._keep = True

    def _write(self, frame: bytes, rows: int) -> None:
        # Called with the lock held; ``rows`` is 1 for an end frame, whose row `ends` does
        # not count yet (the caller adds it after queueing the row). One write per frame,
        # with O_APPEND; a short write (disk full) is finished, not left torn.
        if self.closed:
            return
        view = memoryview(frame)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(frame)
        if self._sync_each:
            os.fdatasync(self._fd)
        else:
            self._dirty = True
        if self._size >= self._segment_bytes:
            self._rotate(self.ends + rows)

    # --- segments -----------------------------------------------------------------------

    def _new_segment(self) -> tuple[int, Path]:
        self._counter += 1
        path = self.directory / f"{os.getpid()}-{os.urandom(4).hex()}-{self._counter:06d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "alive": not for replay
        if self.durability == "fsync":
            _fsync_dir(self.directory)  # the new name must survive a power loss too
        return fd, path

    def _rotate(self, rows: int) -> None:
        """Start a new segment; the old one holds the ends of the first ``rows`` rows."""
        old_fd, old_path = self._fd, self._path
        if self.durability == "fsync":
            os.fdatasync(old_fd)
        self._fd, self._path = self._new_segment()
        self._size = 0
        carried = b"".join(self._open.values())  # calls still in flight start here again
        if carried:
            view = memoryview(carried)
            while view:
                view = view[os.write(self._fd, view) :]
            self._size = len(carried)
        self._sealed.append((rows, old_fd, old_path))

    def _drop_sealed(self) -> None:
        committed = self._committed()
        while self._sealed and self._sealed[0][0] <= committed:
            _, fd, path = self._sealed.pop(0)
            _unlink(path)
            os.close(fd)

    def _sync_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self.lock:
                if not self._dirty or self.closed:
                    continue
                self._dirty = False
                fd = os.dup(self._fd)  # outlives a rotation that closes the original
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def close(self, *, delete: bool) -> None:
        """Stop writing. ``delete``: every row reached the database, so remove the segments;
        otherwise keep them for the next open to replay."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self.lock:
            if self.closed:
                return
            self.closed = True
            segments = [(fd, path) for _, fd, path in self._sealed] + [(self._fd, self._path)]
            self._sealed = []
            for fd, path in segments:
                if delete and not self._keep:
                    _unlink(path)
                elif self.durability == "fsync":
                    os.fdatasync(fd)
                os.close(fd)
        if delete and not self._keep:
            try:
                self.directory.rmdir()  # only if empty: another log's segments stay
            except OSError:
                pass


# --- replay -------------------------------------------------------------------------------


@dataclass
class Leftovers:
    """What dead processes left in a spool directory: rows to insert (ends, and
    `interrupted` rows for starts without an end), and the segments they came from
    (held locked until `release`)."""

    records: list[CallRecord] = field(default_factory=list)
    torn: int = 0  # frames cut short by the crash (skipped)
    invalid: list[str] = field(default_factory=list)  # what was wrong, per bad frame
    segments: list[tuple[int, Path]] = field(default_factory=list)
    bad_segments: set[str] = field(default_factory=set)  # names of segments with bad frames

    def release(self, *, delete: bool) -> None:
        """Close the segments; ``delete`` them once their rows are in the database (one
        holding unreadable frames is renamed ``*.bad`` instead, for inspection)."""
        for fd, path in self.segments:
            if delete and path.name in self.bad_segments:
                try:
                    path.rename(path.with_name(path.name + ".bad"))
                except OSError:
                    pass
            elif delete:
                _unlink(path)
            os.close(fd)
        self.segments = []


def read_leftovers(directory: Path) -> Leftovers:
    """Read every segment in ``directory`` that no live process holds. Segments owned by
    another user are left alone (the spool is private to the log's owner)."""
    found = Leftovers()
    if not directory.is_dir():
        return found
    starts: dict[str, tuple[Any, ...]] = {}
    ends: dict[str, CallRecord] = {}
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_uid != os.getuid():
                raise BlockingIOError  # not ours: leave it
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live log is writing it (or it is not ours)
            os.close(fd)
            continue
        found.segments.append((fd, path))
        with open(fd, "rb", closefd=False) as stream:
            data = stream.read()
        _parse(data, path.name, starts, ends, found)
    for call_id, values in starts.items():
        if call_id not in ends:
            found.records.append(interrupted_record(values))
    found.records.extend(ends.values())
    return found


def read_segment(path: str | os.PathLike[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """The frames of one segment file as ``("start" | "end", values)``, for inspection and
    tests (no lock taken; unreadable frames left out). End values are in `CALL_COLUMNS`
    order, start values in `START_FIELDS` order; timestamps as microseconds."""
    frames: list[tuple[str, tuple[Any, ...]]] = []
    data = Path(path).read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        kind, length, crc = _HEADER.unpack_from(data, offset)
        body = data[offset + _HEADER.size : offset + _HEADER.size + length]
        offset += _HEADER.size + length
        if kind not in (_START, _END) or len(body) < length:
            break
        problem, values = _decode(body, crc, kind)
        if problem is None:
            frames.append(("start" if kind == _START else "end", values))
    return frames


def _parse(
    data: bytes,
    name: str,
    starts: dict[str, tuple[Any, ...]],
    ends: dict[str, CallRecord],
    found: Leftovers,
) -> None:
    offset, size = 0, len(data)
    while offset < size:
        if size - offset < _HEADER.size:
            found.torn += 1
            return
        kind, length, crc = _HEADER.unpack_from(data, offset)
        if kind not in (_START, _END) or length > _MAX_PAYLOAD:
            found.invalid.append(f"{name}@{offset}: not a frame header; rest of file skipped")
            found.bad_segments.add(name)
            return
        body = data[offset + _HEADER.size : offset + _HEADER.size + length]
        offset += _HEADER.size + length
        if len(body) < length:
            found.torn += 1
            return
        problem, values = _decode(body, crc, kind)
        if problem is not None:
            found.invalid.append(f"{name}@{offset - length - _HEADER.size}: {problem}")
            found.bad_segments.add(name)
            continue
        if kind == _START:
            starts.setdefault(values[0], values)
        else:
            record = CallRecord._make(values)
            ends[record.call_id] = record._replace(
                timestamp=_EPOCH + values[_TIMESTAMP_INDEX] * _MICROSECOND
            )


def _decode(body: bytes, crc: int, kind: bytes) -> tuple[str | None, tuple[Any, ...]]:
    if zlib.crc32(body) != crc:
        return "checksum mismatch", ()
    try:
        values = marshal.loads(body)
    except Exception:  # noqa: BLE001 - any undecodable payload is just a bad frame
        return "undecodable payload", ()
    names = START_FIELDS if kind == _START else CALL_COLUMNS
    if type(values) is not tuple or len(values) != len(names):
        return "wrong number of fields", ()
    for name, value in zip(names, values, strict=True):
        if type(value) not in _types()[name]:
            return f"column {name}: unexpected {type(value).__name__}", ()
    if not values[0]:
        return "empty call_id", ()
    return None, values


_TYPES_CACHE: dict[str, tuple[type, ...]] = {}


def _types() -> dict[str, tuple[type, ...]]:
    # Built on first replay, not at import (no import-time work beyond constants).
    if not _TYPES_CACHE:
        from aigw_lab.store.schema import COLUMN_TYPES

        _TYPES_CACHE.update({n: _ALLOWED_TYPES[t] for n, t in COLUMN_TYPES.items()})
    return _TYPES_CACHE


def interrupted_record(values: tuple[Any, ...]) -> CallRecord:
    """The row of a call whose start was spooled but whose end never was."""
    fields = dict(zip(START_FIELDS, values, strict=True))
    fields["timestamp"] = _EPOCH + fields["timestamp"] * _MICROSECOND
    return CallRecord(
        **fields,
        status="interrupted",
        error_type="interrupted",
        error_message=INTERRUPTED_MESSAGE,
    )


def known_call_ids(conn: Any, records: Iterable[CallRecord]) -> set[str]:
    """The call ids of ``records`` already in the ``calls`` table of ``conn``."""
    import pyarrow as pa

    rows = list(records)
    if not rows:
        return set()
    ids = pa.table({"call_id": [r.call_id for r in rows]})
    since = min(r.timestamp for r in rows) - timedelta(days=1)
    cursor = conn.cursor()
    try:
        cursor.register("_aigw_spooled_ids", ids)
        # The timestamp filter lets DuckDB skip row groups by their min/max statistics.
        found = cursor.execute(
            "SELECT call_id FROM calls WHERE timestamp >= ? "
            "AND call_id IN (SELECT call_id FROM _aigw_spooled_ids)",
            [since],
        ).fetchall()
    finally:
        cursor.close()
    return {row[0] for row in found}


def warn_invalid(directory: Path, invalid: list[str]) -> None:
    """Say that some spooled frames could not be read (they are skipped, not guessed at)."""
    from aigw_lab.store.writer import CallLogWarning

    shown = "; ".join(invalid[:5]) + (f"; ... ({len(invalid)} in all)" if len(invalid) > 5 else "")
    warnings.warn(
        f"skipped {len(invalid)} unreadable frames in the call log spool {directory}: {shown}",
        CallLogWarning,
        stacklevel=3,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
