"""What writing each call's start to the team log's spool costs the calling thread.

Since `aigw_lab.gateway.start_spools`, a gateway whose sinks include a `TeamLogSink` writes
each attempt's start to that sink's spool too (so a process killed mid-call leaves an
``interrupted`` row in the team log). This bench measures it against the previous
behaviour, interleaved in rounds, in one process:

- ``team+starts``: no file log, the team log the only sink, starts spooled (a Ray worker;
  ``serve`` with ``backend = "postgres"`` and no file); ``team``: the same without starts
  (as before);
- ``file+team+tee``: a DuckDB file log and the team log, each start written to both spools;
  ``file+team``: starts to the file log's spool only (as before).

The provider is an in-process `FunctionProvider` (no network), so the gateway's own work is
all there is; the team log is a real PostgreSQL 15 on loopback (fsync off), whose writer
thread runs beside the calls. Printed per variant: the calling thread's CPU per call
(``time.thread_time``) and wall per call, median [min, max] over rounds, flat out and paced
at ``--rate`` calls/s, with ``os.getloadavg()`` before and after each block. The column to
read is the difference between a variant and its baseline in the same rounds; absolute
figures move with the box's load.

Usage: ``python bench/bench_start_spools.py [--quick] [--rounds N] [--calls N] [--paced N]
[--rate R]``. ``--quick`` (under 2 minutes on the loaded 2-core box): 3 rounds, 3,000 calls
flat out and 200 paced at 100/s per variant and round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import psycopg

from aigw_lab.gateway import Gateway
from aigw_lab.store.team_log import TeamLogSink
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.testing.postgres import PostgresCluster

VARIANTS = ("team", "team+starts", "file+team", "file+team+tee")
MESSAGES = [{"role": "user", "content": "hello"}]


def build(variant: str, url: str, folder: Path) -> tuple[Gateway, TeamLogSink]:
    """A gateway and its team sink for ``variant``; the starts switched off for the two
    baselines (the recorder's spool set back to what it was before start_spools)."""
    tag = uuid.uuid4().hex[:8]
    sink = TeamLogSink(url, spool_dir=folder / f"team-{tag}")
    provider = FunctionProvider(lambda request: "hi", "fn", models=("m",))
    log = str(folder / f"own-{tag}.duckdb") if variant.startswith("file") else None
    gateway = Gateway([provider], log=log, sinks=[sink])
    recorder = gateway._recorder  # bench only: the previous behaviour, for comparison
    if variant == "team":
        recorder.spool = None
    elif variant == "file+team":
        recorder.spool = gateway.log.spool
    return gateway, sink


def run_block(gateway: Gateway, calls: int, rate: float | None) -> tuple[float, float]:
    """``calls`` calls, flat out or paced at ``rate``/s: (CPU µs, wall µs) per call of the
    calling thread (wall counts only the calls, not the pacing sleeps)."""
    period = None if rate is None else 1.0 / rate
    cpu = wall = 0.0
    next_at = time.perf_counter()
    for _ in range(calls):
        if period is not None:
            next_at += period
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        c0, w0 = time.thread_time(), time.perf_counter()
        gateway.chat(model="fn/m", messages=MESSAGES)
        cpu += time.thread_time() - c0
        wall += time.perf_counter() - w0
    return cpu / calls * 1e6, wall / calls * 1e6


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} [{min(values):.1f}, {max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 3,000 + 200 calls")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10_000, help="flat-out calls per block")
    parser.add_argument("--paced", type=int, default=500, help="paced calls per block")
    parser.add_argument("--rate", type=float, default=100.0, help="paced calls per second")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.paced = 3, 3_000, 200
    warnings.simplefilter("ignore")  # unknown prices: the rows are logged with cost NULL
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    with PostgresCluster.start_new() as pg, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        url = pg.url.rsplit("/", 1)[0] + "/bench"
        folder = Path(tmp)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                gateway, sink = build(variant, url, folder)
                try:
                    run_block(gateway, 200, None)  # warm-up: imports, connections, caches
                    for mode, calls, rate in (("flat", args.calls, None),
                                              ("paced", args.paced, args.rate)):  # fmt: skip
                        results.setdefault((variant, mode), []).append(
                            run_block(gateway, calls, rate)
                        )
                finally:
                    gateway.close()
                    sink.close()
            print(f"round {round_no + 1}/{args.rounds} done, load {os.getloadavg()}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print()
    print("calling thread per call, median [min, max] over rounds (µs)")
    print(f"{'mode':6} {'variant':14} {'CPU':>24} {'wall':>24}")
    for mode in ("flat", "paced"):
        for variant in VARIANTS:
            rows = results[(variant, mode)]
            print(
                f"{mode:6} {variant:14} {spread([r[0] for r in rows]):>24} "
                f"{spread([r[1] for r in rows]):>24}"
            )
    print()
    print("added by the start frames (paired per round: variant minus its baseline), µs")
    for mode in ("flat", "paced"):
        for new, old in (("team+starts", "team"), ("file+team+tee", "file+team")):
            pairs = list(zip(results[(new, mode)], results[(old, mode)], strict=True))
            cpu = [a[0] - b[0] for a, b in pairs]
            wall = [a[1] - b[1] for a, b in pairs]
            print(f"{mode:6} {new:14} CPU {spread(cpu)}   wall {spread(wall)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
