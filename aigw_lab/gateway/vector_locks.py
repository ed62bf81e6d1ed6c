"""Locks and threads for `BackgroundIVFIndex`'s maintenance: a lock that many searches hold at
once (`SearchLock`) and the daemon thread a maintenance job runs on, at a lower scheduling
priority than the callers (`start_daemon_thread`).

Why (docs/performance.md, "The 1M semantic cache, session 9"): during a fill, a lookup over
50 ms had mostly waited for a core, for another lookup's search (one caller holding the
faiss lock while it waited for a core itself), or for the GIL; the maintenance job competed
with the callers for the box's cores at the same priority.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["MAINTENANCE_NICE", "SearchLock", "start_daemon_thread"]

_LOG = logging.getLogger("aigw_lab.semantic_index")

#: The nice value added to a maintenance job's thread (Linux: per thread). 10 gives it about
#: a tenth of a caller's share of a contended core; an idle core it still uses in full.
MAINTENANCE_NICE = 10


def start_daemon_thread(job: Callable[[], None], *, nice: int = MAINTENANCE_NICE) -> None:
    """Run ``job`` on a new daemon thread (the default ``spawn`` of `BackgroundIVFIndex`),
    its priority lowered by ``nice`` (where the OS has per-thread priorities: Linux) so that
    callers get a contended core first. The thread ends with the job, so nothing has to be
    restored (raising a thread's priority back needs a privilege). ``nice=0``: as callers."""

    def run() -> None:
        if nice:
            lower_this_thread(nice)
        job()

    threading.Thread(target=run, name="aigw-semantic-index", daemon=True).start()


def lower_this_thread(nice: int) -> bool:
    """Add ``nice`` to the calling thread's nice value (Linux: ``setpriority`` on its thread
    id); False where that is not possible (then the thread keeps its priority)."""
    setpriority, getpriority = getattr(os, "setpriority", None), getattr(os, "getpriority", None)
    if setpriority is None or getpriority is None or not hasattr(threading, "get_native_id"):
        return False
    tid = threading.get_native_id()
    try:
        setpriority(os.PRIO_PROCESS, tid, min(19, getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # a sandbox refusing it: run at the same priority, say so once per job
        _LOG.debug("semantic index: could not lower the maintenance thread's priority")
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
