"""What ``aigw-lab serve``'s ``gc.freeze`` after start-up saves per full (gen-2) collection.

    python bench/bench_serve_gc.py            # 41 collections per side
    python bench/bench_serve_gc.py --quick    # 11 per side (seconds)

Runs serve's own start-up in this process (``aigw-lab serve --no-auth --db FILE``: the
simulated fleet with a DuckDB call log, imports, gateway, the app's lifespan warm-up), stops
where uvicorn would start accepting, and reports how many objects the freeze moved out of
the collector's generations. Then times ``gc.collect()`` (a full collection) with those
objects frozen and unfrozen, the two sides taking turns in a random order per pair: median
[min-max] of wall and CPU time per collection, and frozen over unfrozen. How often a served
process makes a full collection depends on its allocations; the end-to-end A/B is
``bench/bench_serve_workers.py --lean --gc-compare``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def start_serve_here(db: str) -> int:
    """Runs serve's start-up in this process; returns the freeze count it left."""
    import aigw_lab.server
    from aigw_lab.cli.main import main

    counts: list[int] = []

    def started_only(app: Any, host: str, port: int, **_: Any) -> None:
        async def lifespan() -> None:
            messages = iter([{"type": "lifespan.startup"}])

            async def receive() -> dict:
                return next(messages)

            async def send(message: dict) -> None:
                if message["type"] == "lifespan.startup.complete":
                    counts.append(gc.get_freeze_count())
                    raise asyncio.CancelledError  # stop where serving would begin

            try:
                await app({"type": "lifespan"}, receive, send)
            except asyncio.CancelledError:
                pass

        asyncio.run(lifespan())

    aigw_lab.server.serve = started_only  # this script's process only
    if main(["serve", "--no-auth", "--port", "0", "--db", db]) != 0 or not counts:
        raise SystemExit("serve did not start")
    return counts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="11 collections per side")
    parser.add_argument("--pairs", type=int, default=41)
    args = parser.parse_args()
    pairs = 11 if args.quick else args.pairs
    with tempfile.TemporaryDirectory() as tmp:
        frozen = start_serve_here(str(Path(tmp) / "calls.duckdb"))
        gc.unfreeze()
        tracked = len(gc.get_objects())
        print(f"python {sys.version.split()[0]}; loadavg {os.getloadavg()}")
        print(f"serve froze {frozen} objects at start-up; {tracked} tracked once unfrozen")
        times: dict[str, list[tuple[float, float]]] = {"frozen": [], "unfrozen": []}
        for _ in range(pairs):
            for side in random.sample(list(times), 2):
                gc.collect()  # both sides start from the same (empty) young generations
                if side == "frozen":
                    gc.freeze()
                wall, cpu = time.perf_counter(), time.process_time()
                gc.collect()
                times[side].append((time.perf_counter() - wall, time.process_time() - cpu))
                gc.unfreeze()
        print(f"full collections, {pairs} per side, interleaved; loadavg {os.getloadavg()}")
        for side, runs in times.items():
            walls = [1e3 * w for w, _ in runs]
            cpus = [1e3 * c for _, c in runs]
            print(f"  {side:9} wall {statistics.median(walls):6.2f} ms "
                  f"[{min(walls):.2f}-{max(walls):.2f}]  cpu {statistics.median(cpus):6.2f} ms "
                  f"[{min(cpus):.2f}-{max(cpus):.2f}]")  # fmt: skip
        ratios = [f[0] / u[0] for f, u in zip(times["frozen"], times["unfrozen"], strict=True)]
        print(f"  frozen / unfrozen wall per pair: median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}-{max(ratios):.3f}]")  # fmt: skip


if __name__ == "__main__":
    main()
