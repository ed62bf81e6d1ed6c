"""Where a caller's slow call waited, for `bench_semantic_index.py`'s fill: each add and lookup
is timed by stage of waiting, so a call over 50 ms is attributed to what held it.

A call's wall time splits (Linux, ``/proc/thread-self/schedstat``) into

* its thread's own CPU time (``run``);
* time runnable but waiting for a core (``runq``: CPU starvation, by our other threads or by
  the rest of the machine);
* time asleep, of which the bench's wrappers time the waits for each lock (the store's, the
  index's, the faiss lock): what is left asleep is the wait for the GIL (a thread that
  released it for a C call or a lock waits to get it back while another thread runs Python:
  up to ``sys.getswitchinterval()`` per hand-over, or several when many threads want it).

Each slow call is put in the bucket that took most of it; the print gives the counts, the
worst call, and what the index's maintenance was doing at the time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

_SLOW = 0.05


def _schedstat_reader():
    """A function returning this thread's (run, runq) nanoseconds, or None off Linux. Each
    thread keeps its own file open (read again with pread: a few µs, not an open)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as handle:
            handle.read()
    except OSError:
        return None
    local = threading.local()

    def read() -> tuple[int, int]:
        fd = getattr(local, "fd", None)
        if fd is None:
            fd = local.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        run, runq, _ = os.pread(fd, 128, 0).split()
        return int(run), int(runq)

    return read


class LockWaits:
    """Per-thread seconds spent waiting for each named lock since `start`, and for the
    threads (native ids) that held the lock when each wait began."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.waiting: dict[int, TimedLock] = {}  # native thread id -> the lock it waits for

    def start(self) -> None:
        self._local.waits = Counter()
        self._local.holders = Counter()

    def add(self, name: str, seconds: float, holder: int = 0) -> None:
        waits = getattr(self._local, "waits", None)
        if waits is not None:
            waits[name] += seconds
            self._local.holders[holder] += seconds

    def take(self) -> Counter:
        waits, self._local.waits = getattr(self._local, "waits", None) or Counter(), None
        return waits

    def take_holders(self) -> Counter:
        """Seconds waited by the holder at each wait's start (0: none seen), since `start`."""
        holders, self._local.holders = getattr(self._local, "holders", None) or Counter(), None
        return holders


class TimedLock:
    """Stands in for one lock (the same underlying lock) and keeps how long each caller
    thread waited to take it: every take into ``waits`` and, per call, into ``per_call``
    under ``name``, with the thread that held it (or was taking it) when the wait began,
    or, if that thread was itself waiting for a timed lock, that lock's holder (the adder
    holds the store's lock while it waits for the index's, held by maintenance);
    ``blame``: the lock whose holder to name instead (a `SearchLock`'s shared side waits
    only for its exclusive side)."""

    def __init__(
        self,
        lock: threading.Lock,
        waits: list[float],
        per_call: LockWaits,
        name: str,
        blame: TimedLock | None = None,
    ) -> None:
        self._inner, self._waits, self._per_call, self._name = lock, waits, per_call, name
        self._blame = blame or self
        self.holder = self.pending = 0  # native thread ids (0: none)

    def acquire(self, *args, **kwargs) -> bool:
        return self._inner.acquire(*args, **kwargs)

    def release(self) -> None:
        self._inner.release()

    def __enter__(self) -> bool:
        blamed = self._blame.holder or self._blame.pending
        waiting = self._per_call.waiting
        for _ in range(3):  # a holder that itself waits for a lock: blame that one's holder
            lock = waiting.get(blamed)
            if lock is None or not (lock._blame.holder or lock._blame.pending):
                break
            blamed = lock._blame.holder or lock._blame.pending
        tid = threading.get_native_id()
        self.pending = tid
        waiting[tid] = self
        start = time.perf_counter()
        self._inner.__enter__()
        del waiting[tid]
        self.pending, self.holder = 0, tid
        if threading.current_thread().name != "aigw-semantic-index":  # a caller, not a job
            waited = time.perf_counter() - start
            self._waits.append(waited)
            self._per_call.add(self._name, waited, blamed)
        return True

    def __exit__(self, *exc: object) -> None:
        self.holder = 0
        self._inner.__exit__(*exc)


class TimedSearchLock:
    """`TimedLock` for an index's `SearchLock` (or `OneLock`): both sides timed."""

    def __init__(self, lock, waits: list[float], per_call: LockWaits, name: str) -> None:
        self._exclusive = TimedLock(lock.exclusive(), waits, per_call, name)
        self._shared = TimedLock(lock.shared(), waits, per_call, name, blame=self._exclusive)

    def shared(self) -> TimedLock:
        return self._shared

    def exclusive(self) -> TimedLock:
        return self._exclusive


class OneLock:
    """The faiss lock before session 9 (the baseline of ``--previous-locks``): one plain lock
    that searches too hold alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def shared(self) -> threading.Lock:
        return self._lock

    def exclusive(self) -> threading.Lock:
        return self._lock


@dataclass
class CallProbe:
    """Times calls by where they waited (see the module doc); keeps the slow ones."""

    locks: LockWaits = field(default_factory=LockWaits)
    slow: list[dict] = field(default_factory=list)
    _read: object = field(default_factory=_schedstat_reader)

    def call(self, fn, state=lambda: "") -> tuple[float, float]:
        """Run ``fn()``; returns (start, end) wall; a call over 50 ms is kept with its split."""
        read = self._read
        self.locks.start()
        before = state()
        sched = read() if read else (0, 0)
        cpu, start = time.thread_time(), time.perf_counter()
        fn()
        end = time.perf_counter()
        cpu = time.thread_time() - cpu
        after = read() if read else (0, 0)
        locks = self.locks.take()
        holders = self.locks.take_holders()
        if end - start > _SLOW:
            wall = end - start
            run = (after[0] - sched[0]) / 1e9 if read else cpu
            runq = (after[1] - sched[1]) / 1e9 if read else float("nan")
            held = sum(locks.values())
            parts = {"own CPU": run, "waiting for a core": runq}
            parts.update({f"lock: {name}": s for name, s in locks.items()})
            # Asleep, not on a lock: the GIL (what else sleeps in this code path).
            parts["GIL (asleep, no lock)"] = max(0.0, wall - run - runq - held)
            self.slow.append(
                {
                    "start": start,
                    "end": end,
                    "wall": wall,
                    "parts": parts,
                    "cause": max(parts, key=parts.get),
                    "maintenance": before or state(),
                    "tid": threading.get_native_id(),
                    "lock_holders": holders,
                }
            )
        return start, end

    def summary(self, name: str) -> str:
        """Counts of slow calls by cause, the causes' total seconds, maintenance at the time."""
        if not self.slow:
            return f"{name} > 50 ms: none"
        causes = Counter(s["cause"] for s in self.slow)
        total = Counter()
        for s in self.slow:
            total.update(s["parts"])
        during = Counter(s["maintenance"] or "none" for s in self.slow)
        worst = max(self.slow, key=lambda s: s["wall"])
        split = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in worst["parts"].items() if v > 5e-4)
        walls = np.array([s["wall"] for s in self.slow])
        return (
            f"{name} > 50 ms: {len(self.slow)}, by what took most of each: "
            + ", ".join(f"{k} {v}" for k, v in causes.most_common())
            + "\n      summed over them (s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in total.most_common())
            + f"\n      maintenance at the time: {dict(during)}; wall p50 "
            f"{np.median(walls) * 1e3:.0f} ms; worst {worst['wall'] * 1e3:.0f} ms ({split} ms)"
        )


def maintenance_state(index_of):
    """A `CallProbe` state function: what the index's maintenance is doing ("build",
    "flush", both or "")."""

    def state() -> str:
        index = index_of()
        if index is None:
            return ""
        jobs = [n for n in ("build", "flush") if getattr(index, f"_{n}ing", False)]
        return "+".join(jobs)

    return state


def merged(probes: list[CallProbe]) -> CallProbe:
    """One `CallProbe` holding the slow calls of ``probes`` (for one summary)."""
    out = CallProbe()
    for probe in probes:
        out.slow += probe.slow
    return out


class ThreadCPU:
    """CPU seconds by thread of this process over a fill (Linux ``/proc/self/task``), sampled
    every ``every`` seconds so that threads which end (maintenance jobs) are counted up to
    their last sample. ``names``: native thread id -> label; other threads are the native
    libraries' workers (OpenMP, OpenBLAS)."""

    def __init__(self, every: float = 0.25) -> None:
        self.names: dict[int, str] = {}
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._every = every
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def name(self, label: str) -> None:
        """Label the calling thread."""
        self.names[threading.get_native_id()] = label

    def sample(self) -> None:
        for thread in threading.enumerate():  # maintenance jobs, by their thread's name
            if thread.native_id is not None and thread.native_id not in self.names:
                label = "maintenance" if thread.name == "aigw-semantic-index" else "other"
                self.names[thread.native_id] = label
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/self/task/{tid}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            self._first.setdefault(int(tid), ticks)
            self._last[int(tid)] = ticks

    def run(self, stop: threading.Event) -> None:
        self.name("sampler")
        while not stop.wait(self._every):
            self.sample()
        self.sample()

    def summary(self) -> str:
        by = Counter()
        for tid, ticks in self._last.items():
            by[self.names.get(tid, "native workers")] += (ticks - self._first[tid]) / self._tick
        return ", ".join(f"{k} {v:.1f}" for k, v in by.most_common())
