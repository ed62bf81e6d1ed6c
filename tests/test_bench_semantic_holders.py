"""bench/_semantic_holders.py and _semantic_waits.py blame a slow call on a thread: the lock's
holder when a lock took most of it, the thread that ran Python meanwhile for the GIL, the
busiest thread (or other processes) for a core. Real threads and locks; no clocks compared."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _semantic_holders import HolderSampler, native_line  # noqa: E402
from _semantic_waits import LockWaits, TimedLock  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")


def test_a_lock_wait_names_the_thread_that_held_the_lock():
    per_call = LockWaits()
    lock = TimedLock(threading.Lock(), [], per_call, "index")
    held, release = threading.Event(), threading.Event()
    holder_tid = []

    def hold():
        holder_tid.append(threading.get_native_id())
        with lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    per_call.start()
    threading.Timer(0.01, release.set).start()  # lets the holder go once we wait
    with lock:
        pass
    thread.join()
    per_call.take()
    holders = per_call.take_holders()
    assert list(holders) == holder_tid  # the wait is charged to the holder, not to 0


def _call(tid, cause, parts, start=1.0, end=2.0, holders=None):
    return {
        "start": start,
        "end": end,
        "tid": tid,
        "cause": cause,
        "parts": parts,
        "lock_holders": Counter(holders or {}),
    }


def _sampler():
    """Two samples a second apart: the looker (the slow caller) and the adder ran Python,
    maintenance ran native code (no Python frame seen, as inside a long faiss call)."""
    names = {1: "looker 0", 2: "adder", 3: "maintenance"}
    sampler = HolderSampler(names)
    sampler.times = [1.0, 2.0]
    python_place = (__file__, 1, "add")  # line 1 of this file: a docstring, Python
    sampler.samples = [
        {1: (0, python_place), 2: (0, python_place), 3: (0, python_place)},
        {1: (10**8, python_place), 2: (6 * 10**8, python_place), 3: (9 * 10**8, None)},
    ]
    sampler.own = [(0, 0), (0, 0)]
    return sampler


def test_the_gil_is_blamed_on_the_thread_that_ran_python_and_a_core_on_the_busiest():
    sampler = _sampler()
    gil = _call(1, "GIL (asleep, no lock)", {"GIL (asleep, no lock)": 0.8})
    core = _call(1, "waiting for a core", {"waiting for a core": 0.8})
    starved = _call(1, "waiting for a core", {"waiting for a core": 1.9}, end=3.0)
    text = sampler.attribute([gil, core, starved], "lookups")
    # Python: the adder (0.6 s); any CPU: maintenance's native call (0.9 s, no Python frame)
    assert gil["blamed"] == "adder"
    assert core["blamed"] == "maintenance"
    # This process's others used 1.5 s while the call waited 1.9 s for a core: the machine.
    assert starved["blamed"] == "other processes"
    assert "index maintenance: 1 of 3" in text


def test_a_lock_wait_is_blamed_on_maintenance_when_it_held_the_lock():
    sampler = _sampler()
    call = _call(1, "lock: faiss", {"lock: faiss": 0.9}, holders={3: 0.9})
    text = sampler.attribute([call], "lookups")
    assert call["blamed"] == "maintenance"
    assert "index maintenance: 1 of 1" in text


def test_faiss_and_einsum_calls_count_as_native():
    import linecache

    linecache.cache["<swig>"] = (1, None, ["        return _swigfaiss.Index_search(self)\n"], "")
    linecache.cache["<py>"] = (1, None, ["            self.rows[entry_id] = row\n"], "")
    assert native_line("<swig>", 1)
    assert not native_line("<py>", 1)
    assert not native_line("<py>", None)


def test_a_wait_behind_a_holder_that_waits_names_the_last_holder():
    """The adder holds the store's lock while it waits for the index's, held by maintenance:
    a lookup waiting for the store's lock waited for maintenance."""
    per_call = LockWaits()
    store = TimedLock(threading.Lock(), [], per_call, "store")
    index = TimedLock(threading.Lock(), [], per_call, "index")
    held, release = threading.Event(), threading.Event()
    tids = {}

    def maintenance():
        tids["maintenance"] = threading.get_native_id()
        with index:
            held.set()
            release.wait()

    def adder():
        tids["adder"] = threading.get_native_id()
        with store, index:
            pass

    threads = [threading.Thread(target=maintenance)]
    threads[0].start()
    held.wait()
    threads.append(threading.Thread(target=adder))
    threads[1].start()
    while tids.get("adder") not in per_call.waiting:  # the adder now waits for the index
        threading.Event().wait(0.001)
    per_call.start()
    threading.Timer(0.01, release.set).start()
    with store:
        pass
    for thread in threads:
        thread.join()
    per_call.take()
    assert list(per_call.take_holders()) == [tids["maintenance"]]
