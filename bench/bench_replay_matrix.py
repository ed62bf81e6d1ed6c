"""What reading a replay matrix costs, and how close `plan_fill`'s estimate comes to what the
fill pays, on the simulated fleet.

    python bench/bench_replay_matrix.py [--calls 2000] [--rounds 5] [--seeds 5]

1. **Read time.** A call log of ``--calls`` live calls (the bundled ``mixed_v1`` prompts drawn
   at random, each to one of four fleet targets) is read ``--rounds`` times as a
   `ReplayMatrix`, interleaved with a baseline read of the same log: one ``GROUP BY`` of the
   ok rows by target and request (what any per-cell summary must at least scan). Medians of
   wall and CPU time (``process_time``: all threads, DuckDB's included), and their ratio.
2. **Estimate accuracy.** For each of ``--seeds`` seeds: 120 calls of fresh traffic, the
   matrix's empty cells planned (`plan_fill`) and filled through the fleet's batch API
   (`fill`); the ratio paid / estimated, per seed, with its mean and the spread over seeds.

Everything is simulated (`Gateway.simulated_fleet`, ``time_scale=0``); the numbers are for
this machine only. Prints two tables; exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aigw_lab import Gateway  # noqa: E402
from aigw_lab.datasets import bundled_dataset  # noqa: E402
from aigw_lab.experiments import ReplayMatrix, fill, plan_fill  # noqa: E402

TARGETS = (
    "sim-openai/sim-nano",
    "sim-openai/sim-small",
    "sim-openai/sim-large",
    "sim-anthropic/sim-haikuish",
)
BASELINE = (
    "SELECT provider_name, request_model, request_json, count(*), avg(cost_usd) "
    "FROM calls WHERE status = 'ok' GROUP BY ALL"
)


def traffic(gateway: Gateway, calls: int, seed: int) -> None:
    """``calls`` live calls: random prompts of mixed_v1, each to a random target."""
    rng = random.Random(seed)
    items = bundled_dataset().items
    for _ in range(calls):
        item = items[rng.randrange(len(items))]
        gateway.chat(rng.choice(TARGETS), item.prompt, tags={"category": item.category})
    gateway.log.flush()


def timed(action) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def read_times(calls: int, rounds: int, folder: Path) -> None:
    with Gateway.simulated_fleet(seed=0, time_scale=0.0, log=folder / "read.duckdb") as gw:
        started = time.perf_counter()
        traffic(gw, calls, seed=0)
        print(f"logged {calls} calls in {time.perf_counter() - started:.1f} s")
        sides = {
            "baseline GROUP BY": lambda: gw.log.query(BASELINE),
            "ReplayMatrix.from_log": lambda: ReplayMatrix.from_log(gw.log),
        }
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        order = list(sides)
        rng = random.Random(1)
        for _ in range(rounds):
            rng.shuffle(order)  # interleaved, in a new order each round
            for name in order:
                measured[name].append(timed(sides[name]))
        matrix = ReplayMatrix.from_log(gw.log)
    print(f"matrix: {matrix.shape[0]} prompts x {matrix.shape[1]} targets, "
          f"{len(matrix.cells)} cells")  # fmt: skip
    base_wall = statistics.median(w for w, _ in measured["baseline GROUP BY"])
    base_cpu = statistics.median(c for _, c in measured["baseline GROUP BY"])
    print(f"{'read':<24}{'wall ms':>10}{'CPU ms':>10}{'wall x':>9}{'CPU x':>8}")
    for name, values in measured.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{name:<24}{wall * 1e3:>10.1f}{cpu * 1e3:>10.1f}{wall / base_wall:>9.1f}"
              f"{cpu / base_cpu:>8.1f}")  # fmt: skip


def estimate_accuracy(seeds: int, folder: Path) -> None:
    print(f"{'seed':<6}{'cells':>7}{'estimated $':>14}{'paid $':>11}{'paid/est':>10}")
    ratios = []
    for seed in range(seeds):
        log = folder / f"fill-{seed}.duckdb"
        with Gateway.simulated_fleet(seed=seed, time_scale=0.0, log=log) as gw:
            traffic(gw, 120, seed=100 + seed)
            matrix = ReplayMatrix.from_log(gw.log, targets=TARGETS)
            plan = plan_fill(matrix, gw)
            result = fill(plan, gw, max_cost_usd=1.0, poll_interval=0)
        ratio = result.cost_usd / plan.usd
        ratios.append(ratio)
        print(f"{seed:<6}{plan.cells:>7}{plan.usd:>14.5f}{result.cost_usd:>11.5f}{ratio:>10.3f}")
    mean = statistics.fmean(ratios)
    spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    half = 2.776 * spread / len(ratios) ** 0.5 if len(ratios) == 5 else float("nan")
    print(f"paid/estimated over {seeds} seeds: mean {mean:.3f}, range {min(ratios):.3f}-"
          f"{max(ratios):.3f}" + (f", 95% t-interval [{mean - half:.3f}, {mean + half:.3f}]"
                                  if len(ratios) == 5 else ""))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_replay_matrix, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}; simulated fleet")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aigw-bench-matrix-") as folder:
        read_times(args.calls, args.rounds, Path(folder))
        estimate_accuracy(args.seeds, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
