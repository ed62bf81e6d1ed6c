"""Where the semantic cache keeps its entries and their vectors: the `SemanticStore`
protocol and the in-process `MemorySemanticStore`.

The store holds state only: entries (the stored request's text, vector, guard markers and
answer, with creation and expiry times), one vector index per partition, least-recently-used
order and the housekeeping counts. What serves a call (threshold, guards, TTL choice, what is
worth storing) stays in `aigw_lab.gateway.semantic_cache.SemanticCache`, so a shared store
(Redis, issue 14) can stand in for this one without touching that logic.
"""

from __future__ import annotations

import logging
import marshal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from aigw_lab.gateway.semantic_match import NumpyIndex, VectorIndex
from aigw_lab.gateway.semantic_persist import answer_fields, answer_from_fields
from aigw_lab.gateway.semantic_table import EntryTable
from aigw_lab.types import ChatResponse

__all__ = ["SemanticEntry", "SemanticStoreStats", "SemanticStore", "MemorySemanticStore"]

_LOG = logging.getLogger("aigw_lab.semantic_cache")


@dataclass(slots=True, kw_only=True)
class SemanticEntry:
    """One stored request and its answer. ``markers``: the request's `same_meaning_markers`
    (kept so a lookup need not recompute them). ``entry_id``: given by the store on `add`."""

    entry_id: int = -1
    partition: str
    text: str
    vector: np.ndarray
    response: ChatResponse
    created: float
    expires: float | None
    markers: tuple[tuple[str, ...], int]


@dataclass(frozen=True, slots=True, kw_only=True)
class SemanticStoreStats:
    """A semantic store's size and housekeeping counts since it was created."""

    entries: int
    evictions: int
    expired: int


@runtime_checkable
class SemanticStore(Protocol):
    """What `SemanticCache` needs from a store of entries. Implementations are thread-safe;
    each method is atomic on its own (a lookup tolerates an entry gone between its search
    and its `touch` or `remove`)."""

    def add(self, entry: SemanticEntry) -> SemanticEntry:
        """Store ``entry`` under a new id (set on it), evicting the least recently used
        beyond the store's bound; returns it."""
        ...

    def search(
        self, partition: str, vector: np.ndarray, k: int
    ) -> list[tuple[SemanticEntry, float]]:
        """The ``k`` entries of ``partition`` nearest ``vector``, most similar first, with
        their cosine similarity (expired entries included: the caller decides)."""
        ...

    def touch(self, entry_id: int) -> None:
        """Mark an entry as just used (it is evicted last)."""
        ...

    def remove(self, entry_id: int, *, expired: bool = False) -> bool:
        """Remove an entry (counted as expired when ``expired``); False if it was gone."""
        ...

    def purge_expired(self, now: float) -> int:
        """Remove every entry whose expiry is at or before ``now``; returns how many."""
        ...

    def entries(self) -> list[SemanticEntry]:
        """Every entry, least recently used first."""
        ...

    def clear(self) -> None:
        """Remove every entry."""
        ...

    def __len__(self) -> int: ...

    def stats(self) -> SemanticStoreStats: ...


class MemorySemanticStore:
    """Entries in this process: an LRU of at most ``max_entries`` and one `VectorIndex` per
    partition, built by ``index_factory`` from the vectors' dimension.

    Beyond ``max_entries`` each add evicts the least recently used entry (a hit is a use),
    whatever its partition; `stats` counts the evictions, and the first one logs a warning
    on the ``aigw_lab.semantic_cache`` logger naming the bound (once per store), so a cache
    that is too small for its traffic does not lose answers silently.

    An index whose class sets ``locks_itself = True`` (`BackgroundIVFIndex`) is searched
    outside the store's lock, so an add or a removal never waits for another caller's
    search (nor for that caller's thread to get a core back); entries gone meanwhile are
    left out of the answer.

    No object per entry for the garbage collector to walk: the order, partitions and times
    are numpy arrays (`EntryTable`), each entry's text, markers and answer one ``bytes``
    (`marshal` of plain values: `answer_fields`), and its vector stays in the index (an
    index without a ``vector(id)`` method: in an id -> array dict, also untracked). The
    `SemanticEntry` objects `search` and `entries` return are built on the way out, equal to
    those added. An answer carrying more than a cache stores (a latency, a raw payload)
    is kept as the object."""

    def __init__(
        self, max_entries: int, *, index_factory: Callable[[int], VectorIndex] = NumpyIndex
    ) -> None:
        self.max_entries = max_entries
        self._index_factory = index_factory
        self._lock = threading.Lock()
        self._table = EntryTable()
        self._records: dict[int, bytes] = {}  # id -> marshal((text, markers, answer fields))
        self._objects: dict[int, ChatResponse] = {}  # id -> an answer kept as the object
        self._vectors: dict[int, np.ndarray] = {}  # id -> vector, for an index without vector()
        self._indexes: dict[str, VectorIndex] = {}
        self._codes: dict[str, int] = {}  # partition -> its code in the table
        self._names: list[str | None] = []  # code -> partition (None: a free code)
        self._next_id = 0
        self._evictions = self._expired = 0

    def add(self, entry: SemanticEntry) -> SemanticEntry:
        entry.vector = vector = np.asarray(entry.vector, dtype=np.float32)
        record = _record(entry)
        with self._lock:
            entry.entry_id = entry_id = self._next_id
            self._next_id += 1
            index = self._indexes.get(entry.partition)
            if index is None:
                index = self._indexes[entry.partition] = self._index_factory(vector.shape[0])
                self._codes[entry.partition] = self._new_code(entry.partition)
            index.add(entry_id, vector)
            if not hasattr(index, "vector"):
                self._vectors[entry_id] = vector
            if record is None:
                self._objects[entry_id] = entry.response
                record = marshal.dumps((entry.text, entry.markers, None))
            self._records[entry_id] = record
            self._table.insert(entry_id, self._codes[entry.partition], entry.created, entry.expires)
            while len(self._table) > self.max_entries:
                self._drop(self._table.oldest())
                self._evictions += 1
                if self._evictions == 1:
                    _LOG.warning(
                        "semantic cache full: max_entries=%d reached, evicting the least "
                        "recently used entries from now on (counted in stats().evictions; "
                        "raise max_entries to keep more, see docs/semantic_cache.md)",
                        self.max_entries,
                    )
        return entry

    def search(
        self, partition: str, vector: np.ndarray, k: int
    ) -> list[tuple[SemanticEntry, float]]:
        with self._lock:
            index = self._indexes.get(partition)
            if index is None:
                return []
            if not getattr(index, "locks_itself", False):
                return self._build(partition, self._held(index.search(vector, k), index))
        found = index.search(vector, k)
        with self._lock:
            held = self._held(found, None)
        # Decoded and completed outside the lock: a record is immutable bytes, and an index
        # that locks itself hands out a vector under its own lock (an entry removed meanwhile
        # is left out, as one removed before the lock was taken).
        return self._build(partition, held, index)

    def touch(self, entry_id: int) -> None:
        with self._lock:
            self._table.touch(entry_id)

    def remove(self, entry_id: int, *, expired: bool = False) -> bool:
        with self._lock:
            if entry_id not in self._table:
                return False
            self._drop(entry_id)
            self._expired += int(expired)
            return True

    def purge_expired(self, now: float) -> int:
        with self._lock:
            dead = self._table.expired(now)
            for entry_id in dead:
                self._drop(entry_id)
            self._expired += len(dead)
        return len(dead)

    def entries(self) -> list[SemanticEntry]:
        with self._lock:
            out = []
            for entry_id in self._table.order():
                partition = self._names[self._table.partition_of(entry_id)]
                held = self._held([(entry_id, 0.0)], self._indexes[partition])
                out += [entry for entry, _ in self._build(partition, held)]
            return out

    def clear(self) -> None:
        with self._lock:
            self._table = EntryTable()
            self._records.clear()
            self._objects.clear()
            self._vectors.clear()
            self._indexes.clear()
            self._codes.clear()
            self._names.clear()

    def __len__(self) -> int:
        return len(self._table)

    def stats(self) -> SemanticStoreStats:
        with self._lock:
            return SemanticStoreStats(
                entries=len(self._table), evictions=self._evictions, expired=self._expired
            )

    def __repr__(self) -> str:
        return f"<MemorySemanticStore entries={len(self._table)} max={self.max_entries}>"

    # --- building entries from the table -------------------------------------------------

    def _held(self, found: list[tuple[int, float]], index: VectorIndex | None) -> list[tuple]:
        """(The lock held.) What the entries of ``found`` (id, similarity) still stored are
        built from: id, similarity, record, times, the answer kept as an object (or None) and
        the vector (None: to be read after the lock from an index that locks itself)."""
        held = []
        for entry_id, similarity in found:
            record = self._records.get(entry_id)
            if record is None:
                continue
            vector = self._vectors.get(entry_id)
            if vector is None and index is not None:
                vector = index.vector(entry_id)  # type: ignore[attr-defined]
            times = self._table.times(entry_id)
            kept = self._objects.get(entry_id)
            held.append((entry_id, similarity, record, times, kept, vector))
        return held

    def _build(
        self, partition: str, held: list[tuple], index: VectorIndex | None = None
    ) -> list[tuple[SemanticEntry, float]]:
        """The (entry, similarity) pairs of `_held`'s rows, decoded (no lock needed)."""
        out = []
        for entry_id, similarity, record, (created, expires), kept, vector in held:
            if vector is None:
                try:
                    vector = index.vector(entry_id)  # type: ignore[union-attr]
                except KeyError:  # removed since the store's lock was released
                    continue
            text, markers, fields = marshal.loads(record)
            entry = SemanticEntry(
                entry_id=entry_id,
                partition=partition,
                text=text,
                vector=vector,
                response=kept if fields is None else answer_from_fields(fields),
                created=created,
                expires=expires,
                markers=markers,
            )
            out.append((entry, similarity))
        return out

    def _new_code(self, partition: str) -> int:
        for code, name in enumerate(self._names):
            if name is None:
                self._names[code] = partition
                return code
        self._names.append(partition)
        return len(self._names) - 1

    def _drop(self, entry_id: int) -> None:
        """Remove ``entry_id``, and its partition's index once empty."""
        code = self._table.remove(entry_id)
        del self._records[entry_id]
        self._objects.pop(entry_id, None)
        self._vectors.pop(entry_id, None)
        partition = self._names[code]
        index = self._indexes[partition]
        index.remove(entry_id)
        if not len(index):
            del self._indexes[partition], self._codes[partition]
            self._names[code] = None


def _record(entry: SemanticEntry) -> bytes | None:
    """``entry``'s text, markers and answer as one ``bytes`` (None: its answer is kept as
    the object; see `answer_fields`)."""
    fields = answer_fields(entry.response)
    if fields is None:
        return None
    try:
        return marshal.dumps((entry.text, entry.markers, fields))
    except ValueError:  # a tool call holding a value marshal does not know: keep the object
        return None
