"""The CPU of whole test files, an old tree against this checkout, interleaved: session 12's
files (docs/performance.md, "The heaviest tests' CPU, session 12").

    python bench/bench_heavy_test_files.py --old-tree /path/to/old/checkout [--rounds 2] [FILE ...]
    python bench/bench_heavy_test_files.py --old-tree /path/to/old/checkout --quick

Each round runs every file once in each tree: one ``python -m pytest -p no:xdist
-p no:cacheprovider -q FILE`` process per file and side, with ``PYTHONPATH`` set to that
tree, the two sides of a file one after the other in a random order, so both see about the
same load. CPU is user + system of the pytest process and the subprocesses it waited for
(``RUSAGE_CHILDREN``, what ``/usr/bin/time`` reports): processes it did not wait for (Ray's
daemons, Jupyter kernels) are not counted, on either side. Prints per file and side the
median CPU and wall over rounds with their range, the ratio new/old of the median CPU, the
sum over files, and the load average around each run; a side whose pytest failed is marked.
``--quick`` is one round of the files this session changed (about 2-3 minutes on a quiet
2-core box).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

from _child_time import run_timed  # bench/, the script's own folder

#: The files session 12 changed, each with a cost worth measuring.
CHANGED = (
    "tests/server/test_client_input_property.py",
    "tests/store/test_log_batching.py",
    "tests/analysis/test_paired_read.py",
    "tests/analysis/test_rollups.py",
)
#: Every file session 12's brief named (``--all``); notebooks and Ray are mostly uncounted
#: processes (see the module docstring).
ALL = (
    *CHANGED,
    "tests/ray_runs",
    "tests/store/test_dead_letter.py",
    "tests/notebook/test_notebooks.py",
    "tests/policy/test_split.py",
    "tests/analysis/test_saddlepoint.py",
    "tests/server/test_fuzz.py",
)
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def run_file(tree: Path, test_file: str) -> dict[str, float | bool]:
    """One pytest process over ``test_file`` in ``tree``: its CPU, wall and the load."""
    env = dict(os.environ, PYTHONPATH=str(tree), **_OFFLINE)
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider"]
    load = os.getloadavg()[0]
    timed = run_timed([*command, "-q", test_file], cwd=tree, env=env)
    return {"cpu": timed.cpu, "wall": timed.wall, "ok": timed.done.returncode == 0, "load": load}


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="a checkout to compare")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each runs both sides)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--all", action="store_true", help="every file of the brief")
    parser.add_argument("files", nargs="*", help="test files (default: the changed ones)")
    args = parser.parse_args()
    old = args.old_tree.resolve()
    new = Path(__file__).resolve().parents[1]
    if not (old / "aigw_lab").is_dir():
        parser.error(f"{old} has no aigw_lab folder: pass a checkout of the project")
    files = args.files or list(ALL if args.all else CHANGED)
    rounds = 1 if args.quick else args.rounds
    results: dict[tuple[str, str], list[dict[str, float | bool]]] = {}
    rng = random.Random()
    print(f"old {old}\nnew {new}\nstart {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC")
    for round_no in range(1, rounds + 1):
        for test_file in files:
            sides = [("old", old), ("new", new)]
            rng.shuffle(sides)
            for side, tree in sides:
                result = run_file(tree, test_file)
                results.setdefault((test_file, side), []).append(result)
                mark = "" if result["ok"] else "  FAILED"
                print(
                    f"round {round_no} {side} {test_file}: CPU {result['cpu']:.2f} s, "
                    f"wall {result['wall']:.1f} s, load {result['load']:.1f}{mark}",
                    flush=True,
                )
    print(f"end {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"\n{'file':48} {'old CPU s':>22} {'new CPU s':>22} {'new/old':>8}")
    sums = {"old": [0.0] * rounds, "new": [0.0] * rounds}
    for test_file in files:
        cpu = {side: [float(r["cpu"]) for r in results[(test_file, side)]] for side in sums}
        for side in sums:
            for i, value in enumerate(cpu[side]):
                sums[side][i] += value
        ratio = statistics.median(cpu["new"]) / statistics.median(cpu["old"])
        print(
            f"{test_file:48} {_median_range(cpu['old']):>22} {_median_range(cpu['new']):>22} "
            f"{ratio:8.2f}"
        )
    ratio = statistics.median(sums["new"]) / statistics.median(sums["old"])
    print(f"{'sum (per round)':48} {_median_range(sums['old']):>22} "
          f"{_median_range(sums['new']):>22} {ratio:8.2f}")  # fmt: skip
    failed = [key for key, runs in results.items() if not all(r["ok"] for r in runs)]
    if failed:
        print(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
