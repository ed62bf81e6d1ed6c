"""What running an experiment on Ray costs against running it in one process.

The same experiment (items x 2 targets, the exact scorer) runs, interleaved in rounds, on:

- ``local``: `run_experiment` in this process, logging to a DuckDB file, with
  ``concurrency = workers x C`` (the same calls in flight as the Ray run);
- ``ray``: `RayExecutor(workers=W)` on a local Ray cluster (started once, before the
  rounds; its start is timed apart), each worker at concurrency C, every row to a real
  PostgreSQL 15 team log (fsync off, as in the tests), results read through the mirror.

Both call one loopback fake upstream (its own thread server in this process) that answers
after ``--delay`` seconds (0.05 s: a realistic model's latency; 0: flat out). Printed per
executor: wall time, units/s, the driver's CPU per unit, and for Ray the CPU of its worker
processes (summed from /proc over processes whose command line is a Ray worker's; a worker
that exits between two readings is missed), median [min, max] over rounds, with
``os.getloadavg()`` before and after. Ratios between the two columns are what survive a
loaded machine; the absolute figures do not.

Usage: ``python bench/bench_ray_executor.py [--quick] [--rounds N] [--items N]
[--delay S]``. ``--quick`` (about 2 minutes on the loaded 2-core box) is 2 rounds of 40
items at both delays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import psycopg  # noqa: E402
import ray  # noqa: E402

from aigw_lab.datasets import Dataset  # noqa: E402
from aigw_lab.experiments import Experiment, RayExecutor, WorkerGateway, run_experiment  # noqa: E402
from aigw_lab.experiments.ray_start import init_ray  # noqa: E402
from aigw_lab.gateway import Gateway  # noqa: E402
from aigw_lab.scorers import build_scorer  # noqa: E402
from aigw_lab.testing.fake_upstream import FakeUpstream, Reply  # noqa: E402
from aigw_lab.testing.postgres import PostgresCluster  # noqa: E402

ENV = "AIGW_BENCH_TEAM_URL"
CONFIG = """
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
models = ["m1", "m2"]

[prices."up/m1"]
input_per_mtok = 1.0
output_per_mtok = 2.0

[prices."up/m2"]
input_per_mtok = 3.0
output_per_mtok = 5.0
"""


class Upstream(FakeUpstream):
    """Answers every request from its prompt (``q-<n>``) after ``delay`` seconds."""

    delay = 0.0

    def __init__(self) -> None:
        self._seen = threading.local()
        super().__init__()
        self.requests = _Noting(self._seen)

    def _next_reply(self) -> Reply:
        request = self._seen.request
        n = int(request.json["messages"][-1]["content"].split("-")[1])
        body = {
            "id": f"up-{n}", "object": "chat.completion", "model": request.json["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer {n}"}}],
            "usage": {"prompt_tokens": 5 + n % 7, "completion_tokens": 1 + n % 5},
        }  # fmt: skip
        return Reply(headers={"content-type": "application/json"},
                     chunks=(json.dumps(body).encode(),), delay=self.delay)  # fmt: skip


class _Noting(list):
    def __init__(self, seen: threading.local) -> None:
        super().__init__()
        self._seen = seen

    def append(self, request) -> None:
        self._seen.request = request
        super().append(request)


def ray_workers_cpu() -> float:
    """CPU seconds (user + system) of this machine's Ray worker processes, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not (cmdline.startswith(b"ray::") or b"default_worker.py" in cmdline):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def experiment(items: int, concurrency: int) -> Experiment:
    records = [{"id": f"i{n}", "prompt": f"q-{n}", "reference": f"answer {n}"}
               for n in range(items)]  # fmt: skip
    return Experiment(
        "bench", Dataset.from_records("bench", records), ["up/m1", "up/m2"],
        scorers=[build_scorer("exact")], concurrency=concurrency,
        experiment_id=f"bench-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip


def run_once(kind: str, config: Path, tmp: Path, items: int, workers: int, c: int) -> dict:
    before_cpu, before_workers = time.process_time(), ray_workers_cpu()
    start = time.perf_counter()
    if kind == "local":
        exp = experiment(items, workers * c)
        with Gateway.from_config(config, log=str(tmp / f"{exp.id}.duckdb")) as gateway:
            result = run_experiment(gateway, exp, progress=False)
    else:
        exp = experiment(items, c)
        executor = RayExecutor(
            workers=workers, url_env=ENV, mirror=tmp / f"{exp.id}.mirror.duckdb",
            spool_dir=str(tmp / "spool"), gateway=WorkerGateway(config=str(config)),
        )  # fmt: skip
        with Gateway.from_config(config, log=None) as gateway:
            result = run_experiment(gateway, exp, executor=executor, progress=False)
    wall = time.perf_counter() - start
    assert result.status == "completed" and result.completed == items * 2, result
    units = items * 2
    return {
        "wall": wall,
        "units_s": units / wall,
        "driver_ms": (time.process_time() - before_cpu) / units * 1e3,
        "workers_ms": (ray_workers_cpu() - before_workers) / units * 1e3,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.2f} [{min(values):,.2f}, {max(values):,.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 40 items")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="per Ray worker")
    parser.add_argument("--delay", type=float, action="append", help="upstream latency, s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.items = 2, 40
    delays = args.delay or [0.05, 0.0]
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    os.environ["BENCH_UPSTREAM_KEY"] = "sk-bench"
    with PostgresCluster.start_new() as pg, Upstream() as upstream, \
            tempfile.TemporaryDirectory() as folder:  # fmt: skip
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        os.environ[ENV] = pg.url.rsplit("/", 1)[0] + "/bench"
        tmp = Path(folder)
        config = tmp / "gateway.toml"
        config.write_text(CONFIG.format(url=upstream.url))
        started = time.perf_counter()
        # As the executor starts one: on 127.0.0.1 only, no dashboard.
        init_ray(ray, address=None, num_cpus=args.workers)
        print(f"ray.init (local cluster): {time.perf_counter() - started:.1f} s wall")
        # One warm-up Ray run: workers start and import once (reported, not counted).
        warm = run_once("ray", config, tmp, 4, args.workers, args.concurrency)
        print(f"first Ray run (4 items, workers starting): {warm['wall']:.1f} s wall", flush=True)
        for delay in delays:
            upstream.delay = delay
            figures: dict[str, list[dict]] = {"local": [], "ray": []}
            for _ in range(args.rounds):
                for kind in ("local", "ray"):
                    figures[kind].append(
                        run_once(kind, config, tmp, args.items, args.workers, args.concurrency)
                    )
            units = args.items * 2
            print(
                f"\nupstream latency {delay * 1e3:.0f} ms, {units} units, "
                f"{args.workers} x {args.concurrency} in flight; load {os.getloadavg()}"
            )
            print(
                f"{'executor':8} {'wall s':>22} {'units/s':>24} {'driver CPU ms/unit':>24} "
                f"{'Ray workers CPU ms/unit':>26}"
            )
            for kind, runs in figures.items():
                print(
                    f"{kind:8} {spread([r['wall'] for r in runs]):>22} "
                    f"{spread([r['units_s'] for r in runs]):>24} "
                    f"{spread([r['driver_ms'] for r in runs]):>24} "
                    f"{spread([r['workers_ms'] for r in runs]) if kind == 'ray' else '-':>26}"
                )
            ratio = statistics.median(r["wall"] for r in figures["ray"]) / statistics.median(
                r["wall"] for r in figures["local"]
            )
            print(f"ray / local wall time: {ratio:.2f}x", flush=True)
        ray.shutdown()
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
