"""Who ran while a slow call waited, for `bench_semantic_index.py`'s fill: a sampler thread
records, every ``every`` seconds, each thread's CPU time (``/proc/self/task/*/schedstat``,
nanoseconds) and where each Python thread is (``sys._current_frames()``); each slow call
is then charged to the threads that ran during it, by thread and by function.

Why: `_semantic_waits.CallProbe` splits a slow call into its own CPU, waiting for a core and
time asleep (the GIL or a lock), but not *whose* work it waited for. Only one thread runs
Python at a time, so while a caller sleeps for the GIL the thread that holds it is one that
ran Python meanwhile: the adder (the bench's own caller, flat out), the other looker, the
index's maintenance jobs, or the bench's own sampling threads. Threads inside a native call
that releases the GIL (faiss, numpy's large kernels, a lock or a sleep) ran too but held no
GIL: they compete for a core, not for the GIL. A thread's sample is counted as native when
its innermost Python line is one of those calls (`native_line`), otherwise as Python.

Each sampling interval's CPU is charged to the thread's place at the interval's end: the
sampler itself needs the GIL to take a sample, so a thread that held it through the
interval is seen where it let it go.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter

#: Innermost lines that call into C code which releases the GIL (or sleep, or wait): faiss's
#: SWIG proxies (``_swigfaiss.X(...)``, built to release the GIL) and wrappers (``*_c(``);
#: the index's train/search/add_core/remove_ids; numpy's einsum (``c_einsum``) and
#: concatenate over large arrays; locks, conditions, sleeps, thread joins.
_NATIVE = re.compile(
    r"(_swigfaiss\.|c_einsum\(|_c\(|\.train\(|\.search\(|add_core\(|remove_ids\(|replace_invlists\(|"
    r"set_direct_map_type\(|np\.einsum\(|np\.concatenate\(|\.acquire\(|\.wait\(|"
    r"sleep\(|waiter\.|_assign\(|__enter__\(\)|os\.pread\(|\.read\(\)|\.join\()"
)


def native_line(filename: str, lineno: int) -> bool:
    """Whether a thread whose innermost Python line is this one is inside a GIL-releasing call."""
    return lineno is not None and bool(_NATIVE.search(linecache.getline(filename, lineno)))


class HolderSampler:
    """Per-thread CPU and innermost frame every ``every`` seconds (Linux; off Linux it
    records nothing and `attribute` says so). ``names``: native thread id -> role label,
    shared with `_semantic_waits.ThreadCPU`."""

    def __init__(self, names: dict[int, str], every: float = 0.002) -> None:
        self.names = names
        self.every = every
        self.times: list[float] = []
        # per sample: {native tid: (run ns, (filename, lineno, function) or None)}; the
        # sampler's own (run, runq) ns
        self.own: list[tuple[int, int]] = []
        self.tid = 0
        self.samples: list[dict[int, tuple[int, tuple | None]]] = []
        self._fds: dict[int, int] = {}

    def _tids(self) -> list[int]:
        try:
            return [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return []

    def _run_ns(self, tid: int) -> tuple[int, int] | None:
        fd = self._fds.get(tid)
        try:
            if fd is None:
                fd = self._fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
            run, runq = os.pread(fd, 128, 0).split()[:2]
            return int(run), int(runq)
        except (OSError, ValueError, IndexError):  # the thread ended
            if fd is not None:
                os.close(fd)
                self._fds.pop(tid, None)
            return None

    def sample(self) -> None:
        frames = sys._current_frames()
        native_of = {}
        for thread in threading.enumerate():
            native_of[thread.ident] = thread.native_id
            if thread.native_id is not None and thread.native_id not in self.names:
                job = thread.name == "aigw-semantic-index"  # a maintenance job's thread
                self.names[thread.native_id] = "maintenance" if job else "other"
        where: dict[int, tuple] = {}
        for ident, frame in frames.items():
            tid = native_of.get(ident)
            if tid is not None:
                code = frame.f_code
                where[tid] = (code.co_filename, frame.f_lineno, code.co_qualname)
        del frames
        row = {}
        own = (0, 0)
        for tid in self._tids():
            ns = self._run_ns(tid)
            if ns is not None:
                row[tid] = (ns[0], where.get(tid))
                if tid == self.tid:
                    own = ns
        self.times.append(time.perf_counter())
        self.samples.append(row)
        self.own.append(own)

    def run(self, stop: threading.Event) -> None:
        self.tid = threading.get_native_id()
        self.names[self.tid] = "sampler"
        while not stop.wait(self.every):
            self.sample()
        self.sample()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def during(self, start: float, end: float, skip: int) -> Counter:
        """CPU seconds each (role, kind, place) used in [start, end], ``skip`` (the caller's
        own thread) left out; kind "python" or "native"."""
        out: Counter = Counter()
        times = self.times
        lo = max(0, bisect_right(times, start) - 1)
        hi = min(len(times) - 1, bisect_left(times, end))
        for k in range(lo, hi):
            t0, t1 = times[k], times[k + 1]
            overlap = min(t1, end) - max(t0, start)
            if overlap <= 0 or t1 <= t0:
                continue
            share = overlap / (t1 - t0)
            before, after = self.samples[k], self.samples[k + 1]
            for tid, (run, place) in after.items():
                if tid == skip or tid not in before:
                    continue
                cpu = (run - before[tid][0]) / 1e9 * share
                if cpu <= 0:
                    continue
                role = self.names.get(tid, "native workers" if place is None else "other")
                if place is None:
                    out[(role, "native", "(no Python frame: OpenMP/OpenBLAS)")] += cpu
                    continue
                filename, lineno, function = place
                kind = "native" if native_line(filename, lineno) else "python"
                label = f"{function} ({os.path.basename(filename)}:{lineno})"
                out[(role, kind, label)] += cpu
        return out

    def gil_waits(self, over: float = 0.005) -> str:
        """The sampler's own waits for the GIL (an interval's length beyond its period, less
        its own CPU and its time waiting for a core), those over ``over`` seconds charged to
        the thread that ran the most Python meanwhile: who holds the GIL for long, whatever
        the lookups did."""
        waits: list[tuple[float, int]] = []
        for k in range(1, len(self.times)):
            (run0, q0), (run1, q1) = self.own[k - 1], self.own[k]
            gap = self.times[k] - self.times[k - 1] - self.every
            waits.append((gap - (run1 - run0) / 1e9 - (q1 - q0) / 1e9, k))
        long = [(w, k) for w, k in waits if w > over]
        by_role: Counter = Counter()
        summed: Counter = Counter()
        worst: dict[str, float] = {}
        places: Counter = Counter()
        for wait, k in long:
            used = self.during(self.times[k - 1], self.times[k], self.tid)
            python = Counter()
            for (role, kind, place), cpu in used.items():
                if kind == "python":
                    python[role] += cpu
                    places[(role, place)] += wait * 0 + cpu
            role = python.most_common(1)[0][0] if python else "nobody (a core?)"
            by_role[role] += 1
            summed[role] += wait
            worst[role] = max(worst.get(role, 0.0), wait)
        lines = [
            f"sampler's GIL waits over {over * 1e3:.0f} ms: {len(long)} of {len(waits):,} "
            f"samples; by the thread that ran the most Python meanwhile (count, summed s, "
            f"longest ms): "
            + ", ".join(
                f"{r} {n} / {summed[r]:.2f} / {worst[r] * 1e3:.0f}"
                for r, n in by_role.most_common()
            )
        ]
        for (role, place), cpu in places.most_common(8):
            lines.append(f"        {cpu:7.2f}  {role}: {place}")
        return "\n".join(lines)

    def attribute(self, slow: list[dict], name: str) -> str:
        """Blame each slow call (`CallProbe.slow` records, with ``tid`` and
        ``lock_holders``) on one thread by what took most of it: a lock, on the thread that
        held it when the wait began; the GIL, on the thread that ran the most Python
        meanwhile; a core, on the thread of this process that used the most CPU meanwhile,
        or on other processes when this process's other threads used less CPU than the
        call waited for a core; its own CPU, on itself. Counts by thread and cause, and
        the functions that ran Python meanwhile."""
        if not self.times:
            return f"{name}: no samples (not Linux?)"
        blamed: Counter = Counter()
        places: Counter = Counter()
        python_s: Counter = Counter()
        native_s: Counter = Counter()
        for call in slow:
            used = self.during(call["start"], call["end"], call.get("tid", -1))
            python, anything = Counter(), Counter()
            for (role, kind, place), cpu in used.items():
                anything[role] += cpu
                if kind == "python":
                    python[role] += cpu
                    places[(role, place)] += cpu
                    python_s[role] += cpu
                else:
                    native_s[role] += cpu
            cause = call["cause"]
            if cause.startswith("lock: "):
                holders = call.get("lock_holders") or Counter()
                tid = holders.most_common(1)[0][0] if holders else 0
                who = self.names.get(tid, "unknown") if tid else "unknown"
            elif cause.startswith("GIL"):
                who = python.most_common(1)[0][0] if python else "nobody seen"
            elif cause == "waiting for a core":
                ours = sum(anything.values())
                if ours < call["parts"]["waiting for a core"]:
                    who = "other processes"
                else:
                    who = anything.most_common(1)[0][0]
            else:
                who = "itself"
            call["blamed"] = who
            blamed[(who, cause)] += 1
        by_who: Counter = Counter()
        for (who, _), count in blamed.items():
            by_who[who] += count
        lines = [
            f"{name} > 50 ms blamed on: "
            + ", ".join(f"{who} {count}" for who, count in by_who.most_common())
            + f"; index maintenance: {by_who['maintenance']} of {len(slow)}"
        ]
        for (who, cause), count in blamed.most_common():
            lines.append(f"        {who:16s} {cause:28s} {count}")
        lines.append(
            "      Python CPU s of others during them: "
            + ", ".join(f"{k} {v:.2f}" for k, v in python_s.most_common())
        )
        lines.append(
            "      native CPU s of others during them (no GIL held): "
            + ", ".join(f"{k} {v:.2f}" for k, v in native_s.most_common())
        )
        lines.append("      top Python places meanwhile (s):")
        for (role, place), cpu in places.most_common(10):
            lines.append(f"        {cpu:7.2f}  {role}: {place}")
        return "\n".join(lines)
