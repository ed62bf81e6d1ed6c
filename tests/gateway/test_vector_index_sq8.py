"""BackgroundIVFIndex's default codes (SQ8 with an exact re-rank) and its maintenance
threads: the vectors are held once; the similarities it returns are exact and its answers
equal exact search's when every cluster is probed; a maintenance job runs faiss on one
OpenMP thread and gives the thread its setting back; builds swapped in while threads add,
remove and look up lose no entry and never return a removed one. `codes="flat"` (IVF-Flat,
a second copy) stays available and is checked beside it."""

import threading

import numpy as np
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_match import NumpyIndex
from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex
from tests.gateway._vector_helpers import DIM, Manual, clustered, near

WAIT = 60  # seconds: a generous bound for background jobs on a loaded machine


def built(n, seed, **kwargs):
    spawn = Manual()
    vectors = clustered(n, seed)
    index = BackgroundIVFIndex(DIM, exact_below=1000, spawn=spawn, **kwargs)
    index.add_many(np.arange(n), vectors)
    spawn.run_all()
    assert index.approximate and index.tail == 0
    return index, vectors


def test_codes_and_threads_are_validated():
    with pytest.raises(ConfigError, match="codes"):
        BackgroundIVFIndex(DIM, codes="pq")
    with pytest.raises(ConfigError, match="rerank"):
        BackgroundIVFIndex(DIM, rerank=0)
    with pytest.raises(ConfigError, match="maintenance_threads"):
        BackgroundIVFIndex(DIM, maintenance_threads=0)


def test_sq8_holds_the_vectors_once_where_flat_holds_them_twice(faiss):
    # 7,168 rows fill the first chunks exactly (1,024 + 2,048 + 4,096): no spare capacity.
    floats = 7168 * DIM * 4
    sq8, _ = built(7168, seed=1, nlist=32)
    flat, _ = built(7168, seed=1, nlist=32, codes="flat")
    assert sq8.codes == "sq8"  # the default
    assert sq8.nbytes < 1.5 * floats
    assert flat.nbytes > 2.0 * floats


@pytest.mark.parametrize("codes", ["sq8", "flat"])
def test_with_every_cluster_probed_answers_and_scores_equal_exact_search(faiss, codes):
    index, vectors = built(3000, seed=2, nlist=16, nprobe=16, codes=codes)
    exact = NumpyIndex(DIM)
    for i, row in enumerate(vectors):
        exact.add(i, row)
    for i in range(0, 3000, 4):
        index.remove(i)
        exact.remove(i)
    for query in near(vectors[1::25], seed=3):
        got, want = index.search(query, 4), exact.search(query, 4)
        assert [i for i, _ in got] == [i for i, _ in want]
        # SQ8 codes alone are off by about 1e-3: the re-rank returns exact similarities.
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_sq8_scores_are_the_exact_ones_not_the_codes(faiss):
    index, vectors = built(3000, seed=4, nlist=16, nprobe=16)
    query = near(vectors[7:8], seed=5)[0]
    scores, ids = index._ivf.search(query.reshape(1, -1), 4)
    coded = dict(zip(ids[0].tolist(), scores[0].tolist(), strict=True))
    for entry_id, score in index.search(query, 4):
        assert score == pytest.approx(float(vectors[entry_id] @ query), abs=1e-6)
        if entry_id in coded:
            assert coded[entry_id] != pytest.approx(score, abs=1e-6)


def test_a_maintenance_job_runs_faiss_on_one_thread_and_restores_the_setting(faiss):
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)  # this thread's setting (OpenMP keeps one per thread)
    try:
        spawn = Manual()
        vectors = clustered(1600, seed=6)
        index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, batch=256, spawn=spawn)
        seen = []
        real_assign = index._assign

        def assign(quantizer, rows):
            seen.append(faiss.omp_get_max_threads())
            return real_assign(quantizer, rows)

        index._assign = assign
        index.add_many(np.arange(1000), vectors[:1000])
        spawn.run_all()  # the build, on this thread
        index.add_many(np.arange(1000, 1600), vectors[1000:])
        spawn.run_all()  # a batched add
        assert index.builds == 1 and index.flushes == 1
        assert seen and set(seen) == {1}
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


def test_swaps_during_concurrent_lookups_lose_no_entry_and_return_no_removed_one(faiss):
    """Real worker threads: a writer adds 6,000 rows and removes every fifth behind it
    (builds at 500, 1,000, 2,000, 4,000 rows, batched adds between) while two readers look
    up rows known live (each finds itself) and check no result was removed before the
    lookup began."""
    n = 6000
    vectors = clustered(n, seed=7)
    index = BackgroundIVFIndex(
        DIM, exact_below=500, nlist=16, nprobe=4, batch=128, regrow=2, codes="sq8"
    )
    lock = threading.Lock()
    live: list[int] = []  # added, never to be removed
    removed: set[int] = set()
    stop = threading.Event()
    errors: list[str] = []
    lookups = [0, 0]

    def writer():
        for start in range(0, n, 100):
            ids = np.arange(start, start + 100)
            index.add_many(ids, vectors[start : start + 100])
            for i in ids.tolist():
                if i % 5 == 0:
                    index.remove(i)
                    with lock:
                        removed.add(i)
                else:
                    with lock:
                        live.append(i)
            if (start + 100) % 500 == 0:  # builds start at 500, 1,000, 2,000 and 4,000 rows
                assert index.wait_idle(WAIT)  # while the readers keep looking up

    def reader(slot):
        rng = np.random.default_rng(slot)
        while not stop.is_set() or lookups[slot] < 50:
            with lock:
                if not live:
                    continue
                target = live[int(rng.integers(len(live)))]
                gone = set(removed)
            found = index.search(vectors[target], 4)
            lookups[slot] += 1
            if found[0][0] != target:
                errors.append(f"live {target} not found: {found}")
            if gone & {i for i, _ in found}:
                errors.append(f"removed ids returned: {gone & {i for i, _ in found}}")

    readers = [threading.Thread(target=reader, args=(slot,)) for slot in (0, 1)]
    for thread in readers:
        thread.start()
    writer()
    assert index.wait_idle(WAIT)
    stop.set()
    for thread in readers:
        thread.join(WAIT)
    assert not errors, errors[:5]
    assert index.builds >= 3 and index.failures == 0 and index.approximate
    assert len(index) == len(live) == n - n // 5
    for i in range(1, n, 37):
        best = index.search(vectors[i], 1)[0][0]
        assert best == i if i % 5 else best != i


def entry(i, vector):
    from aigw_lab.gateway.semantic_store import SemanticEntry

    return SemanticEntry(
        partition="p",
        text=str(i),
        vector=vector,
        response=None,
        created=0.0,
        expires=None,
        markers=((), 0),
    )


def test_a_store_searches_it_outside_the_store_lock_and_drops_entries_gone_meanwhile(faiss):
    """A search held inside the index never blocks another caller's add or removal through
    the store; an entry removed while the search ran is not returned."""
    from aigw_lab.gateway.semantic_store import MemorySemanticStore

    vectors = clustered(200, seed=8)
    store = MemorySemanticStore(1000, index_factory=lambda dim: BackgroundIVFIndex(dim))
    added = [store.add(entry(i, vectors[i])) for i in range(100)]
    (index,) = store._indexes.values()
    entered, release = threading.Event(), threading.Event()
    real_search = index.search

    def held_search(vector, k):
        found = real_search(vector, k)
        entered.set()
        assert release.wait(WAIT)
        return found

    index.search = held_search
    answers = []
    looker = threading.Thread(target=lambda: answers.append(store.search("p", vectors[5], 2)))
    looker.start()
    assert entered.wait(WAIT)
    other = threading.Thread(
        target=lambda: (store.add(entry(100, vectors[100])), store.remove(added[5].entry_id))
    )
    other.start()
    other.join(WAIT)
    assert not other.is_alive(), "an add waited for another caller's search"
    release.set()
    looker.join(WAIT)
    (found,) = answers
    assert [e.text for e, _ in found] and "5" not in [e.text for e, _ in found]
    assert len(store) == 100


def test_a_store_keeps_exact_indexes_under_its_lock():
    from aigw_lab.gateway.semantic_store import MemorySemanticStore

    assert not getattr(NumpyIndex, "locks_itself", False)  # not thread-safe on its own
    store = MemorySemanticStore(10)
    store.add(entry(0, clustered(1, seed=9)[0]))
    assert store.search("p", clustered(1, seed=9)[0], 1)[0][0].text == "0"


def test_a_default_cache_still_searches_exactly():
    """Small caches keep the exact default: no faiss, no approximation."""
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.gateway.semantic_cache import SemanticCache

    cache = SemanticCache(HashingEmbedder(16))
    cache.store.add(entry(0, clustered(1, seed=10, dim=16)[0]))
    (index,) = cache.store._indexes.values()
    assert type(index) is NumpyIndex


def test_rescore_scores_live_rows_exactly_and_leaves_out_removed_ones():
    from aigw_lab.gateway.vector_rows import VectorRows

    vectors = clustered(3000, seed=11)  # spans several chunks (1,024, 2,048, ...)
    rows = VectorRows(DIM)
    rows.append(np.arange(3000), vectors)
    rows.kill(2500)
    query = vectors[0]
    found = dict(rows.rescore([5, 1500, 2500, 2999, 7777], query))
    assert set(found) == {5, 1500, 2999}
    for entry_id, score in found.items():
        assert score == pytest.approx(float(vectors[entry_id] @ query), abs=1e-6)
    assert rows.rescore([], query) == []


class HeldSearch:
    """Stands in for a faiss index: its search waits on an Event, the rest passes through."""

    def __init__(self, inner):
        self._inner, self.entered, self.release = inner, threading.Event(), threading.Event()

    def search(self, *args):
        self.entered.set()
        assert self.release.wait(WAIT)
        return self._inner.search(*args)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_add_never_waits_for_a_search_inside_faiss(faiss):
    index, vectors = built(3000, seed=12, nlist=16, nprobe=16)
    held = HeldSearch(index._ivf)
    index._ivf = held
    answers = []
    looker = threading.Thread(target=lambda: answers.append(index.search(vectors[9], 1)))
    looker.start()
    assert held.entered.wait(WAIT)
    adder = threading.Thread(target=lambda: index.add(5000, vectors[0]))
    adder.start()
    adder.join(WAIT)
    assert not adder.is_alive(), "an add waited for a search"
    held.release.set()
    looker.join(WAIT)
    assert answers == [[(9, pytest.approx(1.0, abs=1e-5))]]
    assert index.search(vectors[0], 2)[0][0] in (0, 5000) and len(index) == 3001


def test_merge_keeps_each_id_once_best_first():
    from aigw_lab.gateway.vector_rows import merge_top_k

    found = [(3, 0.5), (1, 0.9), (3, 0.5), (2, 0.9), (1, 0.9), (4, 0.1)]
    assert merge_top_k(found, 3) == [(1, 0.9), (2, 0.9), (3, 0.5)]
    assert merge_top_k([(1, 0.9)], 0) == []


def test_an_add_does_not_wait_for_a_search_through_a_batched_add(faiss):
    """A batched add needs the faiss lock a held search has: it waits for it without
    holding the lock adds take, so adds go on meanwhile."""
    spawn = Manual()
    vectors = clustered(1600, seed=13)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, nprobe=16, batch=256, spawn=spawn)
    index.add_many(np.arange(1000), vectors[:1000])
    spawn.run_all()
    index.add_many(np.arange(1000, 1300), vectors[1000:1300])
    (flush,) = spawn.jobs
    held = HeldSearch(index._ivf)
    index._ivf = held
    looker = threading.Thread(target=lambda: index.search(vectors[3], 1))
    looker.start()
    assert held.entered.wait(WAIT)
    waiting = threading.Event()
    faiss_lock = index._ivf_lock

    class Writing:  # the faiss lock's writer side, saying when the batched add takes it
        def __enter__(self):
            waiting.set()
            return faiss_lock.exclusive().__enter__()

        def __exit__(self, *exc):
            return faiss_lock.exclusive().__exit__(*exc)

    class Signalling:  # the faiss lock (searches share it; writers hold it alone)
        def shared(self):
            return faiss_lock.shared()

        def exclusive(self):
            return Writing()

    index._ivf_lock = Signalling()
    flusher = threading.Thread(target=spawn.run_all)
    flusher.start()  # computes clusters, then waits for the faiss lock
    assert waiting.wait(WAIT)
    adder = threading.Thread(
        target=lambda: index.add_many(np.arange(1300, 1600), vectors[1300:1600])
    )
    adder.start()
    adder.join(WAIT)
    assert not adder.is_alive(), "an add waited behind a batched add waiting for a search"
    held.release.set()
    for thread in (looker, flusher):
        thread.join(WAIT)
    assert index.flushes >= 1 and index.failures == 0 and len(index) == 1600
    assert index.search(vectors[1450], 1)[0][0] == 1450


def test_a_build_stops_indexing_rounds_that_do_not_shrink_and_swaps(faiss, monkeypatch):
    """Callers adding faster than the build indexes: each round brings more rows than the
    last. The build stops indexing them, only copies what remains, swaps, and leaves the
    rest to batched adds; nothing is lost."""
    spawn = Manual()
    vectors = clustered(30_000, seed=14)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, batch=256, spawn=spawn)
    real_index_tail = index._index_tail
    calls, written = [], [1000]

    def index_tail_while_callers_add(build, *pieces):
        calls.append(build.indexed)
        real_index_tail(build, *pieces)
        more = 2500 * (len(calls) + 1)  # every round, more rows than the round before
        if written[0] + more <= len(vectors):
            index.add_many(np.arange(written[0], written[0] + more), vectors[written[0] :][:more])
            written[0] += more

    real_train = index._train

    def train_while_callers_add(*args):
        ivf = real_train(*args)
        index.add_many(np.arange(1000, 3500), vectors[1000:3500])  # the first round
        written[0] = 3500
        return ivf

    monkeypatch.setattr(index, "_index_tail", index_tail_while_callers_add)
    monkeypatch.setattr(index, "_train", train_while_callers_add)
    index.add_many(np.arange(1000), vectors[:1000])
    spawn.jobs.pop(0)()  # the build (flushes it scheduled stay queued)
    assert index.builds == 1 and index.approximate
    assert len(calls) == 1  # the second round grew: copied, not indexed
    assert len(index) == written[0] == 8500 and index.tail == 5000  # left as the tail
    spawn.run_all()  # batched adds take it
    assert index.tail < 256 or index.wait_idle(WAIT)
    for i in range(0, written[0], 997):
        assert index.search(vectors[i], 1)[0][0] == i
