"""Where the call log's CPU goes outside the calling thread, per thread, at concurrency.

    python bench/bench_log_threads.py [--quick] [--modes async16,async64,sync] [--rounds R]

Issue 13 §1/§5: `bench_peers.py` reports the CPU of a gateway-with-log process's "other
threads" (everything but the thread making the calls). This script runs the same side (the
gateway with a `CallLog`, against `bench_peers`' loopback fake in its own process, rounds of
``--calls`` calls each ended by a flush, as `bench_peers` does) and reads the writer
thread's own CPU clock (POSIX), so the writer thread and the rest (DuckDB's own threads)
are told apart. It also counts the writer's inserts, their sizes and the writer thread's CPU per
insert: at these rates an insert's fixed cost, not its rows, is most of what the log's
threads spend. CPU and load average are printed with every result; nothing is enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds another thread of this process has used (POSIX per-thread clock)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="async16 and sync, 3 rounds")
    parser.add_argument("--modes", default="async16,async64,sync")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="calls per round")
    args = parser.parse_args(argv)
    if args.quick:
        args.modes, args.rounds = "async16,sync", 3
    if not hasattr(time, "pthread_getcpuclockid"):
        print("needs POSIX per-thread CPU clocks")
        return 0
    import bench_peers as peers

    from aigw_lab.store import insert_path

    inserts: list[tuple[int, float]] = []  # (rows, writer-thread CPU s) per insert
    original = insert_path.InsertPath.insert

    def counted(self, table, *, built):  # noqa: ANN001, ANN202 - a bench-only wrapper
        start = time.thread_time()
        original(self, table, built=built)
        inserts.append((table.num_rows, time.thread_time() - start))

    insert_path.InsertPath.insert = counted  # type: ignore[method-assign]
    proc, base_url = peers.start_server()
    folder = Path(tempfile.mkdtemp(prefix="bench-log-threads-"))
    side = peers.Aigw(base_url, folder / "calls.duckdb")
    runner = asyncio.Runner()
    print(
        f"bench_log_threads: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC | "
        f"{os.cpu_count()} cores | {args.rounds} rounds x {args.calls} calls per mode\n"
    )
    try:
        for mode in args.modes.split(","):
            peers.run_round(side, mode, 50, runner)  # warm-up
            writer = side.log._writer.thread
            per_round: dict[str, list[float]] = {"process": [], "writer": [], "others": []}
            inserts.clear()
            for _ in range(args.rounds):
                mine0, cpu0, own0 = thread_cpu(writer), time.process_time(), time.thread_time()
                peers.run_round(side, mode, args.calls, runner)
                mine = thread_cpu(writer) - mine0
                cpu, own = time.process_time() - cpu0, time.thread_time() - own0
                per_round["process"].append(cpu / args.calls * 1e6)
                per_round["writer"].append(mine / args.calls * 1e6)
                per_round["others"].append(max(0.0, cpu - own - mine) / args.calls * 1e6)
            print(f"[{mode}] load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            for name, label in (
                ("process", "whole process"),
                ("writer", "the log's writer thread"),
                ("others", "every other thread (DuckDB's, ...)"),
            ):
                values = per_round[name]
                print(
                    f"  {label:<36} {statistics.median(values):8.1f} µs CPU/call "
                    f"[{min(values):.1f}-{max(values):.1f}]"
                )
            if inserts:
                sizes = [rows for rows, _ in inserts]
                costs = [cpu * 1e3 for _, cpu in inserts]
                print(
                    f"  inserts: {len(inserts)} for {args.rounds * args.calls} calls, rows per "
                    f"insert median {statistics.median(sizes):.0f} [{min(sizes)}-{max(sizes)}], "
                    f"writer-thread CPU per insert median {statistics.median(costs):.2f} ms "
                    f"[{min(costs):.2f}-{max(costs):.2f}]"
                )
    finally:
        insert_path.InsertPath.insert = original  # type: ignore[method-assign]
        runner.run(side.aclose())
        runner.close()
        side.close()
        proc.kill()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
