"""What the Ray driver's spool sweeps cost: `RayExecutor.send_cluster_leftovers` (one Ray
task pinned to each node, sending every shard folder of that node's team-log spool; a
resuming driver runs it before reading which units are done, and a run whose worker died
runs it before it returns) against `RayExecutor.send_local_leftovers` (the same folders,
swept in the driver's process: what a resuming driver did before), interleaved in rounds.

Set-up: a local Ray cluster (started once, its start not timed) and a real PostgreSQL 15
team log (`aigw_lab.testing.postgres`), a spool directory with ``--folders`` shard folders;
in each round every folder first gets ``--rows`` rows of a dead writer (PostgreSQL
unreachable when it closed, so they wait there, as a killed worker's do), then one side
sends them. Printed per side: wall and driver CPU per sweep, median [min, max] over rounds,
with ``os.getloadavg()`` before and after (ratios survive a loaded box; absolute figures
do not).

Usage: ``python bench/bench_cluster_sweep.py [--quick] [--rounds N] [--folders N]
[--rows N]``. ``--quick`` (about a minute plus the cluster's start) is 4 rounds, 4 folders,
both with 0 and 20 rows each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import psycopg  # noqa: E402
import ray  # noqa: E402

from aigw_lab.experiments import RayExecutor  # noqa: E402
from aigw_lab.store.records import CallRecord  # noqa: E402
from aigw_lab.store.team_log import TeamLogSink, TeamLogWarning  # noqa: E402
from aigw_lab.testing.postgres import PostgresCluster  # noqa: E402

ENV = "AIGW_BENCH_SWEEP_URL"


def leave_rows(root: Path, folders: int, rows: int, tag: str) -> None:
    """``rows`` rows in each of ``folders`` shard folders, left as a dead writer leaves them."""
    now = datetime.now(UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TeamLogWarning)
        for index in range(folders):
            dead = TeamLogSink("postgresql://x@127.0.0.1:9/none", spool_dir=root / f"shard-{index}",
                               flush_timeout=0.05, retry_interval=0.02)  # fmt: skip
            for n in range(rows):
                call_id = f"{tag}-{index}-{n}"
                dead.append(CallRecord(call_id=call_id, trace_id=call_id, timestamp=now,
                                       provider_name="up", request_model="m1",
                                       status="ok"))  # fmt: skip
            dead.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--folders", type=int, default=8)
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 100])
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.folders, args.rows = 4, 4, [0, 20]
    print(f"load before: {os.getloadavg()}")
    with PostgresCluster.start_new() as cluster, tempfile.TemporaryDirectory() as tmp:
        name = f"sweep_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = cluster.url.rsplit("/", 1)[0] + f"/{name}"
        os.environ[ENV] = url
        root = Path(tmp) / "spool"
        executor = RayExecutor(url_env=ENV, mirror=Path(tmp) / "m.duckdb", spool_dir=str(root),
                               num_cpus=2)  # fmt: skip
        started = time.perf_counter()
        executor.ensure_ray(ray)
        print(f"local cluster started in {time.perf_counter() - started:.1f} s (not counted)")
        executor.send_cluster_leftovers(ray, url)  # warm: the first task starts a worker
        try:
            for rows in args.rows:
                sides = {
                    "driver's process (send_local_leftovers)":
                        lambda: executor.send_local_leftovers(url),
                    "every node (send_cluster_leftovers)":
                        lambda: executor.send_cluster_leftovers(ray, url),
                }  # fmt: skip
                walls: dict[str, list[float]] = {side: [] for side in sides}
                cpus: dict[str, list[float]] = {side: [] for side in sides}
                for round_ in range(args.rounds):
                    order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                    for side in order:
                        leave_rows(root, args.folders, rows, f"{round_}-{side[:5]}-{rows}")
                        wall, cpu = time.perf_counter(), time.process_time()
                        sides[side]()
                        walls[side].append(time.perf_counter() - wall)
                        cpus[side].append(time.process_time() - cpu)
                print(f"\n{args.folders} shard folders, {rows} rows left in each, "
                      f"{args.rounds} rounds (load {os.getloadavg()}):")  # fmt: skip
                for side in sides:
                    w, c = walls[side], cpus[side]
                    print(f"  {side:42s} wall {statistics.median(w) * 1e3:7.1f} ms "
                          f"[{min(w) * 1e3:.1f}, {max(w) * 1e3:.1f}]  driver CPU "
                          f"{statistics.median(c) * 1e3:6.1f} ms [{min(c) * 1e3:.1f}, "
                          f"{max(c) * 1e3:.1f}]")  # fmt: skip
        finally:
            ray.shutdown()
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
