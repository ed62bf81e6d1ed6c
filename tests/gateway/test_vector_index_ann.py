"""BackgroundIVFIndex: exact (equal to NumpyIndex) while small; approximate above with a good
recall@1 on a fixed set; builds and batched adds run off the caller's path (a build held
on an Event never blocks a lookup, an add or a removal); what changed during a build is in
the swapped-in index; removed rows are compacted; callers on threads and asyncio hit
through a SemanticCache while it builds. The faiss tests skip when faiss is absent; the
"faiss missing" and argument checks always run."""

import asyncio
import sys
import threading

import numpy as np
import pytest

from aigw_lab import Gateway, Price
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_cache import NumpyIndex, SemanticCache
from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex
from aigw_lab.testing.fakes import MockProvider
from tests.gateway._vector_helpers import DIM, Manual, clustered, near

WAIT = 30  # seconds: a generous bound for a background job on a loaded machine


# --- always -----------------------------------------------------------------------------------


def test_missing_faiss_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigError) as info:
        BackgroundIVFIndex(DIM)
    assert 'pip install "aigw-lab[ann]"' in info.value.hint


@pytest.mark.parametrize(
    "kwargs",
    [{"exact_below": 0}, {"nlist": 0}, {"nprobe": True}, {"batch": 1.5}, {"regrow": 1}],
)
def test_invalid_arguments_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="BackgroundIVFIndex"):
        BackgroundIVFIndex(DIM, **kwargs)


# --- exact while small ------------------------------------------------------------------------


def test_below_the_threshold_results_equal_numpy_index(faiss):
    vectors = clustered(400, seed=1)
    index, exact = BackgroundIVFIndex(DIM, exact_below=1000), NumpyIndex(DIM)
    for i, row in enumerate(vectors):
        index.add(i, row)
        exact.add(i, row)
    for i in range(0, 400, 3):
        index.remove(i)
        exact.remove(i)
    assert not index.approximate and len(index) == len(exact)
    for query in near(vectors[:50], seed=2):
        got, want = index.search(query, 4), exact.search(query, 4)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


# --- approximate, recall on a fixed set -------------------------------------------------------


def test_recall_at_1_against_exact_search_on_near_duplicates(faiss):
    vectors = clustered(6000, seed=3)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=64, nprobe=8, batch=256)
    exact = NumpyIndex(DIM)
    index.add_many(np.arange(6000), vectors)
    for i, row in enumerate(vectors):
        exact.add(i, row)
    assert index.wait_idle(WAIT)
    assert index.approximate and index.tail == 0 and index.nlist == 64
    queries = near(vectors[::20], seed=4)
    agree = [index.search(q, 1)[0][0] == exact.search(q, 1)[0][0] for q in queries]
    assert np.mean(agree) >= 0.98
    best = index.search(queries[0], 4)
    assert [s for _, s in best] == sorted((s for _, s in best), reverse=True)


# --- maintenance off the call path ------------------------------------------------------------


def test_a_held_build_never_blocks_lookups_adds_or_removals(faiss, monkeypatch):
    """The build's training is held on an Event: meanwhile another thread adds, removes and
    looks up, answered by exact search over what the index holds; after the release and
    the swap, removals made during the build stay removed and adds are found."""
    vectors = clustered(3000, seed=5)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=32, nprobe=32, batch=128)
    entered, release = threading.Event(), threading.Event()
    real_train = index._train

    def held_train(*args):
        entered.set()
        assert release.wait(WAIT)
        return real_train(*args)

    monkeypatch.setattr(index, "_train", held_train)
    index.add_many(np.arange(1000), vectors[:1000])  # reaches exact_below: a build starts
    assert entered.wait(WAIT)
    done = []

    def caller():
        for i in range(1000, 3000):
            index.add(i, vectors[i])
        for i in range(0, 3000, 5):
            index.remove(i)
        done.append([index.search(vectors[i], 1)[0][0] for i in range(1, 3000, 50)])

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "a caller waited for the held build"
    assert done[0] == list(range(1, 3000, 50))  # exact search over all rows while held
    assert not index.approximate
    release.set()
    assert index.wait_idle(WAIT)
    assert index.approximate and index.builds >= 1 and index.failures == 0
    assert len(index) == 3000 - 600
    removed = set(range(0, 3000, 5))
    for i in range(0, 3000, 7):
        found = index.search(vectors[i], 1)[0][0]
        assert found not in removed
        if i not in removed:
            assert found == i


def test_vectors_reach_the_index_in_batches(faiss):
    spawn = Manual()
    vectors = clustered(2500, seed=6)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, batch=256, spawn=spawn)
    index.add_many(np.arange(1000), vectors[:1000])
    spawn.run_all()  # the first build
    assert index.approximate and index.tail == 0
    for i in range(1000, 1255):
        index.add(i, vectors[i])
    assert index.tail == 255 and not spawn.jobs  # below the batch: no job yet
    for i in range(1255, 1700):
        index.add(i, vectors[i])
    assert len(spawn.jobs) == 1  # one flush in flight at a time, however many adds
    ntotal = index._ivf.ntotal
    spawn.run_all()
    assert index._ivf.ntotal == ntotal + 700 and index.tail == 0 and index.flushes == 1
    assert index.search(vectors[1600], 1)[0][0] == 1600


def test_a_batch_skips_rows_removed_while_its_clusters_were_computed(faiss):
    spawn = Manual()
    vectors = clustered(1400, seed=7)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, batch=128, spawn=spawn)
    index.add_many(np.arange(1000), vectors[:1000])
    spawn.run_all()
    index.add_many(np.arange(1000, 1200), vectors[1000:1200])
    (flush,) = spawn.jobs
    real_assign = index._assign

    def assign_then_remove(quantizer, rows):
        out = real_assign(quantizer, rows)
        index.remove(1100)  # between the copy and the append, off the lock
        return out

    index._assign = assign_then_remove
    spawn.run_all()
    assert index._ivf.ntotal == 1000 + 199
    assert index.search(vectors[1100], 1)[0][0] != 1100


def test_removed_rows_are_compacted_by_a_build(faiss):
    spawn = Manual()
    vectors = clustered(2000, seed=8)
    index = BackgroundIVFIndex(DIM, exact_below=500, nlist=16, batch=64, spawn=spawn)
    index.add_many(np.arange(2000), vectors)
    spawn.run_all()
    for i in range(1200):
        index.remove(i)
    spawn.run_all()
    assert index._rows.size == len(index) == 800  # no removed row kept
    assert index.search(vectors[1500], 1)[0][0] == 1500


def test_a_failed_build_leaves_the_previous_index_answering(faiss, monkeypatch, caplog):
    spawn = Manual()
    vectors = clustered(1200, seed=9)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, spawn=spawn)

    def broken(rows):
        raise MemoryError("no room for the new index")

    monkeypatch.setattr(index, "_train", broken)
    index.add_many(np.arange(1200), vectors)
    spawn.run_all()
    assert index.failures == 1 and not index.approximate  # and no retry loop
    assert "rebuild failed" in caplog.text
    assert index.search(vectors[7], 1)[0][0] == 7
    index.add_many(np.arange(1200, 2400), vectors)
    assert len(spawn.jobs) == 1  # retried once the rows doubled


def test_threads_and_asyncio_callers_hit_while_the_index_builds(faiss):
    embedder = HashingEmbedder(64)
    index_args = {"exact_below": 200, "nlist": 8, "nprobe": 8, "batch": 32}
    cache = SemanticCache(
        embedder,
        threshold=0.95,
        max_entries=5000,
        verifier="off",
        index_factory=lambda dim: BackgroundIVFIndex(dim, **index_args),
    )
    provider = MockProvider("mock", models=("m1",))
    gateway = Gateway([provider], middleware=[cache], log=None, prices={"mock/m1": Price(1.0, 2.0)})
    prompts = [f"question number {i} about subject {i % 13}" for i in range(600)]
    for prompt in prompts:
        assert gateway.chat("mock/m1", prompt).cache_status == "miss"
    statuses = []

    def thread_caller(part):
        statuses.extend(gateway.chat("mock/m1", p).cache_status for p in prompts[part::4])

    async def async_callers():
        replies = await asyncio.gather(*(gateway.achat("mock/m1", p) for p in prompts[:100]))
        statuses.extend(r.cache_status for r in replies)

    threads = [threading.Thread(target=thread_caller, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(async_callers())
    for thread in threads:
        thread.join(WAIT)
    assert statuses.count("hit") == len(statuses) == 700
    (index,) = cache.store._indexes.values()
    assert index.wait_idle(WAIT) and index.approximate and index.failures == 0
    assert len(provider.requests) == 600


def test_a_full_store_evicting_through_it_answers_as_exact_search(faiss):
    """At its bound the store evicts on every add: the index drops those rows, compacts
    them in builds, and its nearest entries stay those of an exact store's."""
    from aigw_lab.gateway.semantic_store import MemorySemanticStore, SemanticEntry

    spawn = Manual()
    vectors = clustered(3000, seed=10)
    stores = [
        MemorySemanticStore(
            600,
            index_factory=lambda dim: BackgroundIVFIndex(
                dim, exact_below=300, nlist=16, nprobe=16, batch=64, spawn=spawn
            ),
        ),
        MemorySemanticStore(600),
    ]
    for i, vector in enumerate(vectors):
        for store in stores:
            entry = SemanticEntry(
                partition="p",
                text=str(i),
                vector=vector,
                response=None,
                created=0.0,
                expires=None,
                markers=((), 0),
            )
            store.add(entry)
        if i % 250 == 0:
            spawn.run_all()
    spawn.run_all()
    (index,) = stores[0]._indexes.values()
    assert index.approximate and index.builds >= 2 and len(index) == 600
    assert index._rows.size < 2 * 600 + 64  # removed rows were compacted
    assert stores[0].stats().evictions == stores[1].stats().evictions == 2400
    for query in near(vectors[-600::7], seed=11):
        (ann,), (exact,) = (s.search("p", query, 1) for s in stores)
        assert ann[0].text == exact[0].text


def test_rows_added_during_a_build_are_indexed_before_the_swap(faiss, monkeypatch):
    """Rows added while a build trains are caught up *into its index* off the lock, so the
    swapped-in index does not start with a long exactly searched tail."""
    spawn = Manual()
    vectors = clustered(5000, seed=12)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, batch=256, spawn=spawn)
    real_train = index._train

    def train_while_callers_add(*args):
        ivf = real_train(*args)
        index.add_many(np.arange(1000, 5000), vectors[1000:5000])  # takes the lock: free
        return ivf

    monkeypatch.setattr(index, "_train", train_while_callers_add)
    index.add_many(np.arange(1000), vectors[:1000])
    build = spawn.jobs.pop(0)
    build()
    assert index.approximate and index.tail == 0 and index._ivf.ntotal == 5000
    assert index.search(vectors[4321], 1)[0][0] == 4321
