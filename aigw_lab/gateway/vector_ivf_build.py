"""The faiss side of `BackgroundIVFIndex`'s builds (`gateway/vector_index_ann.py`): how many
clusters and training points a build uses, training a new IVF index, assigning rows to its
clusters, and emptying a swapped-out index. Kept apart so the index's module holds its
locking and scheduling only; everything here runs on a maintenance thread, off the lock.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from aigw_lab.gateway.vector_rows import VectorRows

__all__ = [
    "Build",
    "Training",
    "add_assigned",
    "assign",
    "release",
    "train_ivf",
    "training_for",
    "with_ids",
]

#: Vectors assigned to clusters per faiss call off the lock (bounds any one call's time).
_ASSIGN_BLOCK = 8192


class Training(NamedTuple):
    """What a build trains: its clusters and the k-means sample's points."""

    nlist: int
    points: int


def training_for(live: int, max_nlist: int, per_cluster: int) -> Training:
    """The training a build of ``live`` rows gets: ``live // 32`` clusters rounded down to a
    power of two, at most ``max_nlist``; a sample of ``per_cluster`` points per cluster, at
    most every live row."""
    nlist = 1 << int(np.log2(max(1, min(max_nlist, live // 32))))
    return Training(nlist, min(live, nlist * per_cluster))


@dataclass(slots=True)
class Build:
    """A build in progress, private to its job until swapped in: the rows (a compacted copy,
    or the index's own), the IVF index (None: exact), and the rows it holds (the rest are
    the tail)."""

    rows: VectorRows
    ivf: Any = None
    indexed: int = 0
    shared: bool = False  # the index's own rows (few removed), not a compacted copy
    training: Training | None = None  # what its IVF index was trained with


def with_ids(pieces: list, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``pieces`` (views of consecutive rows) paired with their slices of ``ids``, the ids
    copied under the lock when the views were taken."""
    out, offset = [], 0
    for vectors, _ in pieces:
        out.append((vectors, ids[offset : offset + len(vectors)]))
        offset += len(vectors)
    return out


def assign(quantizer: Any, vectors: np.ndarray) -> np.ndarray:
    """Each vector's nearest cluster, in blocks (no one faiss call runs long)."""
    out = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), _ASSIGN_BLOCK):
        _, nearest = quantizer.search(vectors[start : start + _ASSIGN_BLOCK], 1)
        out[start : start + _ASSIGN_BLOCK] = nearest[:, 0]
    return out


def add_assigned(
    faiss: Any, ivf: Any, ids: np.ndarray, vectors: np.ndarray, lists: np.ndarray
) -> None:
    """Append rows whose clusters are known (`assign`) to ``ivf``'s inverted lists."""
    if not len(ids):
        return
    swig_ptr = faiss.swig_ptr
    ids, vectors = np.ascontiguousarray(ids), np.ascontiguousarray(vectors)
    lists = np.ascontiguousarray(lists)
    ivf.add_core(len(ids), swig_ptr(vectors), swig_ptr(ids), swig_ptr(lists))


def train_ivf(
    faiss: Any,
    pieces: list,
    live: int,
    training: Training,
    *,
    dim: int,
    codes: str,
    nprobe: int,
    niter: int,
    per_cluster: int,
    assign_rows: Callable[[Any, np.ndarray], np.ndarray] = assign,
) -> Any:
    """A new IVF index trained as ``training`` says on a sample of ``pieces`` ((vectors, ids)
    pairs, ``live`` of their rows live) and holding their live rows, each put in its
    cluster by ``assign_rows`` (`assign`)."""
    nlist = training.nlist
    quantizer = faiss.IndexFlatIP(dim)
    if codes == "sq8":  # codes of the vectors themselves (not residuals): no per-cluster
        # work at search time; the re-rank makes the scores exact
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False
        )
    else:
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = niter
    ivf.cp.max_points_per_centroid = per_cluster
    ivf.cp.min_points_per_centroid = 1  # a small build trains on what it has, silently
    step = max(1, live // training.points)
    sample = np.concatenate([v[::step] for v, _ in pieces])
    ivf.train(np.ascontiguousarray(sample[: training.points]))
    del sample
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # O(1) remove by id
    ivf.nprobe = min(nprobe, nlist)
    for vectors, ids in pieces:
        keep = ids >= 0
        if not keep.all():  # a shared build's few removed rows
            vectors, ids = vectors[keep], ids[keep]
        add_assigned(faiss, ivf, ids, vectors, assign_rows(quantizer, vectors))
    return ivf


def release(faiss: Any, ivf: Any) -> None:
    """Free a swapped-out IVF index's inverted lists and id map inside faiss calls, which
    release the GIL: its destructor frees them holding it (at 1M, every other thread
    waited 142 ms at load 7; session 11). Only when nothing else holds the index: a
    lookup that took it before the swap searches it to the end, and a batched add of
    the old generation may still hold it (then the destructor frees it, as before)."""
    # Our references: the caller's variable, this argument and getrefcount's own.
    if ivf is None or sys.getrefcount(ivf) > 3:
        return
    ivf.set_direct_map_type(faiss.DirectMap.NoMap)
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(empty, True)  # deletes the old lists (it owned them)
    empty.this.disown()  # now the index's to delete
    ivf.ntotal = 0
