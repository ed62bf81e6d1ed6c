"""`LocalEntries`: semantic-cache entries held in this process without an object per entry,
with one vector index per partition. `MemorySemanticStore` keeps its entries in one;
`RedisSemanticStore` keeps its local mirror of the server's entries in one.

Why: CPython's full (generation 2) collection walks every GC-tracked object while every
thread waits; a million `SemanticEntry` objects (each with its answer and usage) made each
full collection of a 1M-entry cache stop the process for 0.4-1.3 s (docs/performance.md).
Here the times and partitions are numpy arrays (`EntryTable`), each entry's text, markers
and answer one ``bytes`` (`marshal` of plain values: `answer_fields`), and its vector stays
in the index (an index without a ``vector(id)`` method: in an id -> array dict, also
untracked). The `SemanticEntry` objects handed out are built on the way out, equal to those
put in. An answer carrying more than a cache stores (a latency, a raw payload) is kept as
the object.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aigw_lab.gateway.semantic_match import VectorIndex
from aigw_lab.gateway.semantic_persist import answer_fields, answer_from_fields
from aigw_lab.gateway.semantic_table import EntryTable
from aigw_lab.types import ChatResponse

__all__ = ["LocalEntries", "SemanticEntry", "entry_record"]


@dataclass(slots=True, kw_only=True)
class SemanticEntry:
    """One stored request and its answer. ``markers``: the request's `same_meaning_markers`
    (kept so a lookup need not recompute them). ``entry_id``: given by the store on `add`.
    (Defined here, importable from `aigw_lab.gateway.semantic_store` as before.)"""

    entry_id: int = -1
    partition: str
    text: str
    vector: np.ndarray
    response: ChatResponse
    created: float
    expires: float | None
    markers: tuple[tuple[str, ...], int]


class LocalEntries:
    """Entries by id with one `VectorIndex` per partition (built by ``index_factory`` from
    the vectors' dimension). Not thread-safe: its owner locks. Ids are the owner's."""

    def __init__(self, index_factory: Callable[[int], VectorIndex]) -> None:
        self.index_factory = index_factory
        self.table = EntryTable()  # order of insertion (an LRU for owners that touch), times
        self.records: dict[int, bytes] = {}  # id -> marshal((text, markers, answer fields))
        self.objects: dict[int, ChatResponse] = {}  # id -> an answer kept as the object
        self.vectors: dict[int, np.ndarray] = {}  # id -> vector, for an index without vector()
        self.indexes: dict[str, VectorIndex] = {}
        self.codes: dict[str, int] = {}  # partition -> its code in the table
        self.names: list[str | None] = []  # code -> partition (None: a free code)

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self.table

    def put(self, entry_id: int, entry: SemanticEntry, record: bytes | None) -> None:
        """Hold ``entry`` (its vector float32) under ``entry_id`` (new); ``record``:
        `entry_record` of it, made before the owner's lock was taken."""
        vector = entry.vector
        index = self.indexes.get(entry.partition)
        if index is None:
            index = self.indexes[entry.partition] = self.index_factory(vector.shape[0])
            self.codes[entry.partition] = self._new_code(entry.partition)
        index.add(entry_id, vector)
        if not hasattr(index, "vector"):
            self.vectors[entry_id] = vector
        if record is None:
            self.objects[entry_id] = entry.response
            record = marshal.dumps((entry.text, entry.markers, None))
        self.records[entry_id] = record
        self.table.insert(entry_id, self.codes[entry.partition], entry.created, entry.expires)

    def drop(self, entry_id: int) -> bool:
        """Forget ``entry_id``, and its partition's index once empty; False if unknown."""
        if entry_id not in self.table:
            return False
        code = self.table.remove(entry_id)
        del self.records[entry_id]
        self.objects.pop(entry_id, None)
        self.vectors.pop(entry_id, None)
        partition = self.names[code]
        index = self.indexes[partition]
        index.remove(entry_id)
        if not len(index):
            del self.indexes[partition], self.codes[partition]
            self.names[code] = None
        return True

    def partition_of(self, entry_id: int) -> str:
        return self.names[self.table.partition_of(entry_id)]  # type: ignore[return-value]

    def entry(self, entry_id: int) -> SemanticEntry:
        """``entry_id``'s entry, built (KeyError if unknown)."""
        partition = self.partition_of(entry_id)
        held = self.held([(entry_id, 0.0)], self.indexes[partition])
        return self.build(partition, held)[0][0]

    def clear(self) -> None:
        self.table = EntryTable()
        for held in (self.records, self.objects, self.vectors, self.indexes, self.codes):
            held.clear()
        self.names.clear()

    def held(self, found: list[tuple[int, float]], index: VectorIndex | None) -> list[tuple]:
        """(The owner's lock held.) What the entries of ``found`` (id, similarity) still held
        are built from: id, similarity, record, times, the answer kept as an object (or
        None) and the vector (None: to be read after the lock from an index that locks
        itself)."""
        held = []
        for entry_id, similarity in found:
            record = self.records.get(entry_id)
            if record is None:
                continue
            vector = self.vectors.get(entry_id)
            if vector is None and index is not None:
                vector = index.vector(entry_id)  # type: ignore[attr-defined]
            times = self.table.times(entry_id)
            kept = self.objects.get(entry_id)
            held.append((entry_id, similarity, record, times, kept, vector))
        return held

    @staticmethod
    def build(
        partition: str, held: list[tuple], index: VectorIndex | None = None
    ) -> list[tuple[SemanticEntry, float]]:
        """The (entry, similarity) pairs of `held`'s rows, decoded (no lock needed)."""
        missing = [row[0] for row in held if row[5] is None]
        batch = getattr(index, "vectors", None) if missing else None
        # One take of the index's lock for all the found entries' vectors, not one each.
        read = dict(zip(missing, batch(missing), strict=True)) if batch else {}
        out = []
        for entry_id, similarity, record, (created, expires), kept, vector in held:
            if vector is None:
                try:
                    vector = read[entry_id] if batch else index.vector(entry_id)  # type: ignore
                except KeyError:  # removed since the owner's lock was released
                    continue
                if vector is None:  # the same, read by `vectors`
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
        for code, name in enumerate(self.names):
            if name is None:
                self.names[code] = partition
                return code
        self.names.append(partition)
        return len(self.names) - 1


def entry_record(entry: SemanticEntry) -> bytes | None:
    """``entry``'s text, markers and answer as one ``bytes`` (None: its answer is kept as
    the object; see `answer_fields`)."""
    fields = answer_fields(entry.response)
    if fields is None:
        return None
    try:
        return marshal.dumps((entry.text, entry.markers, fields))
    except ValueError:  # a tool call holding a value marshal does not know: keep the object
        return None
