"""`BackgroundIVFIndex`: a semantic-cache index for a million entries whose maintenance never
runs on the call path.

    from functools import partial
    cache = SemanticCache(embedder, max_entries=1_000_000,
                          index_factory=partial(BackgroundIVFIndex, nprobe=8))

It searches exactly (one matrix product, the same answers as `NumpyIndex`) while a
partition is small. From ``exact_below`` live entries on, it searches a faiss IVF index
(inner product: cosine on the cache's unit vectors) plus, exactly, the *tail* of vectors
added since that index last took vectors in. By default (``codes="sq8"``) the IVF index
keeps one byte per dimension, not the vector: its ``rerank`` best candidates are scored
again exactly against the rows, so the vectors are held once (in `VectorRows`), a lookup
reads a quarter of the bytes, and the similarities it returns are exact (the cache's
threshold compares them). ``codes="flat"`` keeps IVF-Flat (a second float copy). The work
that used to stall every caller happens on a worker thread (``spawn``), outside the
index's lock, with faiss limited to ``maintenance_threads`` OpenMP threads there (a
setting of that thread only, restored after each job), so maintenance leaves a core to
the callers:

* training and retraining (k-means on a sample, then every live vector assigned to its
  cluster into a new index), started when the rows written reach ``regrow`` times what the
  last build held; the new index takes in what was added and removed meanwhile in rounds,
  then is swapped in under the lock (one short step);
* batched adds: once the tail holds ``batch`` vectors, their clusters are computed off the
  lock and the vectors appended to the inverted lists under it (a memory copy).

Lookups during a build still answer: the current index (or exact search) plus the tail.
A lookup whose best at ``nprobe`` is below ``deep_below`` (a miss for the cache) searches
once more at ``deep_nprobe`` clusters: the neighbour may sit in a farther cluster.
faiss is an optional dependency: ``pip install "aigw-lab[ann]"``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.vector_index_ivf import _import_faiss
from aigw_lab.gateway.vector_ivf_build import (
    Build,
    add_assigned,
    assign,
    release,
    train_ivf,
    training_for,
    with_ids,
)
from aigw_lab.gateway.vector_locks import SearchLock, start_daemon_thread
from aigw_lab.gateway.vector_rows import VectorRows, exact_top_k, merge_top_k

__all__ = ["BackgroundIVFIndex", "start_daemon_thread"]

_LOG = logging.getLogger("aigw_lab.semantic_index")
#: A build catches up with adds and removals in rounds off the lock until fewer than this
#: remain, then takes the rest under the lock and swaps.
_CATCH_UP_LEFT = 2048
_MAX_CATCH_UP_ROUNDS = 50
#: A batched add takes at most this many batches, so its copy under the lock stays short
#: (with 4, no maintenance step held the lock over 0.8 ms CPU in a 1M fill).
_FLUSH_BATCHES = 4
_CODES = ("sq8", "flat")


def _similarity(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(
            f"BackgroundIVFIndex {name}={value!r} is invalid",
            hint="use a cosine similarity above 0 and at most 1 (the cache's threshold)",
        )
    return float(value)


def _setting(name: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(
            f"BackgroundIVFIndex {name}={value!r} is invalid",
            hint=f"use an integer of at least {low}",
        )
    return value


class BackgroundIVFIndex:
    """A `VectorIndex`: exact below ``exact_below`` live entries, faiss IVF (SQ8 codes with
    an exact re-rank, or IVF-Flat) plus an exactly searched tail above, maintained on a
    worker thread.

    ``nlist``: the most clusters (default 2048; a build uses ``live // 32`` rounded down to
    a power of two when that is fewer). ``nprobe``: clusters searched per lookup. ``batch``:
    tail vectors appended to the index at once. ``regrow``: rebuild (retrain, and drop
    removed rows) when the rows written reach this multiple of the last build's.
    ``train_per_cluster``: k-means sample points per cluster; ``niter``: its iterations.
    ``spawn``: runs a maintenance job off the call path (default: a daemon thread each).
    ``codes``: ``"sq8"`` (8-bit codes in the IVF index, the ``rerank`` best re-scored
    exactly from the rows) or ``"flat"`` (float vectors in the IVF index, a second copy).
    ``maintenance_threads``: faiss's OpenMP threads inside a maintenance job.
    ``deep_nprobe``, ``deep_below``: a lookup whose best similarity at ``nprobe`` is below
    ``deep_below`` (set it to the cache's threshold: 0.9 by default) searches again at
    ``deep_nprobe`` clusters, since only a miss can become a hit by looking further (on
    151k real prompts: recall@1 0.965 at nprobe 8, 0.987 adaptive 8 -> 32, at about the
    same p50; docs/performance.md). ``deep_nprobe=None`` (or not above ``nprobe``): one
    pass, as before session 11.
    """

    #: Every method takes the index's own locks: a `MemorySemanticStore` searches it outside
    #: the store's lock, so callers' adds do not queue behind other callers' searches (and
    #: inside, a search holds only the lock that batched adds and removals of indexed rows
    #: take, not the one adds take).
    locks_itself = True

    def __init__(
        self,
        dim: int,
        *,
        exact_below: int = 20_000,
        nlist: int = 2048,
        nprobe: int = 8,
        batch: int = 1024,
        regrow: int = 4,
        train_per_cluster: int = 32,
        niter: int = 10,
        spawn: Callable[[Callable[[], None]], None] = start_daemon_thread,
        codes: str = "sq8",
        rerank: int = 16,
        maintenance_threads: int = 1,
        deep_nprobe: int | None = 32,
        deep_below: float = 0.9,
    ) -> None:
        if codes not in _CODES:
            raise ConfigError(
                f"BackgroundIVFIndex codes={codes!r} is invalid", hint='use "sq8" or "flat"'
            )
        self.codes = codes
        self.rerank = _setting("rerank", rerank, low=1)
        self.maintenance_threads = _setting("maintenance_threads", maintenance_threads, low=1)
        self.dim = _setting("dim", dim, low=1)
        self.exact_below = _setting("exact_below", exact_below, low=1)
        self.max_nlist = _setting("nlist", nlist, low=1)
        self.nprobe = _setting("nprobe", nprobe, low=1)
        self.batch = _setting("batch", batch, low=1)
        self.regrow = _setting("regrow", regrow, low=2)
        self.train_per_cluster = _setting("train_per_cluster", train_per_cluster, low=1)
        self.niter = _setting("niter", niter, low=1)
        self.deep_nprobe = (
            None if deep_nprobe is None else _setting("deep_nprobe", deep_nprobe, low=1)
        )
        self.deep_below = _similarity("deep_below", deep_below)
        self._faiss = _import_faiss()  # at construction, so a missing extra fails early
        self._spawn = spawn
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # faiss may not search an IVF index while vectors are appended to or removed from
        # it: this lock covers only that, shared by searches (one caller's search never
        # waits for another's, e.g. one that lost its core mid-search), exclusive for
        # writes. Whoever needs both takes it first, then _lock, so a holder of _lock never
        # waits for it, and an add (which takes _lock only) never waits for a search.
        self._ivf_lock = SearchLock()
        self._rows = VectorRows(dim)
        self._ivf: Any = None  # the faiss index over rows [0, _indexed)
        self._indexed = 0  # rows below this are in _ivf (or removed); the rest: the tail
        self._built_rows = 0  # rows written when the last build snapshotted
        self._generation = 0  # bumped by every swap; a job from an older one is void
        self._removed_since: list[int] | None = None  # during a build: ids removed since
        self._building = self._flushing = False
        # After a failed job, the next waits until this many rows are written (no retry loop).
        self._retry_build_at = self._retry_flush_at = 0
        self.builds = self.flushes = self.failures = 0
        #: The longest a maintenance step held the lock (callers' most waited for it):
        #: (wall seconds, this thread's CPU seconds).
        self.max_locked = (0.0, 0.0)

    # --- state, for notebooks, tests and benchmarks ---------------------------------------

    @property
    def approximate(self) -> bool:
        """Whether an IVF index answers part of each search (False: all exact)."""
        return self._ivf is not None

    @property
    def tail(self) -> int:
        """Rows written but not yet in the IVF index (all of them while exact)."""
        return self._rows.size - self._indexed

    @property
    def nlist(self) -> int:
        """The clusters of the current IVF index (0 while exact)."""
        return int(self._ivf.nlist) if self._ivf is not None else 0

    @property
    def nbytes(self) -> int:
        """The bytes it holds for vectors: the rows (reserved capacity included), the IVF
        index's codes, ids and centroids."""
        held = self._rows.nbytes
        if self._ivf is not None:
            held += self._ivf.ntotal * (self._ivf.code_size + 8)
            held += self._ivf.quantizer.ntotal * self.dim * 4
        return held

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no maintenance job is in flight or scheduled (False on timeout)."""
        with self._idle:
            return self._idle.wait_for(lambda: not (self._building or self._flushing), timeout)

    def __repr__(self) -> str:
        mode = f"ivf nlist={self.nlist} nprobe={self.nprobe}" if self.approximate else "exact"
        return f"<BackgroundIVFIndex dim={self.dim} size={len(self)} {mode} tail={self.tail}>"

    # --- the VectorIndex protocol ---------------------------------------------------------

    def add(self, entry_id: int, vector: np.ndarray) -> None:
        self.add_many(np.array([entry_id], dtype=np.int64), np.asarray(vector).reshape(1, -1))

    def add_many(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add several vectors at once (ids new and distinct): one lock, one copy."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            self._rows.append(ids, vectors)
            jobs = self._schedule()
        self._start(jobs)

    def remove(self, entry_id: int) -> None:
        with self._ivf_lock.exclusive(), self._lock:  # the faiss lock first (see __init__)
            row = self._rows.kill(entry_id)  # KeyError for an unknown id, as NumpyIndex
            if row < self._indexed:
                self._ivf.remove_ids(self._selector([entry_id]))
            if self._removed_since is not None:
                self._removed_since.append(entry_id)
            jobs = self._schedule()  # enough removed rows start a compacting build
        self._start(jobs)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        with self._lock:  # a consistent view; the searches below run outside the lock
            rows, ivf = self._rows, self._ivf
            tail = rows.segments(self._indexed, rows.size)  # immutable rows (ids may go -1)
        found = exact_top_k(tail, query, k)
        if ivf is None:
            return merge_top_k(found, k)
        found += self._search_ivf(ivf, rows, query, k, None)
        best = merge_top_k(list(found), k)
        deep = None if self.deep_nprobe is None else min(self.deep_nprobe, ivf.nlist)
        if deep is None or deep <= ivf.nprobe or (best and best[0][1] >= self.deep_below):
            return best
        # A miss at nprobe: a deeper pass may find the neighbour in a farther cluster; a hit
        # has nothing to gain from it. The first pass's finds stay candidates (the deeper
        # pass re-ranks its own SQ8 best, which need not include them), so it never answers
        # worse than one pass.
        found += self._search_ivf(ivf, rows, query, k, deep)
        return merge_top_k(found, k)

    def _search_ivf(
        self, ivf: Any, rows: VectorRows, query: np.ndarray, k: int, nprobe: int | None
    ) -> list[tuple[int, float]]:
        """The IVF index's best ``k`` for ``query`` at ``nprobe`` clusters (None: its own),
        with exact similarities (SQ8 candidates re-scored from ``rows``)."""
        flat = self.codes == "flat"
        # Per search, not on the shared index: other threads search it at its own nprobe.
        more = {} if nprobe is None else {"params": self._faiss.SearchParametersIVF(nprobe=nprobe)}
        with self._ivf_lock.shared():
            if not ivf.ntotal:
                return []
            scores, ids = ivf.search(query.reshape(1, -1), k if flat else self.rerank, **more)
        # faiss pads with id -1 when the probed clusters hold fewer than k vectors.
        if flat:
            return [
                (int(i), float(s))
                for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
                if i >= 0
            ]
        # codes approximate the score: the candidates are scored again exactly. A batched
        # add may have moved tail rows into the index since the view: an id can come from
        # both; merge_top_k keeps it once.
        return rows.rescore([i for i in ids[0].tolist() if i >= 0], query)

    def vector(self, entry_id: int) -> np.ndarray:
        """A copy of ``entry_id``'s vector, exact (KeyError if unknown)."""
        with self._lock:
            return self._rows.vector(entry_id)

    def vectors(self, entry_ids: list[int]) -> list[np.ndarray | None]:
        """Copies of several entries' vectors under one take of the lock (None: unknown):
        a lookup's found entries, read back with one lock instead of one each."""
        with self._lock:
            rows = self._rows
            return [rows.vector(i) if i in rows.rows else None for i in entry_ids]

    def __len__(self) -> int:
        return len(self._rows)

    # --- scheduling ------------------------------------------------------------------------

    def _start(self, jobs: list[Callable[[], None]]) -> None:
        """Start jobs `_schedule` flagged, after the lock is released: starting a thread waits
        until it runs, which needs the GIL (and a core), and an add holding this lock, and
        the store's, kept every caller behind that wait (a 15 ms GIL wait in the probe)."""
        for job in jobs:
            self._spawn(job)

    def _schedule(self) -> list[Callable[[], None]]:
        """(The lock held.) Flag the maintenance jobs that are due; the caller starts them
        with `_start` once it has released the lock."""
        jobs: list[Callable[[], None]] = []
        rows, live = self._rows.size, len(self._rows)
        grown = live >= self.exact_below and (
            self._ivf is None or rows >= self.regrow * self._built_rows
        )
        # Removed rows stay in place until a build compacts them: at most as many as live.
        sparse = rows - live >= max(live, self.batch)
        if not self._building and (grown or sparse) and rows >= self._retry_build_at:
            self._building = True
            self._removed_since = []
            self._built_rows = rows
            jobs.append(self._run_build)
        flush = self._ivf is not None and self.tail >= self.batch
        if flush and not self._flushing and rows >= self._retry_flush_at:
            self._flushing = True
            jobs.append(self._run_flush)
        return jobs

    def _job_done(self, flag: str) -> None:
        with self._lock:
            setattr(self, flag, False)
            if flag == "_building":
                self._removed_since = None
            jobs = self._schedule()
            self._idle.notify_all()
        self._start(jobs)

    # --- batched adds ---------------------------------------------------------------------

    @contextmanager
    def _maintenance_threads(self) -> Iterator[None]:
        """faiss's OpenMP threads limited on this thread for one job (an OpenMP setting is
        the calling thread's): two threads on a 2-core machine took both cores from the
        callers, and held the lock while a parallel add waited for its second thread."""
        faiss = self._faiss
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.maintenance_threads)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)

    def _run_flush(self) -> None:
        """Append the tail to the IVF index: clusters computed off the lock, then one copy."""
        with self._maintenance_threads():
            self._flush()

    def _flush(self) -> None:
        try:
            with self._lock:
                held = time.perf_counter(), time.thread_time()
                generation, ivf = self._generation, self._ivf
                start = self._indexed
                stop = min(self._rows.size, start + _FLUSH_BATCHES * self.batch)
                ids = self._rows.ids_copy(start, stop)
                pieces = self._rows.segments(start, stop)  # immutable rows: copied unlocked
                self._note_locked(held)
            if not pieces:  # a swap emptied the tail meanwhile
                return
            vectors = np.concatenate([v for v, _ in pieces])
            lists = self._assign(ivf.quantizer, vectors)
            with self._ivf_lock.exclusive(), self._lock:  # the faiss lock first
                held = time.perf_counter(), time.thread_time()
                if generation == self._generation:
                    now = self._rows.ids_copy(start, stop)  # removed meanwhile: -1
                    keep = (now >= 0) & (ids >= 0)
                    add_assigned(self._faiss, ivf, ids[keep], vectors[keep], lists[keep])
                    self._indexed = stop
                    self.flushes += 1
                self._note_locked(held)
        except Exception:  # the index stays correct (the tail is searched exactly)
            self.failures += 1
            self._retry_flush_at = self._rows.size + self.batch
            _LOG.exception("semantic index: a batched add failed; the tail stays exact")
        finally:
            self._job_done("_flushing")

    def _assign(self, quantizer: Any, vectors: np.ndarray) -> np.ndarray:
        return assign(quantizer, vectors)  # a method: tests hold or watch it

    def _selector(self, ids: list[int]) -> Any:
        return self._faiss.IDSelectorArray(np.array(ids, dtype=np.int64))

    # --- builds ---------------------------------------------------------------------------

    def _run_build(self) -> None:
        """Build a compacted copy of the rows (and an IVF index once large enough) aside,
        catch it up with what changed meanwhile, then swap it in."""
        with self._maintenance_threads():
            self._build()

    def _build(self) -> None:
        try:
            with self._lock:
                held = time.perf_counter(), time.thread_time()
                snapshot = self._rows.size
                pieces = self._rows.segments(0, snapshot)
                ids = self._rows.ids_copy(0, snapshot)
                self._note_locked(held)
            live = int((ids >= 0).sum())
            if 8 * (snapshot - live) <= snapshot:
                # Few rows removed: the build indexes the rows where they are. Copying them
                # into a compacted VectorRows rebuilt its id map in Python, holding the GIL
                # (a 1M fill's lookups waited on it; session 11); dead rows stay dead.
                build = Build(self._rows, shared=True)
                pieces = with_ids(pieces, ids)
            else:  # rows below the snapshot never change (only their ids can: copied above)
                build = Build(VectorRows(self.dim))
                for vectors, piece_ids in with_ids(pieces, ids):
                    keep = piece_ids >= 0
                    build.rows.append(piece_ids[keep], vectors[keep])
                pieces = build.rows.segments(0, build.rows.size)
            if live >= self.exact_below:
                build.ivf = self._train(pieces, live)
                build.indexed = snapshot if build.shared else build.rows.size
            del pieces
            done, previous, chasing = snapshot, None, True
            for _ in range(_MAX_CATCH_UP_ROUNDS):
                with self._lock:
                    if self._rows.size - done < _CATCH_UP_LEFT:
                        break
                    held = time.perf_counter(), time.thread_time()
                    stop, changes = self._rows.size, self._changes_since(done)
                    self._note_locked(held)
                # Index the round's rows only while rounds shrink: callers adding faster
                # than one thread assigns clusters kept a build chasing them until they
                # stopped, lookups searching the growing rest exactly. Once a round does
                # not shrink, the rest is only copied (fast) and left to batched adds.
                chasing = chasing and (previous is None or stop - done < previous)
                self._apply(build, *changes, index=chasing)  # off the lock: still private
                previous, done = stop - done, stop
            with self._lock:  # the last, small round, then the swap
                held = time.perf_counter(), time.thread_time()
                self._apply(build, *self._changes_since(done), index=False)
                # The old rows and index are freed after the lock is released: freeing
                # them inside it held the lock 146 ms CPU at 1M; after, at most 0.8 ms
                # (bench_semantic_index.py, docs/performance.md).
                old_rows, old_ivf = self._rows, self._ivf
                self._rows, self._ivf, self._indexed = build.rows, build.ivf, build.indexed
                self._generation += 1
                self.builds += 1
                self._note_locked(held)
            del build
            release(self._faiss, old_ivf)
            del old_rows, old_ivf
        except Exception:  # the old index stays in service
            self.failures += 1
            self._retry_build_at = 2 * self._rows.size
            _LOG.exception("semantic index: a rebuild failed; the previous index stays")
        finally:
            self._job_done("_building")

    def _note_locked(self, since: tuple[float, float]) -> None:
        """(The lock held.) Keep the longest hold of a maintenance step."""
        wall, cpu = time.perf_counter() - since[0], time.thread_time() - since[1]
        if wall > self.max_locked[0]:
            self.max_locked = (wall, cpu)

    def _changes_since(self, done: int) -> tuple[np.ndarray, list, list[int]]:
        """(The lock held.) The ids of the rows written since row ``done`` (-1: removed),
        views of those rows (immutable: read later, unlocked) and the ids removed since the
        last call, taken together so that applying adds before removals never brings back
        a removed id."""
        stop = self._rows.size
        ids, pieces = self._rows.ids_copy(done, stop), self._rows.segments(done, stop)
        removed, self._removed_since = self._removed_since or [], []
        return ids, pieces, removed

    def _apply(
        self, build: Build, ids: np.ndarray, pieces: list, removed: list[int], *, index: bool
    ) -> None:
        """Bring ``build`` up to date with a round of changes (rows written since the last
        round, with their ids then, and ids removed meanwhile); ``index``: put the round's
        rows in its IVF index too (otherwise they stay its tail, for batched adds)."""
        if build.shared:  # the rows are already there; only the IVF index catches up
            if build.ivf is not None and removed:  # ids it never held are skipped
                build.ivf.remove_ids(self._selector(removed))
            if index:
                self._index_tail(build, with_ids(pieces, ids))
            return
        if len(ids):
            keep = ids >= 0
            vectors = np.concatenate([v for v, _ in pieces])[keep]
            build.rows.append(ids[keep], vectors)  # the build's tail; a flush indexes them
        gone = [i for i in removed if i in build.rows.rows]
        in_ivf = [i for i in gone if build.rows.rows[i] < build.indexed]
        for entry_id in gone:
            build.rows.kill(entry_id)
        if in_ivf:
            build.ivf.remove_ids(self._selector(in_ivf))
        if index:
            self._index_tail(build)

    def _index_tail(self, build: Build, pieces: list | None = None) -> None:
        """(Off the lock.) Put the rows a catch-up round brought into the build's IVF index,
        so the swapped-in index does not start with a long, exactly searched tail: a
        shared build's ``pieces`` (with their ids copied under the lock), or the rows a
        compacting build appended."""
        if build.ivf is None:
            return
        if pieces is None:
            pieces = build.rows.segments(build.indexed, build.rows.size)
        for vectors, ids in pieces:
            keep = ids >= 0
            lists = self._assign(build.ivf.quantizer, vectors[keep])
            add_assigned(self._faiss, build.ivf, ids[keep], vectors[keep], lists)
            build.indexed += len(ids)

    def _train(self, pieces: list, live: int) -> Any:
        """A new IVF index trained on a sample of ``pieces`` ((vectors, ids) pairs, ``live``
        of their rows live) and holding their live rows."""
        training = training_for(live, self.max_nlist, self.train_per_cluster)
        return train_ivf(
            self._faiss,
            pieces,
            live,
            training,
            dim=self.dim,
            codes=self.codes,
            nprobe=self.nprobe,
            niter=self.niter,
            per_cluster=self.train_per_cluster,
            assign_rows=self._assign,
        )
