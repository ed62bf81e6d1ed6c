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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from aigw_lab.gateway.semantic_entries import LocalEntries, SemanticEntry, entry_record
from aigw_lab.gateway.semantic_match import NumpyIndex, VectorIndex

__all__ = ["SemanticEntry", "SemanticStoreStats", "SemanticStore", "MemorySemanticStore"]

_LOG = logging.getLogger("aigw_lab.semantic_cache")


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

    No object per entry for the garbage collector to walk (`LocalEntries`): the order,
    partitions and times are numpy arrays, each entry's text, markers and answer one
    ``bytes``, its vector in the index. The `SemanticEntry` objects `search` and `entries`
    return are built on the way out, equal to those added."""

    def __init__(
        self, max_entries: int, *, index_factory: Callable[[int], VectorIndex] = NumpyIndex
    ) -> None:
        self.max_entries = max_entries
        self._index_factory = index_factory
        self._lock = threading.Lock()
        self._local = LocalEntries(index_factory)
        self._next_id = 0
        self._evictions = self._expired = 0

    @property
    def _indexes(self) -> dict[str, VectorIndex]:
        """The index of each partition (for benchmarks and tests)."""
        return self._local.indexes

    def add(self, entry: SemanticEntry) -> SemanticEntry:
        entry.vector = np.asarray(entry.vector, dtype=np.float32)
        record = entry_record(entry)
        local = self._local
        with self._lock:
            entry.entry_id = self._next_id
            self._next_id += 1
            local.put(entry.entry_id, entry, record)
            while len(local) > self.max_entries:
                local.drop(local.table.oldest())
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
        local = self._local
        with self._lock:
            index = local.indexes.get(partition)
            if index is None:
                return []
            if not getattr(index, "locks_itself", False):
                return local.build(partition, local.held(index.search(vector, k), index))
        found = index.search(vector, k)
        with self._lock:
            held = local.held(found, None)
        # Decoded and completed outside the lock: a record is immutable bytes, and an index
        # that locks itself hands out a vector under its own lock (an entry removed meanwhile
        # is left out, as one removed before the lock was taken).
        return local.build(partition, held, index)

    def touch(self, entry_id: int) -> None:
        with self._lock:
            self._local.table.touch(entry_id)

    def remove(self, entry_id: int, *, expired: bool = False) -> bool:
        with self._lock:
            if not self._local.drop(entry_id):
                return False
            self._expired += int(expired)
            return True

    def purge_expired(self, now: float) -> int:
        with self._lock:
            dead = self._local.table.expired(now)
            for entry_id in dead:
                self._local.drop(entry_id)
            self._expired += len(dead)
        return len(dead)

    def entries(self) -> list[SemanticEntry]:
        with self._lock:
            local = self._local
            return [local.entry(entry_id) for entry_id in local.table.order()]

    def clear(self) -> None:
        with self._lock:
            self._local.clear()

    def __len__(self) -> int:
        return len(self._local)

    def stats(self) -> SemanticStoreStats:
        with self._lock:
            return SemanticStoreStats(
                entries=len(self._local), evictions=self._evictions, expired=self._expired
            )

    def __repr__(self) -> str:
        return f"<MemorySemanticStore entries={len(self._local)} max={self.max_entries}>"
