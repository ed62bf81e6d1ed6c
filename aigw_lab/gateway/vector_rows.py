"""The vectors a `BackgroundIVFIndex` holds, in append-only chunks: rows are never moved once
written, so a background build can read a snapshot of them without holding the index's
lock, and a growing index never copies what it holds (a million 384-d rows are 1.5 GB).

A removed row stays in its chunk, marked dead (its id set to -1), until the next rebuild
writes a compacted copy.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

__all__ = ["VectorRows", "exact_top_k", "merge_top_k"]

#: The first chunk's rows; each next chunk doubles, up to `_MAX_CHUNK` (a small cache
#: does not reserve 100 MB; a large one does not copy on growth).
_FIRST_CHUNK = 1024
_MAX_CHUNK = 65_536


class VectorRows:
    """Unit vectors by row, with the id each row holds (-1: removed). Not thread-safe: its
    owner locks; rows below `size` are immutable, so a reader holding a snapshot of the
    chunks list may read them without the lock."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.chunks: list[np.ndarray] = []  # float32 (capacity, dim)
        self.chunk_ids: list[np.ndarray] = []  # int64 (capacity,), -1 for a removed row
        self.starts: list[int] = []  # first row of each chunk
        self.size = 0  # rows written (live and removed)
        self.rows: dict[int, int] = {}  # live id -> row

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write rows for ``ids`` (new, distinct) after the last one."""
        done = 0
        while done < len(ids):
            if not self.chunks or self.size == self.starts[-1] + len(self.chunks[-1]):
                capacity = min(_MAX_CHUNK, _FIRST_CHUNK << len(self.chunks))
                self.chunks.append(np.empty((capacity, self.dim), dtype=np.float32))
                self.chunk_ids.append(np.full(capacity, -1, dtype=np.int64))
                self.starts.append(self.size)
            chunk, chunk_ids = self.chunks[-1], self.chunk_ids[-1]
            offset = self.size - self.starts[-1]
            take = min(len(ids) - done, len(chunk) - offset)
            chunk[offset : offset + take] = vectors[done : done + take]
            chunk_ids[offset : offset + take] = ids[done : done + take]
            for i, entry_id in enumerate(ids[done : done + take].tolist()):
                self.rows[entry_id] = self.size + i
            self.size += take
            done += take

    def kill(self, entry_id: int) -> int:
        """Mark ``entry_id``'s row removed; returns the row (KeyError if unknown)."""
        row = self.rows.pop(entry_id)
        chunk = self._chunk_of(row)
        self.chunk_ids[chunk][row - self.starts[chunk]] = -1
        return row

    def segments(self, start: int, stop: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views of rows [start, stop) as (vectors, ids) pieces, one per chunk they span."""
        pieces = []
        if start >= stop:
            return pieces
        for chunk in range(self._chunk_of(start), len(self.chunks)):
            first = self.starts[chunk]
            if first >= stop:
                break
            lo, hi = max(start, first) - first, min(stop, first + len(self.chunks[chunk])) - first
            pieces.append((self.chunks[chunk][lo:hi], self.chunk_ids[chunk][lo:hi]))
        return pieces

    def vector(self, entry_id: int) -> np.ndarray:
        """A copy of ``entry_id``'s row (KeyError if it is not live)."""
        row = self.rows[entry_id]
        chunk = self._chunk_of(row)
        return self.chunks[chunk][row - self.starts[chunk]].copy()

    def rescore(self, ids: list[int], vector: np.ndarray) -> list[tuple[int, float]]:
        """The exact inner product of ``vector`` with the rows of ``ids`` that are live (an id
        removed meanwhile is left out), as (id, score) pairs."""
        found = [(entry_id, self.rows.get(entry_id)) for entry_id in ids]
        found = [(entry_id, row) for entry_id, row in found if row is not None]
        if not found:
            return []
        rows = []
        for _, row in found:
            chunk = self._chunk_of(row)
            rows.append(self.chunks[chunk][row - self.starts[chunk]])
        scores = (np.stack(rows) @ vector).tolist()
        return [(entry_id, score) for (entry_id, _), score in zip(found, scores, strict=True)]

    @property
    def nbytes(self) -> int:
        """The bytes its chunks take (vectors and ids, reserved capacity included)."""
        return sum(c.nbytes for c in self.chunks) + sum(i.nbytes for i in self.chunk_ids)

    def ids_copy(self, start: int, stop: int) -> np.ndarray:
        """The ids of rows [start, stop) as they are now (-1: removed), copied."""
        parts = [ids.copy() for _, ids in self.segments(start, stop)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def _chunk_of(self, row: int) -> int:
        return bisect_right(self.starts, row) - 1


def exact_top_k(
    pieces: list[tuple[np.ndarray, np.ndarray]], vector: np.ndarray, k: int
) -> list[tuple[int, float]]:
    """The ``k`` live rows of ``pieces`` most similar to ``vector`` (exact inner product),
    best first; removed rows (id -1) never come back."""
    best: list[tuple[int, float]] = []
    for vectors, ids in pieces:
        if not len(ids):
            continue
        # einsum, not `vectors @ vector`: numpy's OpenBLAS splits a matrix-vector product of
        # more than ~24 rows over two threads, and its second thread then spins for a while
        # after each, taking the core a build or another caller needs (22-38 s of CPU per
        # 1M fill, session 10). einsum scans on the calling thread only.
        scores = np.einsum("ij,j->i", vectors, vector)
        scores[ids < 0] = -np.inf
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
        else:
            top = np.arange(len(scores))
        best.extend((int(ids[i]), float(scores[i])) for i in top.tolist() if scores[i] != -np.inf)
    return merge_top_k(best, k)


def merge_top_k(found: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """The ``k`` most similar of ``found``, best first (ties: the earlier id first, the
    order exact search gives), each id once (the first, most similar, of its pairs)."""
    found.sort(key=lambda pair: (-pair[1], pair[0]))
    seen: set[int] = set()
    best = []
    for entry_id, score in found:
        if len(best) >= k:
            break
        if entry_id not in seen:
            seen.add(entry_id)
            best.append((entry_id, score))
    return best
