"""Work per call on the calling thread, counted with the interpreter's trace and profile
hooks: bytecodes, Python calls and C calls. Shared by bench_log_caller.py and
bench_peers_work.py."""

from __future__ import annotations

import sys

#: The counts `count_work` returns, by name.
COUNTS = ("bytecodes", "py_calls", "c_calls")


def count_work(call, n: int) -> dict[str, float]:  # noqa: ANN001
    """Python bytecodes, Python calls and C calls per call on the calling thread, counted
    with the interpreter's trace and profile hooks: a measure no load changes (the cache
    misses a paced call meets scale with it, not with the hot-loop time)."""
    counts = dict.fromkeys(COUNTS, 0)

    def tracer(frame, event, arg):  # noqa: ANN001, ANN202, ARG001
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts["bytecodes"] += 1
        return tracer

    def profiler(frame, event, arg):  # noqa: ANN001, ANN202, ARG001
        if event == "call":
            counts["py_calls"] += 1
        elif event == "c_call":
            counts["c_calls"] += 1

    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        for _ in range(n):
            call()
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    return {name: value / n for name, value in counts.items()}
