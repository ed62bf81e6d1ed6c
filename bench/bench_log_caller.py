"""Where does the call log's cost on the CALLING thread go, paced at 100 and at 2,000 calls/s?

    python bench/bench_log_caller.py [--quick] [--rates 100,2000] [--rounds R] [--seconds S]

Issue 13 §1. bench/bench_log_rates.py measures the log's whole cost (all threads); this one
splits the calling thread's share by phase, in one process per side, so the split is read
beside its own baseline:

* sides, interleaved round by round in a new order each round: the gateway with the log off;
  the gateway with the log on (spool on, as shipped); the same with ``durability = "none"``
  (no spool frames); and ``--phases`` adds the log-on side again with each phase wrapped in
  a thread-CPU clock (the wrappers cost ~0.3 µs each; their sum is printed beside the total);
* phases (the log-on side with ``--phases``): the spool's start frame (`Recorder.spool_start`),
  building the row (`success_record`, `request.to_json` inside it), `sanitize_record`, and
  `CallLog.append` (its spool end frame, then the writer's queue), and the garbage
  collector's passes on the calling thread;
* ``--baseline TREE``: the log-on and durability-none sides once more, with aigw_lab
  imported from another checkout (the code before a change), so before and after are
  measured in one run;
* per call, once at the end: Python bytecodes, Python calls and C calls on the calling
  thread (trace and profile hooks), a count no load changes (``--rates-off``: only that);
* per call: the calling thread's CPU (``time.thread_time``) and the whole process's
  (``time.process_time`` since the side's previous block, so the writer's inserts are
  charged to their side whenever they run), with the wall time and the load.

"added" is log-on minus log-off per round (median, range over rounds). CPU beside wall,
the load average with every table: on the shared 2-core box the absolute figures move with
load, the differences inside one run are what to read. ``--quick``: about 2 minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from _paced_sides import PacedSides, paced
from _work_counts import count_work

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIDES = {
    "off": "gateway, log off",
    "on": "gateway + log (spool on)",
    "nospool": "gateway + log, durability none",
    "phases": "gateway + log, phases clocked",
    "base": "BASELINE tree: gateway + log",
    "basenospool": "BASELINE tree: log, durability none",
}
PHASES = (
    "spool_start",
    "success_record",
    "to_json",
    "sanitize",
    "log.append",
    "spool.write_end",
    "gc",
)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _clocked(spent: dict[str, int], name: str, func):  # noqa: ANN001, ANN202
    """``func`` with its calling thread's CPU added to ``spent[name]`` (nanoseconds)."""
    clock = time.thread_time_ns

    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        t0 = clock()
        try:
            return func(*args, **kwargs)
        finally:
            spent[name] += clock() - t0

    return wrapper


def install_gc_clock(spent: dict[str, int]) -> None:
    """Add the garbage collector's passes on this (the calling) thread to ``spent["gc"]``:
    rows are GC-tracked tuples that stay in the writer's buffer for up to a batch's age."""
    caller = threading.get_ident()
    started: list[int] = []

    def gc_clock(phase: str, info: dict) -> None:  # noqa: ARG001
        if threading.get_ident() != caller:
            return
        if phase == "start":
            started.append(time.thread_time_ns())
        elif started:
            spent["gc"] += time.thread_time_ns() - started.pop()

    gc.callbacks.append(gc_clock)


def install_phase_clocks(gateway, log) -> dict[str, int]:  # noqa: ANN001
    """Wrap each phase of the calling thread's log work in a thread-CPU clock. Bench-only:
    patches module globals and instance attributes of this process."""
    from aigw_lab.gateway import recorder as recorder_module
    from aigw_lab.types import ChatRequest

    spent = dict.fromkeys(PHASES, 0)
    recorder = gateway._recorder  # noqa: SLF001 - bench-only
    recorder.spool_start = _clocked(spent, "spool_start", recorder.spool_start)
    recorder_module.success_record = _clocked(
        spent, "success_record", recorder_module.success_record
    )
    recorder_module.sanitize_record = _clocked(spent, "sanitize", recorder_module.sanitize_record)
    ChatRequest.to_json = _clocked(spent, "to_json", ChatRequest.to_json)
    log.append = _clocked(spent, "log.append", log.append)
    spool = log.spool
    if spool is not None:
        spool.write_end = _clocked(spent, "spool.write_end", spool.write_end)
    return spent


def worker(side: str, folder: str) -> int:
    """One side, driven over stdin/stdout: ``run N RATE`` -> one JSON line per block."""
    from bench_gateway_overhead import MESSAGES, MODEL, make_gateway

    from aigw_lab.store import CallLog

    log = None
    if side != "off":
        durability = "none" if side in ("nospool", "basenospool") else None
        kwargs = {} if durability is None else {"durability": durability}
        log = CallLog(Path(folder) / f"{side}.duckdb", **kwargs)
    # The same sides, from the baseline tree's code (see `run`).
    side = {"base": "on", "basenospool": "nospool"}.get(side, side)
    gateway = make_gateway(log)
    spent = install_phase_clocks(gateway, log) if side == "phases" else {"gc": 0}
    install_gc_clock(spent)

    def call() -> str:
        return gateway.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16).text

    assert call() == "Paris."
    made = 1
    cpu_mark = time.process_time()
    for line in sys.stdin:
        words = line.split()
        if words[0] == "run":
            n, rate = int(words[1]), float(words[2])
            for name in spent:
                spent[name] = 0
            usage0 = resource.getrusage(resource.RUSAGE_THREAD)
            thread0 = time.thread_time()
            start = paced(call, n, rate)
            cpu1, thread1 = time.process_time(), time.thread_time()
            # The whole process since the previous report, not only during this block: the
            # writer's inserts land whenever a batch is due, often while other sides run.
            usage1 = resource.getrusage(resource.RUSAGE_THREAD)
            report = {
                "gc": spent["gc"] / 1e9,
                "cpu": cpu1 - cpu_mark,
                "caller_cpu": thread1 - thread0,
                # The calling thread's page faults and context switches (waits: a lock or
                # the GIL; involuntary: preempted), to tell cold caches from waiting.
                "minflt": usage1.ru_minflt - usage0.ru_minflt,
                "nvcsw": usage1.ru_nvcsw - usage0.ru_nvcsw,
                "nivcsw": usage1.ru_nivcsw - usage0.ru_nivcsw,
                "wall": time.perf_counter() - start,
                "calls": n,
                "phases": {k: v / 1e9 for k, v in spent.items()},
            }
            cpu_mark = cpu1
            made += n
        elif words[0] == "count":
            report = count_work(call, int(words[1]))
            made += int(words[1])
        else:
            rows = None
            if log is not None:
                rows = int(log.query("SELECT count(*) AS n FROM calls")["n"][0])
            report = {"made": made, "rows": rows}
        print(json.dumps(report), flush=True)
        if words[0] == "end":
            break
    gateway.close()
    if log is not None:
        log.close()
    return 0


def run(
    rates: list[float],
    rounds: int,
    seconds: float,
    sides: list[str],
    baseline: str | None,
    *,
    count: bool = True,
) -> None:
    folder = tempfile.mkdtemp(prefix="bench-log-caller-")

    def env(side: str) -> dict[str, str] | None:
        if side not in ("base", "basenospool"):
            return None
        # The baseline side imports aigw_lab from the other tree (this script's helpers
        # from this one): the log's code before and after, in one run.
        return {**os.environ, "PYTHONPATH": baseline or ""}

    procs = PacedSides(__file__, sides, folder, env=env)
    ask = procs.ask
    for rate in rates:
        block_s = seconds if rate <= 200 else seconds / 3
        n = max(50, int(rate * block_s))
        print(
            f"### {rate:,.0f} calls/s: {rounds} counted rounds (+1 warm-up) x {n:,} calls per "
            f"side; load average at the start: {load()}"
        )
        results = procs.rounds(f"run {n} {rate}", rounds)
        print(
            f"| {'side':<34} | {'caller CPU µs/call':>20} | {'process CPU µs':>14} | "
            f"{'wall µs':>8} | {'GC µs':>6} | {'faults':>6} | {'waits':>6} | {'preempt':>7} |"
        )
        print(
            f"|{'-' * 36}|{'-' * 22}|{'-' * 16}|{'-' * 10}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|"
        )

        def per_call(side: str, key: str, results: dict[str, list[dict]] = results) -> list[float]:
            return [r[key] / r["calls"] * 1e6 for r in results[side]]

        for side in sides:
            caller = per_call(side, "caller_cpu")
            med = statistics.median(caller)
            print(
                f"| {SIDES[side]:<34} | {f'{med:7.1f} [{min(caller):.0f}-{max(caller):.0f}]':>20} "
                f"| {statistics.median(per_call(side, 'cpu')):>14.1f} | "
                f"{statistics.median(per_call(side, 'wall')):>8.0f} | "
                f"{statistics.median(per_call(side, 'gc')):>6.1f} | "
                f"{statistics.median(per_call(side, 'minflt')) / 1e6:>6.2f} | "
                f"{statistics.median(per_call(side, 'nvcsw')) / 1e6:>6.2f} | "
                f"{statistics.median(per_call(side, 'nivcsw')) / 1e6:>7.2f} |"
            )
        for side in sides:
            if side == "off":
                continue
            added = [
                a - b
                for a, b in zip(
                    per_call(side, "caller_cpu"), per_call("off", "caller_cpu"), strict=True
                )
            ]
            added_all = [
                a - b for a, b in zip(per_call(side, "cpu"), per_call("off", "cpu"), strict=True)
            ]
            print(
                f"added over log off, {SIDES[side]}: calling thread "
                f"{statistics.median(added):+.1f} µs/call [{min(added):+.0f} to {max(added):+.0f}]"
                f", whole process {statistics.median(added_all):+.1f} µs/call "
                f"[{min(added_all):+.0f} to {max(added_all):+.0f}]"
            )
        if "phases" in sides:
            print("phases of the log-on side (calling thread CPU, µs/call, median [range]):")
            for name in PHASES:
                values = [r["phases"][name] / r["calls"] * 1e6 for r in results["phases"]]
                print(
                    f"  {name:<16} {statistics.median(values):7.1f} "
                    f"[{min(values):.1f}-{max(values):.1f}]"
                )
        print(f"load average at the end: {load()}\n")
    if count:
        print("### Work on the calling thread per call (trace and profile hooks, 200 calls)")
        print(f"| {'side':<34} | {'bytecodes':>9} | {'Python calls':>12} | {'C calls':>8} |")
        print(f"|{'-' * 36}|{'-' * 11}|{'-' * 14}|{'-' * 10}|")
        counted = {side: ask(side, "count 200") for side in sides if side != "phases"}
        for side, c in counted.items():
            print(
                f"| {SIDES[side]:<34} | {c['bytecodes']:>9.0f} | {c['py_calls']:>12.1f} | "
                f"{c['c_calls']:>8.1f} |"
            )
        off = counted["off"]
        for side, c in counted.items():
            if side != "off":
                print(
                    f"added over log off, {SIDES[side]}: {c['bytecodes'] - off['bytecodes']:+.0f} "
                    f"bytecodes, {c['py_calls'] - off['py_calls']:+.1f} Python calls, "
                    f"{c['c_calls'] - off['c_calls']:+.1f} C calls"
                )
        print()
    procs.end(SIDES)
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes")
    parser.add_argument("--rates", default="100,2000", help="calls/s, comma-separated")
    parser.add_argument("--rounds", type=int, default=6, help="counted rounds per rate")
    parser.add_argument("--seconds", type=float, default=5.0, help="per block at 100 calls/s")
    parser.add_argument("--no-phases", action="store_true", help="leave the clocked side out")
    parser.add_argument(
        "--rates-off", action="store_true", help="only count the work per call (no pacing)"
    )
    parser.add_argument(
        "--baseline",
        metavar="TREE",
        help="also run the log-on side with aigw_lab imported from TREE (a checkout of the "
        "code before, e.g. `git worktree add /tmp/base <commit>`), interleaved",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.folder)
    if args.quick:
        args.rounds, args.seconds = 3, 3.0
    sides = ["off", "on", "nospool"] + ([] if args.no_phases else ["phases"])
    if args.baseline:
        sides += ["base", "basenospool"]
    print(
        f"bench_log_caller: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.machine()} | "
        f"{os.cpu_count()} cores | Python {platform.python_version()}"
        f"{' | --quick' if args.quick else ''}\n"
    )
    if args.baseline:
        print(f"baseline tree: {args.baseline}")
    rates = [] if args.rates_off else [float(r) for r in args.rates.split(",")]
    run(rates, args.rounds, args.seconds, sides, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
