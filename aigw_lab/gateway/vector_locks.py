"""Locks and threads for `BackgroundIVFIndex`'s maintenance: a lock that many searches hold at
once (`SearchLock`) and the daemon thread a maintenance job runs on (`start_daemon_thread`),
optionally at a lower scheduling priority than the callers.

Why (docs/performance.md, "The 1M semantic cache, session 9"): during a fill, a lookup over
50 ms had mostly waited for a core, for another lookup's search (one caller holding the
faiss lock while it waited for a core itself), or for the GIL. Searches now share the faiss
lock. A lower priority for maintenance was measured too and is not the default: on a busy
machine the niced build fell far behind, and lookups meanwhile searched the growing tail of
unindexed rows exactly (three times the slow lookups).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["MAINTENANCE_NICE", "SearchLock", "start_daemon_thread"]

_LOG = logging.getLogger("aigw_lab.semantic_index")

#: A suggested ``nice`` for `start_daemon_thread` (not the default; see the module doc): 10
#: gives a job about a tenth of a caller's share of a contended core.
MAINTENANCE_NICE = 10


def start_daemon_thread(job: Callable[[], None], *, nice: int = 0) -> None:
    """Run ``job`` on a new daemon thread (the default ``spawn`` of `BackgroundIVFIndex`).
    ``nice`` > 0 runs it that much below the process's main thread in priority (Linux:
    per-thread priorities; elsewhere, or where the OS refuses, at the callers' priority), so
    callers get a contended core first, e.g. ``spawn=partial(start_daemon_thread, nice=10)``
    on a machine with a core to spare. The cost where every core is busy: the job, and so
    the index's catching up, gets a fraction of a caller's share. The thread ends with the
    job, so nothing has to be restored (raising a thread's priority back needs a privilege)."""

    def run() -> None:
        if nice:
            lower_this_thread(nice)
        job()

    threading.Thread(target=run, name="aigw-semantic-index", daemon=True).start()


def lower_this_thread(nice: int) -> bool:
    """Set the calling thread's nice value to the main thread's plus ``nice`` (Linux:
    ``setpriority`` on its thread id; relative to the main thread, not to this thread, which
    may have inherited a lowered priority from the job that started it); False where that is
    not possible (then the thread keeps its priority)."""
    setpriority, getpriority = getattr(os, "setpriority", None), getattr(os, "getpriority", None)
    if setpriority is None or getpriority is None or not hasattr(threading, "get_native_id"):
        return False
    try:  # on Linux the main thread's id is the process id
        target = min(19, getpriority(os.PRIO_PROCESS, os.getpid()) + nice)
        tid = threading.get_native_id()
        if getpriority(os.PRIO_PROCESS, tid) != target:
            setpriority(os.PRIO_PROCESS, tid, target)
    except OSError:  # a sandbox refusing it, or raising back needing a privilege
        _LOG.debug("semantic index: could not set the maintenance thread's priority")
        return False
    return True


class SearchLock:
    """A lock that searches share and writers hold alone: faiss may search an IVF index from
    several threads at once, but not while vectors are appended to or removed from it.

    ``with lock.shared():`` for a search, ``with lock.exclusive():`` for a write. A writer
    that is waiting holds back new searches (writer first), so a batched add or a removal
    waits only for the searches already running."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._shared = _Shared(self)
        self._exclusive = _Exclusive(self)

    def shared(self) -> _Shared:
        return self._shared

    def exclusive(self) -> _Exclusive:
        return self._exclusive

    @property
    def readers(self) -> int:
        """Searches holding it now (for tests and benchmarks)."""
        return self._readers


class _Shared:
    __slots__ = ("_lock",)

    def __init__(self, lock: SearchLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock._cond:
            while lock._writer or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._cond:
            lock._readers -= 1
            if not lock._readers and lock._writers_waiting:
                lock._cond.notify_all()


class _Exclusive:
    __slots__ = ("_lock",)

    def __init__(self, lock: SearchLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock._cond:
            lock._writers_waiting += 1
            try:
                while lock._writer or lock._readers:
                    lock._cond.wait()
            finally:
                lock._writers_waiting -= 1
            lock._writer = True

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._cond:
            lock._writer = False
            lock._cond.notify_all()
