"""The call log's spool: an append-only file of call *starts* and *ends*, so that a process
killed at any moment (SIGKILL, OOM killer, ``os._exit``) loses no call.

`CallLog` keeps rows in memory for up to ``flush_interval`` seconds before DuckDB has them. A
file log therefore also puts each row in the spool first, and the gateway puts a *start*
frame there before a request leaves for the provider. When the log is opened again,
`read_leftovers` turns what a dead process left behind into rows: an end becomes its row; a
start with no end becomes a row with ``status = 'interrupted'`` (the request was, or was
about to be, sent; its outcome is unknown). Replay is idempotent: `CallLog` skips call ids
already in ``calls``.

Layout: ``<db>.spool/`` holds segment files, one writer each, locked with ``flock`` while
their process lives (another `CallLog` replays only unlocked ones); each is made under a
temporary name (``*.spool-new``, never replayed), locked, then renamed, so a replay never
takes a segment its creator has not locked yet. A segment is
preallocated (256 KiB) and mapped into memory; frames are copied into the mapping one after
the other (see `Spool` for why not ``os.write``). A frame is a 9-byte header (kind
``s``/``e``, payload length, Adler-32 of the payload) and a `marshal`-encoded tuple of plain
values (str, int, float, bool, None; timestamps as float seconds since the epoch, which
round-trip to the microsecond). Frames of kinds ``S``/``E`` (CRC-32), written by earlier
versions, are read too. An end frame holds ``(timestamp, row[:2], row[3:])``: three items
instead of a rebuilt 44-tuple. marshal, not JSON: a full row encodes in ~2 µs instead of
~7 µs. The payload is copied first and the header last: a process killed in between leaves
zeros where the header goes, which ends the segment. What a file supplies is checked before
it becomes a row: the checksum, then marshal in a ``try``, then every value's type against
its column. A frame the process died copying fails the length or checksum check and is
skipped; so is a corrupt one elsewhere, with a warning. A row the gateway hands over
unfinished (`CallLog.append_later`, a log storing bodies in full) has a ``u`` end frame
instead: the item the writer finishes, ``(values, max_body_chars)``, the request in plain
fields, which replay finishes as the writer thread does (`aigw_lab.store.spool_rows`); the
calling thread then neither encodes the request's JSON nor sanitises the row, and the writer
is queued the frame's payload itself (bytes: nothing for the garbage collector to walk while
the row waits; `aigw_lab.store.unfinished`).

Durability (``durability``): ``"os"``: every frame is in the kernel's page cache as soon as
it is copied: it survives the process dying, not the machine. ``"fsync"`` also calls
``fdatasync`` every ``fsync_interval`` seconds from a helper thread (a power loss loses at
most that much), or after every frame when ``fsync_interval`` is 0 (each call then waits for
the disk). ``"none"`` writes no spool (rows can be lost, as before). Costs:
docs/performance.md.

Once the writer has committed rows, their frames are dead weight: when a segment is full, the
next one is started with the starts of the calls still in flight; once every row whose end
the full one holds is written, it is emptied (zeroed) and kept as the next segment to use.
Reusing it, not a new file, is what keeps a frame cheap on the calling thread: the pages stay
mapped, where the first write into each page of a new file takes a page fault (~4 µs here,
one every ~6 calls; docs/performance.md).
"""

from __future__ import annotations

import errno
import marshal
import mmap
import os
import threading
import warnings
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw_lab.store.files import PRIVATE_FILE_MODE, make_private_dirs
from aigw_lab.store.records import CallRecord
from aigw_lab.store.spool_replay import (
    END_KIND,
    FRAME_HEADER,
    INTERRUPTED_MESSAGE,
    SEGMENT_SUFFIX,
    START_FIELDS,
    START_KIND,
    TEMP_SUFFIX,
    Leftovers,
    interrupted_record,
    known_call_ids,
    read_leftovers,
    read_segment,
    unlink_quietly,
    warn_invalid,
)
from aigw_lab.store.spool_rows import UNFINISHED_KIND
from aigw_lab.store.writer import CallLogWarning

try:  # POSIX; elsewhere segments are not locked (one log per file per process, then)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DURABILITY_LEVELS",
    "INTERRUPTED_MESSAGE",
    "START_FIELDS",
    "Leftovers",
    "Spool",
    "interrupted_record",
    "known_call_ids",
    "read_leftovers",
    "read_segment",
    "spool_dir",
    "warn_invalid",
]

#: Values of ``durability`` (``[log] durability`` in a config file).
DURABILITY_LEVELS = ("none", "os", "fsync")

_START, _END, _UNFINISHED = START_KIND, END_KIND, UNFINISHED_KIND
_SUFFIX = SEGMENT_SUFFIX
_HEADER = FRAME_HEADER
_CREATE_ATTEMPTS = 3  # tries at creating a segment whose temporary file a scan takes away


def spool_dir(db_path: str | os.PathLike[str]) -> Path:
    """The spool directory of the call log at ``db_path``: ``<db_path>.spool``."""
    return Path(f"{os.fspath(db_path)}{_SUFFIX}")


def epoch_seconds(value: Any) -> Any:
    """A row's timestamp as float seconds since the epoch (naive = UTC)."""
    if type(value) is datetime or isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return value


# marshal format 2: no table of shared references to build per frame (~30% faster here).
# Pure-Python encoders (a struct pack per shape of the row, NUL-joined texts) and an end frame
# reusing its start's payload were measured against it and lost or tied, hot and cache-cold
# (bench/bench_spool_parts.py, docs/performance.md).
_dumps = marshal.dumps
# Adler-32 (the kinds written now): it needs no lookup table, so unlike CRC-32 it costs little
# when the table is not in the CPU cache, as between two gateway calls (docs/performance.md).
_checksum = zlib.adler32
_pack_header = _HEADER.pack_into
_HEADER_SIZE = _HEADER.size


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload), _checksum(payload)) + payload


class _Segment:
    """One segment file, preallocated and mapped into memory; frames are copied into the
    mapping at ``used``."""

    __slots__ = ("path", "fd", "map", "used")

    def __init__(self, path: Path, size: int) -> None:
        # Made under a temporary name that the leftover scan never reads as a segment,
        # locked, then renamed into place: created under its final name, a segment could be
        # locked by another process's scan before its creator locked it, and be taken for a
        # dead process's (deleted, the creator's frames going into a file no longer there).
        # A creator that finds its temporary file taken away (a scan removed it as garbage,
        # only possible after `TEMP_GRACE_S`) starts again under another name.
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            temp = path.with_name(f"{path.name.removesuffix(_SUFFIX)}-{attempt}{TEMP_SUFFIX}")
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            mapping = None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "alive": not for replay
                try:
                    # Blocks reserved now: a full disk fails here, not as SIGBUS on a later
                    # write into the mapping.
                    os.posix_fallocate(fd, 0, size)
                except AttributeError:  # pragma: no cover - no posix_fallocate (macOS)
                    os.ftruncate(fd, size)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    os.ftruncate(fd, size)  # a file system without fallocate: sparse, then
                mapping = mmap.mmap(fd, size)
                os.rename(temp, path)
            except (BlockingIOError, FileNotFoundError):
                # A scan holds the temporary file or has removed it: start again.
                if mapping is not None:
                    mapping.close()
                os.close(fd)
                if attempt == _CREATE_ATTEMPTS:
                    raise
                continue
            except BaseException:
                if mapping is not None:
                    mapping.close()
                os.close(fd)
                unlink_quietly(temp)
                raise
            break
        assert mapping is not None  # the loop either made it or raised
        self.map = mapping
        self.path, self.fd, self.used = path, fd, 0

    def clear(self) -> None:
        """Zero the frames written so far, for reuse. Called only once every row the
        segment holds is in the database, so a process killed part way through leaves at
        worst some of those rows, which replay skips (or a cut frame, taken for torn)."""
        self.map[: self.used] = bytes(self.used)
        self.used = 0

    def close(self, *, delete: bool, sync: bool) -> None:
        if sync and not delete:
            self.map.flush()
        self.map.close()
        if delete:
            unlink_quietly(self.path)
        else:
            os.ftruncate(self.fd, self.used)  # the unused tail is zeros; drop it
        os.close(self.fd)


class Spool:
    """The spool segment this process appends to. Used through `CallLog`.

    ``committed`` returns how many of the rows this spool has seen (`end` calls) the writer
    has written so far; the spool deletes a rotated segment once that passes the segment's
    last row. Every method is thread-safe.

    Frames are copied into a shared memory map of the segment file, not written with
    ``os.write``: the pages belong to the kernel's page cache, so they outlive the process
    just the same, but the copy needs no system call and keeps the GIL. A write that
    releases the GIL hands it to the log's writer thread whenever that is waiting for it;
    measured in the gateway, two ``os.write`` calls per call added ~45 µs of CPU (GIL
    hand-offs) where the frames themselves cost ~10 µs (docs/performance.md). Nor is the
    mapping flushed (``msync``) on the calling thread: a process killed with SIGKILL loses
    nothing already copied into it, since the pages are the page cache; only the machine
    dying (power loss, kernel crash) can lose them, which is what ``durability = "fsync"``
    is for.
    """

    def __init__(
        self,
        directory: Path,
        *,
        committed: Callable[[], int],
        durability: str = "os",
        fsync_interval: float = 0.05,
        segment_bytes: int = 256 << 10,
    ) -> None:
        if durability not in ("os", "fsync"):
            raise ValueError(f"a spool's durability is 'os' or 'fsync', not {durability!r}")
        if fsync_interval < 0:
            raise ValueError("fsync_interval must be >= 0 seconds")
        self.directory = directory
        self.durability = durability
        self._committed = committed
        self._segment_bytes = segment_bytes
        # Under "os" a frame is done once copied: one attribute tested per frame, nothing
        # stored (`_synced_frame` is for "fsync" only).
        self._fsync = durability == "fsync"
        self._sync_each = self._fsync and fsync_interval == 0
        self.lock = threading.Lock()
        self._open: dict[str, bytes] = {}  # call_id -> start payload, for calls in flight
        self.ends = 0  # rows appended through this spool (CallLog.append counts them)
        self._sealed: list[tuple[int, _Segment]] = []  # (rows before the seal, segment)
        # A sealed segment whose rows were all written, emptied, for the next rotation: its
        # pages stay mapped and warm, where a new file's first write into each page faults.
        self._spare: _Segment | None = None
        self._keep = False  # set when a row was spooled but refused: keep every segment
        self._counter = 0
        self._dirty = False
        self.failed: OSError | None = None  # the spool could not go on (disk full, say)
        self.closed = False
        make_private_dirs(directory)
        self._segment = self._new_segment(0)
        # The current segment's mapping, its bytes used, and how far frames may go (-1 once
        # the spool is closed or failed): the writes check one number.
        self._map = self._segment.map
        self._used = 0
        self._limit = len(self._map)
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

    # --- writing ------------------------------------------------------------------------

    def start(self, values: tuple[Any, ...]) -> None:
        """Record that a call (``values`` in `START_FIELDS` order) is about to be sent."""
        # This, `write_end` and `write_unfinished` run on the calling thread of every gateway
        # call, so the copy into the mapping is written out in each rather than in a shared
        # helper: each Python call level costs a measurable share of the budget
        # (docs/performance.md).
        try:
            payload = _dumps(values, 2)
        except ValueError:  # a value marshal cannot hold: send the call unprotected
            return
        with self.lock:
            used = self._used
            end = used + _HEADER_SIZE + len(payload)
            if end > self._limit:
                self._write_slow(_START, payload)
            else:
                mapping = self._map
                # Payload first, header last: a process killed between the two leaves zeros
                # where the header goes, which ends the segment for the reader.
                mapping[used + _HEADER_SIZE : end] = payload
                _pack_header(mapping, used, _START, len(payload), _checksum(payload))
                self._used = end
                if self._fsync:
                    self._synced_frame()
            self._open[values[0]] = payload

    def write_end(self, record: CallRecord) -> None:
        """Write ``record``'s end frame. The caller holds `lock` and appends the row to the
        writer before releasing it (so a rotation never seals a segment with a row the
        writer has not been given); then it adds 1 to `ends`."""
        stamp = record[2]
        stamp = (
            stamp.timestamp() if type(stamp) is datetime and stamp.tzinfo else epoch_seconds(stamp)
        )
        try:
            payload = _dumps((stamp, record[:2], record[3:]), 2)
        except ValueError:
            # A value marshal cannot hold (not a plain str/int/float/bool/None): the writer
            # still gets the row; only its crash safety is lost, and the start stays open.
            return
        used = self._used
        end = used + _HEADER_SIZE + len(payload)
        if end > self._limit:
            self._write_slow(_END, payload)
        else:
            mapping = self._map
            mapping[used + _HEADER_SIZE : end] = payload
            _pack_header(mapping, used, _END, len(payload), _checksum(payload))
            self._used = end
            if self._fsync:
                self._synced_frame()
        if self._open:
            self._open.pop(record[0], None)
        if self._sealed and not self._keep and self._sealed[0][0] <= self._committed():
            self._drop_sealed()

    def write_unfinished(self, item: tuple[tuple[Any, ...], int]) -> bytes | None:
        """Write the end frame of an unfinished row: a ``u`` frame holding ``item``, the
        ``(values, max_body_chars)`` of `CallLog.append_later`, with the request in
        ``values`` as its plain fields (`aigw_lab.store.spool_rows.plain_item`); replay
        finishes it as the writer thread does. Returns the frame's payload, which the log
        queues for its writer in place of ``item`` (`aigw_lab.store.unfinished`); None,
        writing nothing, when marshal cannot hold a value (the caller then finishes the row
        and uses `write_end`). As for `write_end`, the caller holds `lock` and queues the
        row before releasing it."""
        # The queued item itself is the payload: no slices, no second tuple (the row's
        # values were built for this; `aigw_lab.gateway.records.success_values_later`).
        try:
            payload = _dumps(item, 2)
        except ValueError:
            return None
        used = self._used
        end = used + _HEADER_SIZE + len(payload)
        if end > self._limit:
            self._write_slow(_UNFINISHED, payload)
        else:
            mapping = self._map
            mapping[used + _HEADER_SIZE : end] = payload
            _pack_header(mapping, used, _UNFINISHED, len(payload), _checksum(payload))
            self._used = end
            if self._fsync:
                self._synced_frame()
        if self._open:
            self._open.pop(item[0][0], None)
        if self._sealed and not self._keep and self._sealed[0][0] <= self._committed():
            self._drop_sealed()
        return payload

    def _synced_frame(self) -> None:
        # Under "fsync", with the lock held, after each frame: synced now (fsync_interval
        # 0), or marked for the helper thread's next fdatasync.
        if self._sync_each:
            os.fdatasync(self._segment.fd)
        self._dirty = True

    def refused(self) -> None:
        """A spooled row was refused by the writer: keep every segment for the next open."""
        self._keep = True

    def _write_slow(self, kind: bytes, payload: bytes) -> None:
        # Called with the lock held when the frame does not fit the current segment, or the
        # spool is closed or failed (`_limit` is -1 then). A frame that does not fit goes to
        # a new segment, so a full segment holds the ends of the first `ends` rows (this one
        # is not counted yet).
        if self.closed or self.failed is not None:
            return
        if not self._rotate(self.ends, _HEADER_SIZE + len(payload)):
            return
        used = self._used
        end = used + _HEADER_SIZE + len(payload)
        self._map[used:end] = _frame(kind, payload)
        self._used = end
        if self._fsync:
            self._synced_frame()

    # --- segments -----------------------------------------------------------------------

    def _new_segment(self, frame_bytes: int) -> _Segment:
        self._counter += 1
        name = f"{os.getpid()}-{os.urandom(4).hex()}-{self._counter:06d}{_SUFFIX}"
        carried = sum(_HEADER_SIZE + len(p) for p in self._open.values())
        size = max(self._segment_bytes, 2 * (carried + frame_bytes))
        segment = _Segment(self.directory / name, size)
        if self.durability == "fsync":
            _fsync_dir(self.directory)  # the new name must survive a power loss too
        return segment

    def _rotate(self, rows: int, frame_bytes: int) -> bool:
        """Start a new segment (the old one holds the ends of the first ``rows`` rows) with
        the starts of the calls still in flight; False if that failed (the spool stops)."""
        old = self._segment
        old.used = self._used
        try:
            if self.durability == "fsync":
                os.fdatasync(old.fd)
            new = self._spare
            carried = sum(_HEADER_SIZE + len(p) for p in self._open.values())
            if new is not None and len(new.map) >= carried + frame_bytes:
                self._spare = None
            else:
                new = self._new_segment(frame_bytes)
        except OSError as exc:
            self.failed = exc
            self._limit = -1
            warnings.warn(
                f"the call log spool {self.directory} cannot grow ({exc}); calls are still "
                "logged, but a crash from now on can lose the rows not yet written",
                _warning_category(),
                stacklevel=4,
            )
            return False
        carried = b"".join(_frame(_START, payload) for payload in self._open.values())
        new.map[: len(carried)] = carried
        self._segment = new
        self._map, self._used, self._limit = new.map, len(carried), len(new.map)
        self._sealed.append((rows, old))
        return True

    def _drop_sealed(self) -> None:
        committed = self._committed()
        while self._sealed and self._sealed[0][0] <= committed:
            _, segment = self._sealed.pop(0)
            if self._spare is None and len(segment.map) == self._segment_bytes:
                segment.clear()
                self._spare = segment
            else:
                segment.close(delete=True, sync=False)

    def _sync_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self.lock:
                if not self._dirty or self.closed:
                    continue
                self._dirty = False
                fd = os.dup(self._segment.fd)  # outlives a rotation that closes the original
            try:
                os.fdatasync(fd)  # releases the GIL; the callers go on meanwhile
            finally:
                os.close(fd)

    def close(self, *, delete: bool) -> None:
        """Stop writing. ``delete``: every row reached the database, so remove the segments;
        otherwise keep them for the next open to replay."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        delete = delete and not self._keep
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self._segment.used = self._used
            self._limit = -1
            segments = [segment for _, segment in self._sealed] + [self._segment]
            self._sealed = []
            if self._spare is not None:  # holds no frames
                self._spare.close(delete=True, sync=False)
                self._spare = None
            for segment in segments:
                segment.close(delete=delete, sync=self.durability == "fsync")
        if delete:
            try:
                self.directory.rmdir()  # only if empty: another log's segments stay
            except OSError:
                pass


def _warning_category() -> type[Warning]:
    return CallLogWarning


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
