"""BackgroundIVFIndex's maintenance off the GIL (session 11): a swapped-out IVF index is
emptied through faiss calls (which release the GIL) rather than by its destructor (which
holds it), but only when nothing else holds it: a lookup that took it before the swap keeps
searching a whole index; the tail is scanned on the calling thread (einsum) with the same
answers as a matrix product."""

import numpy as np

from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex
from aigw_lab.gateway.vector_rows import VectorRows, exact_top_k
from tests.gateway._vector_helpers import DIM, Manual, clustered, near


class SpyFaiss:
    """faiss, recording each empty inverted-lists object the index makes to release an old
    index's lists."""

    def __init__(self, faiss):
        self._faiss, self.emptied = faiss, []

    def ArrayInvertedLists(self, *args):  # noqa: N802 (faiss's name)
        self.emptied.append(args)
        return self._faiss.ArrayInvertedLists(*args)

    def __getattr__(self, name):
        return getattr(self._faiss, name)


def grown(seed, hold_old):
    """An index built at 1,000 rows, then grown past ``regrow`` so a second build swaps."""
    spawn = Manual()
    vectors = clustered(2400, seed)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, nprobe=16, regrow=2, spawn=spawn)
    index.add_many(np.arange(1000), vectors[:1000])
    spawn.run_all()
    spy = index._faiss = SpyFaiss(index._faiss)
    held = index._ivf if hold_old else None  # as a lookup that took it before the swap
    index.add_many(np.arange(1000, 2400), vectors[1000:])
    spawn.run_all()
    assert index.builds == 2 and index.tail == 0
    return index, vectors, spy, held


def test_a_swapped_out_index_nobody_holds_is_emptied_through_faiss(faiss):
    index, vectors, spy, _ = grown(seed=31, hold_old=False)
    assert spy.emptied == [(16, index._ivf.code_size)]  # the first build's 16 lists
    for i in (3, 1500, 2399):
        assert index.search(near(vectors[i : i + 1], seed=i)[0], 1)[0][0] == i


def test_a_swapped_out_index_a_lookup_still_holds_is_left_whole(faiss):
    index, vectors, spy, held = grown(seed=32, hold_old=True)
    assert spy.emptied == []
    assert held.ntotal == 1000 and held is not index._ivf
    _, ids = held.search(vectors[7:8], 1)
    assert ids[0, 0] == 7


def test_the_tail_scan_equals_a_matrix_product():
    vectors = clustered(3000, seed=33)
    rows = VectorRows(DIM)
    rows.append(np.arange(3000), vectors)
    for i in range(0, 3000, 3):
        rows.kill(i)
    query = near(vectors[10:11], seed=34)[0]
    want = vectors @ query
    want[::3] = -np.inf
    top = np.argsort(-want)[:5]
    got = exact_top_k(rows.segments(0, 3000), query, 5)
    assert [i for i, _ in got] == top.tolist()
    assert np.allclose([s for _, s in got], want[top], atol=1e-6)


def test_a_build_with_few_removed_rows_indexes_them_in_place(faiss, monkeypatch):
    """No copy of the rows (whose id map was rebuilt in Python, holding the GIL): the build
    indexes the index's own rows, skips the removed ones, and what is removed while it
    trains stays removed after the swap."""
    spawn = Manual()
    vectors = clustered(3000, seed=35)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, nprobe=16, regrow=2, spawn=spawn)
    index.add_many(np.arange(1000), vectors[:1000])
    spawn.run_all()
    rows = index._rows
    index.add_many(np.arange(1000, 3000), vectors[1000:])
    for i in range(0, 3000, 40):  # 75 removed: under an eighth of the rows
        index.remove(i)
    real_train = index._train

    def train_while_callers_remove(*args):
        ivf = real_train(*args)
        for i in range(1, 3000, 40):  # removed after the snapshot, before the swap
            index.remove(i)
        return ivf

    monkeypatch.setattr(index, "_train", train_while_callers_remove)
    spawn.run_all()
    assert index.builds == 2 and index._rows is rows and index.tail == 0
    gone = set(range(0, 3000, 40)) | set(range(1, 3000, 40))
    assert len(index) == 3000 - len(gone) and index._ivf.ntotal == len(index)
    for i in range(0, 3000, 7):
        found = index.search(vectors[i], 1)[0][0]
        assert found not in gone
        if i not in gone:
            assert found == i


def test_a_build_with_many_removed_rows_compacts_them(faiss):
    spawn = Manual()
    vectors = clustered(2000, seed=36)
    index = BackgroundIVFIndex(DIM, exact_below=500, nlist=16, nprobe=16, regrow=2, spawn=spawn)
    index.add_many(np.arange(2000), vectors)
    for i in range(0, 2000, 2):
        index.remove(i)
    rows = index._rows
    spawn.run_all()  # the first build: half the rows removed
    assert index._rows is not rows and index._rows.size == len(index) == 1000
    assert index.search(vectors[7], 1)[0][0] == 7


def test_maintenance_threads_are_started_outside_the_index_lock(faiss):
    """Starting a thread waits until it runs (the GIL, a core): under the lock, every add
    waited behind that too. Jobs due after an add, a removal or another job's end are
    started once the lock is released."""
    locked, jobs = [], []

    def spawn(job):
        locked.append(index._lock.locked())
        jobs.append(job)

    def run_jobs():
        while jobs:
            jobs.pop(0)()

    vectors = clustered(1300, seed=37)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, batch=256, spawn=spawn)
    index.add_many(np.arange(1000), vectors[:1000])  # a build, from an add
    run_jobs()
    index.add_many(np.arange(1000, 1300), vectors[1000:])  # a batched add, from an add
    run_jobs()
    for i in range(700):  # removed rows outnumber live ones: a compacting build
        index.remove(i)
    run_jobs()
    assert index.builds == 2 and index.flushes == 1 and len(index) == 600
    assert locked == [False, False, False]
