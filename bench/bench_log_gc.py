"""What does the call log leave to the garbage collector at a paced call rate?

    python bench/bench_log_gc.py [--quick] [--calls N] [--rate R] [--baseline TREE]

Issue 13 §1 (session 11). A row waits for the log's writer up to the batch age (5 s), so
whatever it keeps alive outlives the young collections and is promoted to the oldest
generation; every ~25% growth of that generation brings a full collection, which walks
every tracked object of the process (80-90k in a process that imported DuckDB and pyarrow:
9-30 ms). Each side is its own process making ``--calls`` gateway calls paced at
``--rate`` against the in-process fake (bench_gateway_overhead.py), after one warm-up and
one full collection, and prints the collections by generation (count and CPU ms on the
thread that ran them, all threads), and the tuples and rows found in the oldest generation
at the end that were not there at the start. Sides: the gateway with no log; with the log
as shipped (spool on, 5 s age); with ``--baseline TREE``, the same log from another
checkout (``git archive <commit> aigw_lab | tar -x -C TREE``). The sides run at the same
time (the counts do not depend on the machine's load; the CPU ms do, a little).
``--quick``: 3,000 calls at 100 calls/s (30 s).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(side: str, calls: int, rate: float) -> int:
    sys.path.insert(0, str(HERE))
    from _paced_sides import paced
    from bench_gateway_overhead import MESSAGES, MODEL, make_gateway

    import aigw_lab
    from aigw_lab.store import CallLog

    folder = tempfile.mkdtemp(prefix="bench-log-gc-")
    log = None if side == "off" else CallLog(Path(folder) / "calls.duckdb")
    gateway = make_gateway(log)

    def call() -> str:
        return gateway.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16).text

    for _ in range(300):
        call()
    if log is not None:
        log.flush()
    gc.collect()
    before = collections.Counter(type(o).__name__ for o in gc.get_objects(2))
    counts, spent, started = [0, 0, 0], [0.0, 0.0, 0.0], [0.0]

    def clock(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.thread_time()
            return
        counts[info["generation"]] += 1
        spent[info["generation"]] += time.thread_time() - started[0]

    gc.callbacks.append(clock)
    paced(call, calls, rate)
    gc.callbacks.remove(clock)
    after = collections.Counter(type(o).__name__ for o in gc.get_objects(2))
    grown = after - before
    print(
        json.dumps(
            {
                "collections": counts,
                "ms": [s * 1e3 for s in spent],
                "oldest": sum(after.values()),
                "tuples": grown.get("tuple", 0),
                "aigw_lab": aigw_lab.__file__,
            }
        ),
        flush=True,
    )
    gateway.close()
    if log is not None:
        log.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 calls at 100/s")
    parser.add_argument("--calls", type=int, default=9_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--baseline", metavar="TREE", help="a checkout of aigw_lab before")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.calls = 3_000
    if args.worker:
        return worker(args.worker, args.calls, args.rate)
    if args.baseline and not (Path(args.baseline) / "aigw_lab").is_dir():
        parser.error(f"--baseline: {args.baseline} holds no aigw_lab package")
    sides = {"log off": ("off", None), "log (this tree)": ("on", None)}
    if args.baseline:
        sides["log (baseline tree)"] = ("on", {**os.environ, "PYTHONPATH": args.baseline})
    print(
        f"bench_log_gc: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.machine()} | "
        f"Python {platform.python_version()} | {args.calls:,} calls at {args.rate:,.0f}/s per "
        f"side | load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    procs = {
        label: subprocess.Popen(
            [sys.executable, __file__, "--worker", side, "--calls", str(args.calls)]
            + ["--rate", str(args.rate)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for label, (side, env) in sides.items()
    }
    print(
        f"| {'side':<22} | {'collections gen 0 / 1 / 2':>26} | {'GC CPU ms 0 / 1 / 2':>22} "
        f"| {'µs/call':>7} | {'tuples kept':>11} | {'oldest gen':>10} |"
    )
    print(f"|{'-' * 24}|{'-' * 28}|{'-' * 24}|{'-' * 9}|{'-' * 13}|{'-' * 12}|")
    trees = {}
    for label, proc in procs.items():
        out, _ = proc.communicate()
        report = json.loads(out.strip().splitlines()[-1])
        trees[label] = report["aigw_lab"]
        counts = " / ".join(str(c) for c in report["collections"])
        ms = " / ".join(f"{m:.1f}" for m in report["ms"])
        per_call = sum(report["ms"]) / args.calls * 1e3
        print(
            f"| {label:<22} | {counts:>26} | {ms:>22} | {per_call:>7.1f} "
            f"| {report['tuples']:>11,} | {report['oldest']:>10,} |"
        )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, path in trees.items():
        print(f"  {label}: aigw_lab from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
