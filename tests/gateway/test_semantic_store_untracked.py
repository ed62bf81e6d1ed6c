"""`MemorySemanticStore` keeps no object per entry for the garbage collector: entries come back
equal to those added (answers with tool calls, unknown usage, expiry, markers; an answer it
cannot flatten is kept as the object; an index without ``vector()`` keeps its vectors in the
store), the GC-tracked objects do not grow with the entries, `EntryTable` keeps the order an
``OrderedDict`` would through random operations, and a `BackgroundIVFIndex` swapping in new
builds while callers look up loses no entry."""

import gc
import random
import threading
from collections import OrderedDict

import numpy as np
import pytest

from aigw_lab.gateway.semantic_match import NumpyIndex
from aigw_lab.gateway.semantic_store import MemorySemanticStore, SemanticEntry
from aigw_lab.gateway.semantic_table import EntryTable
from aigw_lab.types import ChatResponse, Latency, Usage
from tests.gateway._vector_helpers import DIM, clustered

WAIT = 30  # seconds: a generous bound for a background job on a loaded machine


def answer(i, **extra):
    fields = {
        "text": f"answer {i} " * 5,
        "finish_reason": "stop",
        "usage": Usage(input_tokens=i, output_tokens=2 * i),
        "provider": "mock",
        "model": "m1",
        "cost_usd": i / 1000,
        "response_id": f"r{i}",
    }
    return ChatResponse(**(fields | extra))


def entry(i, vector, response, *, partition="p", expires=None):
    return SemanticEntry(
        partition=partition,
        text=f"question {i}?",
        vector=vector,
        response=response,
        created=1000.0 + i,
        expires=expires,
        markers=((str(i),), i % 3),
    )


def same(found, added):
    assert (found.entry_id, found.partition, found.text) == (
        added.entry_id,
        added.partition,
        added.text,
    )
    assert (found.created, found.expires, found.markers) == (
        added.created,
        added.expires,
        added.markers,
    )
    assert found.response == added.response
    assert np.array_equal(found.vector, added.vector)


class WithoutVector:
    """An index without ``vector()`` (a user's own): the store keeps the vectors itself."""

    def __init__(self, dim):
        self._inner = NumpyIndex(dim)
        self.add, self.remove, self.search = self._inner.add, self._inner.remove, self._inner.search

    def __len__(self):
        return len(self._inner)


@pytest.mark.parametrize("factory", [NumpyIndex, WithoutVector])
def test_entries_stored_untracked_return_the_same_answers(factory):
    store = MemorySemanticStore(100, index_factory=factory)
    vectors = clustered(6, seed=1)
    responses = [
        answer(0),
        answer(1, tool_calls=({"id": "c1", "function": {"name": "f", "arguments": "{}"}},)),
        answer(2, usage=Usage(known=False), cost_usd=None, simulated=True),
        answer(3, latency=Latency(total_ms=5.0), raw={"id": "x"}),  # kept as the object
        answer(4, tool_calls=({"id": "c2", "args": Usage()},)),  # not marshal: the object
        answer(5, finish_reason="tool_calls"),
    ]
    added = [
        store.add(entry(i, vectors[i], r, partition="pq"[i % 2], expires=None if i % 3 else 9e9))
        for i, r in enumerate(responses)
    ]
    assert store._local.objects.keys() == {3, 4}
    for item in added:
        ((found, similarity),) = store.search(item.partition, item.vector, 1)
        same(found, item)
        assert similarity == pytest.approx(1.0, abs=1e-5)
    store.touch(0)
    for found, item in zip(store.entries(), added[1:] + added[:1], strict=True):
        same(found, item)


def test_eviction_expiry_and_clear_keep_the_records_in_step():
    store = MemorySemanticStore(3)
    vectors = clustered(8, seed=2)
    for i in range(5):
        store.add(entry(i, vectors[i], answer(i), expires=50.0 if i == 3 else None))
    assert [e.text for e in store.entries()] == ["question 2?", "question 3?", "question 4?"]
    assert store.purge_expired(60.0) == 1 and len(store) == 2
    assert len(store._local.records) == 2 and store.stats().evictions == 2
    store.clear()
    store.add(entry(7, vectors[7], answer(7), partition="new"))
    ((found, _),) = store.search("new", vectors[7], 4)
    assert found.text == "question 7?" and store._local.names == ["new"]


def test_per_entry_state_is_not_tracked_by_the_garbage_collector():
    """Each entry's answer, usage and entry object were tracked: a full collection of a
    million-entry cache walked millions of objects. Now the tracked objects stay flat."""
    store = MemorySemanticStore(10_000)
    vectors = clustered(3000, seed=3)
    store.add(entry(0, vectors[0], answer(0)))  # the partition's index and first arrays
    gc.collect()
    before = len(gc.get_objects())
    for i in range(1, 3000):
        store.add(entry(i, vectors[i], answer(i)))
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert len(store) == 3000 and grown < 300, grown  # before: 3 per entry (9,055)


def test_entry_table_keeps_the_order_an_ordered_dict_keeps():
    rng = random.Random(4)
    table, model = EntryTable(), OrderedDict()
    next_id = 0
    for _ in range(5000):
        op = rng.random()
        if op < 0.5 or not model:
            expires = None if rng.random() < 0.5 else float(rng.randrange(100))
            table.insert(next_id, next_id % 7, float(next_id), expires)
            model[next_id] = (next_id % 7, float(next_id), expires)
            next_id += 1
        elif op < 0.7:
            victim = rng.choice(list(model))
            assert table.remove(victim) == model.pop(victim)[0]
        elif op < 0.85:
            touched = rng.choice(list(model))
            table.touch(touched)
            model.move_to_end(touched)
        else:
            oldest = next(iter(model))
            assert table.oldest() == oldest
            table.remove(oldest)
            del model[oldest]
    assert table.order() == list(model) and len(table) == len(model) > 64
    for entry_id, (code, created, expires) in model.items():
        assert table.partition_of(entry_id) == code
        assert table.times(entry_id) == (created, expires)
    dead = {i for i, (_, _, expires) in model.items() if expires is not None and expires <= 40}
    assert set(table.expired(40.0)) == dead
    table.touch(10**9)  # gone: nothing
    with pytest.raises(KeyError):
        table.remove(10**9)


def test_a_swap_during_lookups_loses_nothing(faiss):
    """Callers look up every stored vector while builds are trained and swapped in (and
    batched adds land); each lookup finds its own entry, before, during and after."""
    from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex

    vectors = clustered(6000, seed=5)
    index_args = {"exact_below": 500, "nlist": 16, "nprobe": 16, "batch": 128, "regrow": 2}
    store = MemorySemanticStore(
        10_000, index_factory=lambda dim: BackgroundIVFIndex(dim, **index_args)
    )
    for i in range(400):
        store.add(entry(i, vectors[i], answer(i)))
    stop = threading.Event()
    lost, looked = [], []

    def looker(offset):
        i = offset
        while not stop.is_set():
            target = i % len(store)  # an entry already stored
            found = store.search("p", vectors[target], 1)
            if not found or found[0][0].text != f"question {target}?":
                lost.append((target, found and found[0][0].text))
            looked.append(target)
            i += 7

    threads = [threading.Thread(target=looker, args=(o,)) for o in (0, 3)]
    for thread in threads:
        thread.start()
    for i in range(400, 6000):
        store.add(entry(i, vectors[i], answer(i)))
    (index,) = store._indexes.values()
    idle = index.wait_idle(WAIT)  # the lookers ran through every build and its swap
    stop.set()
    for thread in threads:
        thread.join(WAIT)
    assert idle and index.builds >= 3 and index.flushes >= 1 and index.failures == 0
    assert not lost and len(looked) >= 100
    for i in range(0, 6000, 13):
        ((found, similarity),) = store.search("p", vectors[i], 1)
        assert found.text == f"question {i}?" and similarity == pytest.approx(1.0, abs=1e-5)
    assert DIM == vectors.shape[1]


def test_entries_found_through_an_index_that_locks_itself_are_built_outside_the_store_lock():
    """Decoding the records and reading vectors back happen after the store's lock is
    released (callers adding meanwhile do not wait for them); an entry removed in between
    is left out."""
    store = None

    class SelfLocking(NumpyIndex):
        locks_itself = True

        def vector(self, entry_id):
            assert not store._lock.locked()  # noqa: SLF001 (the store's lock is released)
            if entry_id == 1:
                raise KeyError(entry_id)  # removed between the lock and the read
            return super().vector(entry_id)

    store = MemorySemanticStore(10, index_factory=SelfLocking)
    vectors = clustered(3, seed=6)
    added = [store.add(entry(i, vectors[i], answer(i))) for i in range(3)]
    found = store.search("p", vectors[0], 3)
    assert [e.entry_id for e, _ in found] == [0, 2] or [e.entry_id for e, _ in found] == [2, 0]
    same(next(e for e, _ in found if e.entry_id == 0), added[0])
