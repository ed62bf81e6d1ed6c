"""An approximate `VectorIndex` for large semantic-cache partitions: exact search while a
partition is small, a faiss IVF-Flat index once it is large.

    from functools import partial
    cache = SemanticCache(embedder, index_factory=partial(IVFIndex, exact_below=50_000))

Exact search (`NumpyIndex`) costs about 1 ms per 20,000 x 384 vectors, which is nothing next
to the model call that embeds the prompt; at a million entries it is 50 times that call
(docs/semantic_cache.md, "Index choice"). `IVFIndex` keeps a partition exact below
``exact_below`` entries, and above it searches only the ``nprobe`` nearest of ``nlist``
clusters (recall@1 about 0.98 at nprobe=32), so a lookup stays around a millisecond.

faiss is an optional dependency: ``pip install "aigw-lab[ann]"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_match import NumpyIndex

__all__ = ["IVFIndex", "default_nlist"]

#: faiss k-means wants at least 39 training points per cluster (it warns below that).
_POINTS_PER_CLUSTER = 39
_MAX_NLIST = 65_536


def _import_faiss() -> Any:
    try:
        # lazy: optional extra (faiss-cpu), only for an IVF index
        import faiss
    except ImportError as exc:
        raise ConfigError(
            f"IVFIndex needs faiss, which cannot be imported: {exc}",
            hint='pip install "aigw-lab[ann]" (or use the exact NumpyIndex)',
        ) from exc
    return faiss


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"IVFIndex {name}={value!r} is invalid", hint="use a positive integer")
    return value


def default_nlist(size: int) -> int:
    """The number of clusters used for ``size`` vectors when none is given: about
    4 * sqrt(size) (the usual rule for IVF), at most size / 39 so k-means has enough points
    per cluster, and at most 65,536."""
    return max(1, min(int(4 * math.sqrt(size)), size // _POINTS_PER_CLUSTER, _MAX_NLIST))


class IVFIndex:
    """A `VectorIndex` that is exact below ``exact_below`` entries and approximate above.

    Below the threshold it delegates to a `NumpyIndex`, so its results are exactly those of
    exact search. When an add brings it to ``exact_below`` entries it trains a faiss
    ``IndexIVFFlat`` (inner product, so cosine on the unit vectors the cache stores) on
    them, and retrains it whenever the size doubles since the last training, since
    clusters learnt on fewer points fit the grown set worse. If removals bring it below
    half of ``exact_below`` it goes back to exact search.

    ``nlist``: clusters (None: `default_nlist` of the size at each training, capped at that
    size). ``nprobe``: clusters searched per query; more is slower and more accurate.

    Removal by id is O(1): the IVF index keeps a hash table from id to its place in the
    inverted lists (faiss ``DirectMap.Hashtable``), so TTL expiry and LRU eviction do not
    scan the index (an ``IndexIDMap2`` wrapper would, on every removal).

    Training happens inside the `add` that crosses a size, under the cache's lock: seconds
    at a million entries (6 s measured for 1M x 384, nlist=1000, on 2 cores; the default
    nlist there is 4000, which trains slower). Adds in between are amortised O(1).
    """

    def __init__(
        self,
        dim: int,
        *,
        exact_below: int = 50_000,
        nlist: int | None = None,
        nprobe: int = 32,
    ) -> None:
        self._dim = _positive_int("dim", dim)
        self.exact_below = _positive_int("exact_below", exact_below)
        self._nlist_setting = None if nlist is None else _positive_int("nlist", nlist)
        self.nprobe = _positive_int("nprobe", nprobe)
        self._faiss = _import_faiss()  # at construction, so a missing extra fails early
        self._exact: NumpyIndex | None = NumpyIndex(dim)
        self._ivf: Any = None
        self._trained_size = 0

    # --- state, for notebooks and tests ---------------------------------------------------

    @property
    def approximate(self) -> bool:
        """Whether searches go through the IVF index (False: exact search)."""
        return self._ivf is not None

    @property
    def trained_size(self) -> int:
        """How many vectors the IVF index was last trained on (0: not trained)."""
        return self._trained_size if self._ivf is not None else 0

    @property
    def nlist(self) -> int:
        """The clusters of the current IVF index (0 while exact)."""
        return int(self._ivf.nlist) if self._ivf is not None else 0

    def __repr__(self) -> str:
        mode = f"ivf nlist={self.nlist} nprobe={self.nprobe}" if self.approximate else "exact"
        return f"<IVFIndex dim={self._dim} size={len(self)} {mode}>"

    # --- the VectorIndex protocol ---------------------------------------------------------

    def add(self, entry_id: int, vector: np.ndarray) -> None:
        if self._exact is not None:
            self._exact.add(entry_id, vector)
            if len(self._exact) >= self.exact_below:
                ids, vectors = _numpy_index_contents(self._exact)
                self._train(ids, vectors)
            return
        self._ivf.add_with_ids(_as_rows(vector), np.array([entry_id], dtype=np.int64))
        if self._ivf.ntotal >= 2 * self._trained_size:
            self._train(*self._ivf_contents())

    def remove(self, entry_id: int) -> None:
        if self._exact is not None:
            self._exact.remove(entry_id)
            return
        selector = self._faiss.IDSelectorArray(np.array([entry_id], dtype=np.int64))
        if not self._ivf.remove_ids(selector):
            raise KeyError(entry_id)  # as NumpyIndex does for an unknown id
        if self._ivf.ntotal < self.exact_below // 2:
            ids, vectors = self._ivf_contents()
            exact = NumpyIndex(self._dim)
            for entry, row in zip(ids.tolist(), vectors, strict=True):
                exact.add(entry, row)
            self._exact, self._ivf, self._trained_size = exact, None, 0

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if self._exact is not None:
            return self._exact.search(vector, k)
        if self._ivf.ntotal == 0:
            return []
        scores, ids = self._ivf.search(_as_rows(vector), k)
        # faiss pads with id -1 when fewer than k vectors are in the probed clusters.
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def __len__(self) -> int:
        return len(self._exact) if self._exact is not None else int(self._ivf.ntotal)

    # --- training -------------------------------------------------------------------------

    def _train(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the search structure by an IVF index trained on and holding ``vectors``."""
        faiss = self._faiss
        size = len(ids)
        nlist = min(self._nlist_setting or default_nlist(size), size)
        quantizer = faiss.IndexFlatIP(self._dim)  # faiss's Python wrapper keeps it alive
        ivf = faiss.IndexIVFFlat(quantizer, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # O(1) remove by id
        ivf.add_with_ids(vectors, ids)
        ivf.nprobe = min(self.nprobe, nlist)
        self._ivf, self._exact, self._trained_size = ivf, None, size

    def _ivf_contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) the IVF index holds, read from its inverted lists: IVF-Flat
        stores the vectors as they are, so no second copy is kept for retraining."""
        faiss = self._faiss
        lists = self._ivf.invlists
        id_parts, vector_parts = [], []
        for list_no in range(self._ivf.nlist):
            size = lists.list_size(list_no)
            if not size:
                continue
            id_parts.append(faiss.rev_swig_ptr(lists.get_ids(list_no), size).copy())
            codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * lists.code_size)
            vector_parts.append(codes.view(np.float32).reshape(size, self._dim).copy())
        if not id_parts:
            return np.empty(0, np.int64), np.empty((0, self._dim), np.float32)
        return np.concatenate(id_parts), np.concatenate(vector_parts)


def _as_rows(vector: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)


def _numpy_index_contents(index: NumpyIndex) -> tuple[np.ndarray, np.ndarray]:
    # NumpyIndex keeps its live rows contiguous in _matrix, in the order of _ids (same
    # package; reading them avoids holding a second copy of every vector).
    size = len(index)
    ids = np.array(index._ids, dtype=np.int64)
    return ids, np.ascontiguousarray(index._matrix[:size])
