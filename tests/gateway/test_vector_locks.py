"""What session 9 changed so that a lookup during a fill waits less (docs/performance.md,
"The 1M semantic cache, session 9"): searches share the faiss lock (one caller's search never
waits for another's), writers to the faiss index still hold it alone; and a maintenance job
can run on a thread of lower scheduling priority than the callers (an option: measured
worse on a busy machine, so not the default)."""

import os
import sys
import threading

import numpy as np
import pytest

from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex, start_daemon_thread
from aigw_lab.gateway.vector_locks import MAINTENANCE_NICE, SearchLock
from tests.gateway._vector_helpers import DIM, Manual, clustered

WAIT = 60  # seconds: a generous bound on a loaded machine

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's"
)


class MeetingSearch:
    """Stands in for a faiss index: each search waits until two searches are inside it."""

    def __init__(self, inner):
        self._inner, self.meet = inner, threading.Barrier(2, timeout=WAIT)

    def search(self, *args):
        self.meet.wait()  # BrokenBarrierError if the other search cannot come in
        return self._inner.search(*args)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_two_lookups_search_the_faiss_index_at_the_same_time(faiss):
    spawn = Manual()
    vectors = clustered(1500, seed=21)
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=16, nprobe=16, spawn=spawn)
    index.add_many(np.arange(1500), vectors)
    spawn.run_all()
    assert index.approximate and index.tail == 0
    index._ivf = MeetingSearch(index._ivf)
    index._ivf.meet._timeout = 10  # the old exclusive lock: the second search never comes in
    answers, errors = {}, []

    def look(i):
        try:
            answers[i] = index.search(vectors[i], 1)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    lookers = [threading.Thread(target=look, args=(i,)) for i in (5, 700)]
    for thread in lookers:
        thread.start()
    for thread in lookers:
        thread.join(WAIT)
    assert not errors, f"one search waited for the other: {errors!r}"
    assert answers[5][0][0] == 5 and answers[700][0][0] == 700


def test_a_writer_waits_for_running_searches_and_holds_back_new_ones():
    lock = SearchLock()
    events = []
    first_in, writer_waiting = threading.Event(), threading.Event()
    let_first_go = threading.Event()

    def first_search():
        with lock.shared():
            events.append("search 1 in")
            first_in.set()
            assert let_first_go.wait(WAIT)
            events.append("search 1 out")

    def writer():
        with lock.exclusive():
            events.append("write")

    def second_search():
        with lock.shared():
            events.append("search 2 in")

    one = threading.Thread(target=first_search)
    one.start()
    assert first_in.wait(WAIT)
    two = threading.Thread(target=writer)
    two.start()
    for _ in range(1000):  # until the writer is queued on the lock
        if lock._writers_waiting:
            break
        threading.Event().wait(0.01)
    assert lock._writers_waiting == 1
    writer_waiting.set()
    three = threading.Thread(target=second_search)
    three.start()
    three.join(0.2)
    assert three.is_alive(), "a new search went in ahead of a waiting writer"
    let_first_go.set()
    for thread in (one, two, three):
        thread.join(WAIT)
    assert events == ["search 1 in", "search 1 out", "write", "search 2 in"]
    assert lock.readers == 0 and not lock._writer


def test_an_error_inside_leaves_the_lock_free():
    lock = SearchLock()
    with pytest.raises(RuntimeError), lock.shared():
        raise RuntimeError("in a search")
    with pytest.raises(RuntimeError), lock.exclusive():
        raise RuntimeError("in a write")
    with lock.exclusive():  # would wait forever if either side were still held
        pass
    assert lock.readers == 0


def _priority_of_a_job(**kwargs) -> tuple[int, str]:
    seen = []
    done = threading.Event()

    def job():
        tid = threading.get_native_id()
        seen.append((os.getpriority(os.PRIO_PROCESS, tid), threading.current_thread().name))
        done.set()

    start_daemon_thread(job, **kwargs)
    assert done.wait(WAIT)
    return seen[0]


@linux_only
def test_a_job_runs_at_the_callers_priority_by_default():
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    priority, name = _priority_of_a_job()
    assert (priority, name) == (caller, "aigw-semantic-index")


@linux_only
def test_nice_runs_a_job_below_the_main_thread_even_when_started_by_a_niced_job():
    """A job's thread starts the next job (`_job_done` schedules it): it inherits the lowered
    priority, which must not be lowered again (a chain of jobs went to nice 19)."""
    main = os.getpriority(os.PRIO_PROCESS, os.getpid())
    seen, done = [], threading.Event()

    def second():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        done.set()

    def first():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        start_daemon_thread(second, nice=MAINTENANCE_NICE)

    start_daemon_thread(first, nice=MAINTENANCE_NICE)
    assert done.wait(WAIT)
    assert seen == [min(19, main + 10)] * 2
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main  # caller as was


def test_a_refused_priority_change_still_runs_the_job(monkeypatch):
    def refuse(*args):
        raise PermissionError("not allowed here")

    monkeypatch.setattr(os, "setpriority", refuse, raising=False)
    monkeypatch.setattr(os, "getpriority", lambda *args: 0, raising=False)
    ran = threading.Event()
    start_daemon_thread(ran.set, nice=MAINTENANCE_NICE)
    assert ran.wait(WAIT)


class CountingLock:
    """Stands in for the index's state lock, counting how often it is taken."""

    def __init__(self, inner):
        self._inner, self.takes = inner, 0

    def __enter__(self):
        self.takes += 1
        return self._inner.__enter__()

    def __exit__(self, *exc):
        return self._inner.__exit__(*exc)


def test_a_lookup_reads_its_entries_vectors_back_with_one_take_of_the_index_lock(faiss):
    """Each found entry's vector was read back with its own take of the lock (a take that
    waits gives the GIL away, and getting it back may wait for another thread's Python)."""
    from aigw_lab.gateway.semantic_store import MemorySemanticStore, SemanticEntry
    from aigw_lab.types import ChatResponse, Usage

    store = MemorySemanticStore(100, index_factory=lambda dim: BackgroundIVFIndex(dim))
    vectors = clustered(20, seed=22)
    for i, vector in enumerate(vectors):
        store.add(
            SemanticEntry(
                partition="p",
                text=f"q{i}",
                vector=vector,
                response=ChatResponse(
                    text=f"a{i}",
                    finish_reason="stop",
                    usage=Usage(input_tokens=1, output_tokens=1),
                    provider="mock",
                    model="m1",
                ),
                created=1.0,
                expires=None,
                markers=((), 0),
            )
        )
    (index,) = store._indexes.values()
    index._lock = counting = CountingLock(index._lock)
    found = store.search("p", vectors[3], 4)
    assert len(found) == 4 and found[0][0].text == "q3"
    assert np.array_equal(found[0][0].vector, vectors[3])
    assert counting.takes == 2  # the search's view, then the four vectors together (before: 5)
    store.remove(found[1][0].entry_id)
    assert index.vectors([found[1][0].entry_id, found[0][0].entry_id])[0] is None
