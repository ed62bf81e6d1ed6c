"""The call log spool's frame format, and reading back what a dead process left in a spool
directory: every frame checked, then turned into rows (`aigw_lab.store.spool` writes them).

Split from `aigw_lab.store.spool` to keep each module small; the names meant for use are
re-exported there.
"""

from __future__ import annotations

import marshal
import os
import struct
import time
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.store.schema import COLUMN_TYPES
from aigw_lab.store.spool_rows import UNFINISHED_KIND, finish_unfinished, unfinished_parts
from aigw_lab.store.writer import CallLogWarning

try:  # POSIX; elsewhere segments are not locked (one log per file per process, then)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FRAME_HEADER",
    "INTERRUPTED_MESSAGE",
    "SEGMENT_SUFFIX",
    "START_FIELDS",
    "TEMP_GRACE_S",
    "TEMP_SUFFIX",
    "Leftovers",
    "interrupted_record",
    "known_call_ids",
    "read_leftovers",
    "read_segment",
    "unlink_quietly",
    "warn_invalid",
]

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
    "budget_usd",
)

# Frames written before a field was added at the end of each tuple still replay, with the
# missing fields NULL: how many fields the oldest readable frames have (written before
# budget_usd, schema migration 8). Fixed numbers: adding a field later leaves them as they are.
_OLDEST_END_FIELDS = 45
_OLDEST_START_FIELDS = 20

INTERRUPTED_MESSAGE = (
    "the gateway process ended while this call was in flight, so its outcome is unknown: "
    "the provider may have answered (and charged for it)"
)

#: A frame's header: kind, payload length, checksum of the payload.
FRAME_HEADER = struct.Struct("<cII")
# Frames are written with an Adler-32 checksum (kinds ``s``/``e``): it needs no lookup table,
# so unlike CRC-32 it costs little when the table is not in the CPU cache, as between two
# gateway calls. Frames of kinds ``S``/``E`` (CRC-32), written by earlier versions, are read.
#: The kinds of the frames written now: a call's start, a row (its end).
START_KIND, END_KIND = b"s", b"e"
_OLD_START, _OLD_END = b"S", b"E"
_CHECKSUMS = {
    START_KIND: zlib.adler32,
    END_KIND: zlib.adler32,
    UNFINISHED_KIND: zlib.adler32,  # an end holding an unfinished row (`spool_rows`)
    _OLD_START: zlib.crc32,
    _OLD_END: zlib.crc32,
}
_STARTS = (START_KIND, _OLD_START)
#: The file name suffix of a segment (and of the spool directory).
SEGMENT_SUFFIX = ".spool"
#: The suffix of a segment being made (created, locked, then renamed to ``*.spool``); the
#: leftover scan never reads such a file as a segment.
TEMP_SUFFIX = ".spool-new"
#: How old (seconds since its last change) an unlocked temporary file must be before a scan
#: removes it as a dead creator's. A live creator locks its file microseconds after making
#: it; one paused longer than this finds the file gone and makes another.
TEMP_GRACE_S = 60.0
_MAX_PAYLOAD = 64 << 20  # a larger length is a corrupt header, not a row
_NONE = type(None)
_ALLOWED_TYPES: dict[str, tuple[type, ...]] = {
    "VARCHAR": (str, _NONE),
    "JSON": (str, _NONE),
    "BIGINT": (int, _NONE),
    "INTEGER": (int, _NONE),
    "DOUBLE": (float, int, _NONE),
    "BOOLEAN": (bool, _NONE),
    "TIMESTAMPTZ": (float, int),
    "VARCHAR[]": (tuple, _NONE),  # flags (`aigw_lab.store.sanitize`); items checked below
}


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
                unlink_quietly(path)
            os.close(fd)
        self.segments = []


def read_leftovers(directory: Path, *, clock: Callable[[], float] = time.time) -> Leftovers:
    """Read every segment in ``directory`` that no live process holds. Segments owned by
    another user are left alone (the spool is private to the log's owner). Temporary files
    of segments being made are never read; one that no process holds and that is older
    than `TEMP_GRACE_S` (by ``clock``) is a dead creator's and is removed (it holds no
    frame: a segment gets its first frame only after its rename)."""
    found = Leftovers()
    if not directory.is_dir():
        return found
    _remove_dead_temporaries(directory, clock())
    starts: dict[str, tuple[Any, ...]] = {}
    ends: dict[str, CallRecord] = {}
    for path in sorted(directory.glob(f"*{SEGMENT_SUFFIX}")):
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


def _remove_dead_temporaries(directory: Path, now: float) -> None:
    """Remove the temporary files whose creators died before renaming them (unlocked, ours,
    older than `TEMP_GRACE_S`); a creator still alive holds its lock, so it keeps its file."""
    for path in directory.glob(f"*{TEMP_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            stat = os.fstat(fd)
            if stat.st_uid != os.getuid() or now - stat.st_mtime < TEMP_GRACE_S:
                continue
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            unlink_quietly(path)
        except OSError:  # held by a live creator (BlockingIOError), or gone meanwhile
            continue
        finally:
            os.close(fd)


def read_segment(path: str | os.PathLike[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """The frames of one segment file as ``("start" | "end", values)``, for inspection and
    tests (no lock taken; unreadable frames left out). End values are in `CALL_COLUMNS`
    order, start values in `START_FIELDS` order (see `_decode`)."""
    found = Leftovers()
    starts: dict[str, tuple[Any, ...]] = {}
    ends: dict[str, CallRecord] = {}
    frames: list[tuple[str, tuple[Any, ...]]] = []
    _parse(Path(path).read_bytes(), Path(path).name, starts, ends, found, frames)
    return frames


def _parse(
    data: bytes,
    name: str,
    starts: dict[str, tuple[Any, ...]],
    ends: dict[str, CallRecord],
    found: Leftovers,
    frames: list[tuple[str, tuple[Any, ...]]] | None = None,
) -> None:
    """Read the frames of one segment into ``starts`` and ``ends``. A segment is written
    front to back into zeroed space, so the first zero byte where a frame would begin ends
    it, and a bad frame followed only by zeros is the one the process died writing."""
    offset, size = 0, len(data)
    while offset < size and data[offset] != 0:
        if size - offset < FRAME_HEADER.size:
            found.torn += 1
            return
        kind, length, check = FRAME_HEADER.unpack_from(data, offset)
        checksum = _CHECKSUMS.get(kind)
        if checksum is None or length > _MAX_PAYLOAD:
            found.invalid.append(f"{name}@{offset}: not a frame header; rest of file skipped")
            found.bad_segments.add(name)
            return
        at, body = offset, data[offset + FRAME_HEADER.size : offset + FRAME_HEADER.size + length]
        offset += FRAME_HEADER.size + length
        if len(body) < length:
            found.torn += 1
            return
        problem, values = _decode(body, check, kind)
        if problem is not None:
            if data.count(0, offset) == size - offset:
                found.torn += 1  # cut short by the crash: nothing was written after it
                return
            found.invalid.append(f"{name}@{at}: {problem}")
            found.bad_segments.add(name)
            continue
        if frames is not None:
            frames.append(("start" if kind in _STARTS else "end", values))
        if kind in _STARTS:
            starts.setdefault(values[0], values)
        else:
            ends[values[0]] = CallRecord._make(values)


def _decode(body: bytes, check: int, kind: bytes) -> tuple[str | None, tuple[Any, ...]]:
    """The frame's values (for an end: in `CALL_COLUMNS` order, timestamp as a datetime,
    an unfinished row (`spool_rows`) finished as the writer finishes it; for a start: in
    `START_FIELDS` order, timestamp in seconds), or what is wrong with it."""
    if _CHECKSUMS[kind](body) != check:
        return "checksum mismatch", ()
    try:
        values = marshal.loads(body)
    except Exception:  # noqa: BLE001 - any undecodable payload is just a bad frame
        return "undecodable payload", ()
    plain: Any = None
    max_body_chars = 0
    if kind == UNFINISHED_KIND:
        problem, values, plain, max_body_chars = unfinished_parts(values)
        if problem is not None:
            return problem, ()
        names, oldest = CALL_COLUMNS, len(CALL_COLUMNS)
    elif kind not in _STARTS:
        if type(values) is not tuple or len(values) != 3:
            return "not an end frame", ()
        stamp, head, tail = values
        if type(head) is not tuple or type(tail) is not tuple:
            return "not an end frame", ()
        values = (*head, stamp, *tail)
        names, oldest = CALL_COLUMNS, _OLDEST_END_FIELDS
    else:
        names, oldest = START_FIELDS, _OLDEST_START_FIELDS
    if type(values) is not tuple or not oldest <= len(values) <= len(names):
        return "wrong number of fields", ()
    if len(values) < len(names):
        values += (None,) * (len(names) - len(values))
    types = _types()
    for name, value in zip(names, values, strict=True):
        if type(value) not in types[name]:
            return f"column {name}: unexpected {type(value).__name__}", ()
        if type(value) is tuple and not all(type(item) is str for item in value):
            return f"column {name}: a list with an item that is not text", ()
    if not values[0]:
        return "empty call_id", ()
    try:
        when = datetime.fromtimestamp(values[2], UTC)
    except (OverflowError, ValueError, OSError):
        return "timestamp out of range", ()
    if kind == UNFINISHED_KIND:
        # Finished as the writer would have finished it: request JSON, sanitised text.
        return None, finish_unfinished(values, plain, max_body_chars)
    if kind not in _STARTS:
        values = (*values[:2], when, *values[3:])
    return None, values


_TYPES_CACHE: dict[str, tuple[type, ...]] = {}


def _types() -> dict[str, tuple[type, ...]]:
    # Built on first replay, not at import (no import-time work beyond constants).
    if not _TYPES_CACHE:
        _TYPES_CACHE.update({n: _ALLOWED_TYPES[t] for n, t in COLUMN_TYPES.items()})
    return _TYPES_CACHE


def interrupted_record(values: tuple[Any, ...]) -> CallRecord:
    """The row of a call whose start was spooled but whose end never was."""
    fields = dict(zip(START_FIELDS, values, strict=True))
    fields["timestamp"] = datetime.fromtimestamp(fields["timestamp"], UTC)
    return CallRecord(
        **fields,
        status="interrupted",
        error_type="interrupted",
        error_message=INTERRUPTED_MESSAGE,
    )


def known_call_ids(conn: Any, records: Iterable[CallRecord]) -> set[str]:
    """The call ids of ``records`` already in the ``calls`` table of ``conn``."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    rows = list(records)
    if not rows:
        return set()
    ids = pd.DataFrame({"call_id": pd.Series([r.call_id for r in rows], dtype=object)})
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
    shown = "; ".join(invalid[:5]) + (f"; ... ({len(invalid)} in all)" if len(invalid) > 5 else "")
    warnings.warn(
        f"skipped {len(invalid)} unreadable frames in the call log spool {directory}: {shown}",
        CallLogWarning,
        stacklevel=3,
    )


def unlink_quietly(path: Path) -> None:
    """Delete ``path`` if it is still there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
