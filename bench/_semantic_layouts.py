"""What `bench_semantic_index.py` measures the store's layouts with: entries built as the
cache builds them, the previous one-object-per-entry layout (`PreviousStore`, the baseline),
full-collection timing and memory per entry; plus the vectors it fills them with."""

from __future__ import annotations

import gc
import os
import time
from collections import OrderedDict

import numpy as np

from aigw_lab.gateway.semantic_match import NumpyIndex
from aigw_lab.gateway.semantic_store import MemorySemanticStore, SemanticEntry
from aigw_lab.types import ChatResponse, Usage


def reply(i: int) -> ChatResponse:
    """An answer of a typical length, one object per entry (as `stored_answer` makes)."""
    return ChatResponse(
        text="a stored answer of a typical length " * 8,
        finish_reason="stop",
        usage=Usage(input_tokens=20 + i % 7, output_tokens=60),
        provider="mock",
        model="m1",
        cost_usd=0.0001,
        response_id=f"r{i}",
    )


def entry(i: int, vector: np.ndarray) -> SemanticEntry:
    """An entry as the cache makes one: its own text, markers tuple and answer."""
    return SemanticEntry(
        partition="p",
        text=f"a prompt of a typical length, number {i}",
        vector=vector,
        response=reply(i),
        created=float(i),
        expires=None,
        markers=((str(i),), 0),
    )


class PreviousStore(MemorySemanticStore):
    """The store's previous layout (the baseline for ``--previous-layout``): one
    `SemanticEntry` object per entry, with its answer and vector, in an ``OrderedDict``."""

    def __init__(self, max_entries: int, *, index_factory) -> None:
        super().__init__(max_entries, index_factory=index_factory)
        self._held: OrderedDict[int, SemanticEntry] = OrderedDict()

    def add(self, entry: SemanticEntry) -> SemanticEntry:
        entry.vector = vector = np.asarray(entry.vector, dtype=np.float32)
        with self._lock:
            entry.entry_id = self._next_id
            self._next_id += 1
            index = self._indexes.get(entry.partition)
            if index is None:
                index = self._indexes[entry.partition] = self._index_factory(vector.shape[0])
            index.add(entry.entry_id, vector)
            self._held[entry.entry_id] = entry
        return entry

    def search(self, partition: str, vector: np.ndarray, k: int):
        with self._lock:
            index = self._indexes.get(partition)
            if index is None:
                return []
            if not getattr(index, "locks_itself", False):
                return [(self._held[i], s) for i, s in index.search(vector, k)]
        found = index.search(vector, k)
        with self._lock:
            return [(self._held[i], s) for i, s in found if i in self._held]


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def synthetic(rng: np.random.Generator, n: int, dim: int = 384) -> np.ndarray:
    """Unit vectors around 4,096 centres plus a common direction, made in blocks."""
    centres = unit(np.random.default_rng(12345).standard_normal((4096, dim)))
    common = unit(np.random.default_rng(54321).standard_normal((1, dim)))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        rows = centres[rng.integers(0, 4096, m)] + 0.5 * common
        rows += 0.9 * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[start : start + m] = unit(rows)
    return out


def collect() -> tuple[float, float]:
    """One full (generation 2) collection: (wall, CPU) seconds."""
    w, c = time.perf_counter(), time.process_time()
    gc.collect(2)
    return time.perf_counter() - w, time.process_time() - c


def full_collections(store: MemorySemanticStore, vectors: np.ndarray, rounds: int = 3) -> None:
    """A full collection with the filled store alive, against the same with the previous
    layout's objects for its entries alive beside it (one `SemanticEntry` with its own answer
    and markers per entry, in an ``OrderedDict``: what the store held before), alternated."""
    ours, previous = [], []
    for _ in range(rounds):
        ours.append(collect())
        mirror = OrderedDict((i, entry(i, vectors[i])) for i in range(len(store)))
        previous.append(collect())
        del mirror
    tracked = len(gc.get_objects())
    print(
        f"  full GC with {len(store):,} entries ({store.__class__.__name__}), median of "
        f"{rounds}: {np.median([w for w, _ in ours]) * 1e3:.1f} ms wall / "
        f"{np.median([c for _, c in ours]) * 1e3:.1f} ms CPU; with the previous layout's "
        f"objects for the same entries: {np.median([w for w, _ in previous]) * 1e3:.1f} ms "
        f"wall / {np.median([c for _, c in previous]) * 1e3:.1f} ms CPU; tracked objects "
        f"now {tracked:,}; {load()}"
    )


def gc_only(size: int, rounds: int) -> None:
    """Full collections at ``size`` entries, both layouts, without an approximate index (the
    entries' objects, not the index, are what a collection walks): fast at 1M."""
    vectors = synthetic(np.random.default_rng(0), size)
    for store_class in (PreviousStore, MemorySemanticStore):
        store = store_class(size + 1, index_factory=NumpyIndex)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(size):
            store.add(entry(i, vectors[i]))
        print(
            f"  {store_class.__name__}: {size:,} adds in {time.perf_counter() - wall:.1f} s "
            f"wall, {time.process_time() - cpu:.1f} s CPU ({load()})"
        )
        times = [collect() for _ in range(rounds)]
        print(
            f"  full GC, {store_class.__name__} of {size:,} entries: median "
            f"{np.median([w for w, _ in times]) * 1e3:.1f} ms wall / "
            f"{np.median([c for _, c in times]) * 1e3:.1f} ms CPU, max "
            f"{max(w for w, _ in times) * 1e3:.1f} ms wall ({rounds} collections); tracked "
            f"objects {len(gc.get_objects()):,}; {load()}"
        )
        del store
        gc.collect()


def entry_bytes(n: int = 20_000) -> None:
    """Memory per entry (tracemalloc) of ``n`` entries with the exact index: a 55-character
    prompt, an 800-character answer, a 384-d vector; the store against the previous layout."""
    import tracemalloc

    vectors = unit(np.random.default_rng(9).standard_normal((n, 384)))
    answer = "x" * 800
    for store_class in (PreviousStore, MemorySemanticStore):
        store = store_class(n + 1, index_factory=NumpyIndex)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            store.add(
                SemanticEntry(
                    partition="p",
                    text=f"what is the capital city of country number {i:06d}, please?"[:55],
                    vector=vectors[i].copy(),  # an embedder's own array, as in a cache
                    response=ChatResponse(
                        text=answer,
                        finish_reason="stop",
                        usage=Usage(input_tokens=20, output_tokens=200),
                        provider="openai",
                        model="gpt-4o-mini",
                        cost_usd=0.0001,
                        response_id=f"chatcmpl-{i:020d}",
                    ),
                    created=time.time(),
                    expires=None,
                    markers=((), 0),
                )
            )
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        reserved = (len(store._indexes["p"]._matrix) - n) * 384 * 4 / n
        print(
            f"  memory per entry, {store_class.__name__}, exact index, {n:,} entries: "
            f"{grown / n:,.0f} bytes ({reserved:,.0f} of them the index's unused reserve)"
        )
        del store
