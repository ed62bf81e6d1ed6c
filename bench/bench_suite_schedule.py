"""How the xdist workers of a test run share its end: a selection of tests run on two workers in
an old tree and in this one, side by side, with each worker's timeline.

    python bench/bench_suite_schedule.py --old-tree /path/to/old/checkout [--rounds R] [PATHS ...]
    python bench/bench_suite_schedule.py --old-tree /path/to/old/checkout --quick

Each round runs ``python -m pytest -q -p no:cacheprovider -n 2 PATHS`` once per tree, the trees
one after the other in random order, so both see the same load. Reported per side and round:
the pytest process tree's wall and CPU (user + system of the controller, its workers and the
subprocesses they waited for), and from bench/bench_test_modules.py's plugin (one JSON line per
test phase, with its worker and end time): when each worker ran its last test, counted from the
start of the run, and the **idle end**, the time between the first and the last worker's last
test, when one of the two CPUs had no test to run. ``--quick`` runs one round of the default
selection (the test files at the top of tests/ and tests/teamlog: the end of the suite's file
order, where its slow tests sat; a few minutes on a quiet 2-core box). This is where the
schedule figures in docs/performance.md ("The test suite's time, session 10") come from.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _child_time import run_timed  # bench/, the script's own folder

HERE = Path(__file__).resolve().parent


def default_paths(tree: Path) -> list[str]:
    """tests/teamlog and the test files directly in tests/: the end of the file order."""
    files = sorted(p.name for p in (tree / "tests").glob("test_*.py"))
    return ["tests/teamlog", *(f"tests/{name}" for name in files)]


def run_side(tree: Path, paths: list[str], workers: int, out: Path) -> dict[str, object]:
    """Run ``paths`` in ``tree`` once on ``workers`` workers; its wall, CPU and timeline."""
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{tree}", BENCH_TEST_MODULES_OUT=str(out))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "bench_test_modules", "-n", str(workers), *paths]
    load = os.getloadavg()[0]
    start_clock = time.time()
    done, wall, user, system = run_timed(command, cwd=tree, env=env)
    summary = [line for line in done.stdout.splitlines() if " in " in line and "passed" in line]
    ends: dict[str, float] = defaultdict(float)
    busy: dict[str, float] = defaultdict(float)
    for line in out.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        worker = record.get("worker") or "main"
        ends[worker] = max(ends[worker], record["end"] - start_clock)
        busy[worker] += record["wall"]
    return {
        "wall": wall,
        "cpu": user + system,
        "ends": dict(sorted(ends.items())),
        "busy": dict(sorted(busy.items())),
        "idle_end": max(ends.values()) - min(ends.values()) if ends else float("nan"),
        "load": (load, os.getloadavg()[0]),
        "outcome": summary[-1].strip("= ") if summary else done.stdout[-500:],
    }


def _median_range(values: list[float], digits: int = 1) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="a checkout to compare")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each runs both sides)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--keep", type=Path, help="a folder to keep each run's JSON lines in")
    parser.add_argument("paths", nargs="*", help="test paths (default: the suite's file end)")
    args = parser.parse_args()
    sides = {"old": args.old_tree.resolve(), "new": HERE.parent}
    if not (sides["old"] / "tests").is_dir():
        parser.error(f"{args.old_tree} holds no tests/ folder")
    paths = args.paths or default_paths(sides["new"])
    rounds = 1 if args.quick else args.rounds
    print(f"{args.workers} workers, {len(paths)} paths: {' '.join(paths)}")
    results: dict[str, list[dict[str, object]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        for number in range(rounds):
            for side in random.sample(list(sides), len(sides)):
                out = (args.keep or Path(folder)) / f"{side}-{number}.jsonl"
                result = run_side(sides[side], paths, args.workers, out)
                results[side].append(result)
                ends = " ".join(f"{w} {t:.1f}" for w, t in result["ends"].items())  # type: ignore[union-attr]
                busy = " ".join(f"{w} {t:.1f}" for w, t in result["busy"].items())  # type: ignore[union-attr]
                print(
                    f"round {number + 1} {side}: wall {result['wall']:.1f} s, CPU "
                    f"{result['cpu']:.1f} s, last test ends at [{ends}] s, in tests [{busy}] s, "
                    f"idle end {result['idle_end']:.1f} s, load {result['load'][0]:.1f} -> "  # type: ignore[index]
                    f"{result['load'][1]:.1f}; {result['outcome']}",  # type: ignore[index]
                    flush=True,
                )
    print(f"\n{'side':4} {'wall s, median (range)':>26} {'CPU s':>22} {'idle end s':>22}")
    for side, runs in results.items():
        walls = [float(r["wall"]) for r in runs]  # type: ignore[arg-type]
        cpus = [float(r["cpu"]) for r in runs]  # type: ignore[arg-type]
        idle = [float(r["idle_end"]) for r in runs]  # type: ignore[arg-type]
        row = f"{_median_range(walls):>26} {_median_range(cpus):>22} {_median_range(idle):>22}"
        print(f"{side:4} {row}")
    old, new = results["old"], results["new"]
    for key in ("wall", "cpu"):
        ratios = [float(n[key]) / float(o[key]) for o, n in zip(old, new, strict=True)]  # type: ignore[arg-type]
        print(f"new / old {key}: {_median_range(ratios, 2)} (per round)")


if __name__ == "__main__":
    main()
