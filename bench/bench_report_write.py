"""What ``aigw-lab report`` costs end to end, in a fresh process as a user runs it: an old
tree (the report's figures built with the plotly package) against this one (figures as plain
dicts written with ``json``, no plotly import), in the same run, interleaved
(docs/performance.md, "The core install's size without plotly and ipywidgets, session 11").

    git archive <old commit> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_report_write.py --old-tree /tmp/old [--rounds R] [--items N]
    python bench/bench_report_write.py --old-tree /tmp/old --quick    # about a minute

The log is made once by this tree: examples/experiment.toml's four simulated targets on
``--items`` items of the bundled dataset (time_scale 0). Each round runs the report once per
side, ``old``, ``new`` and ``new, again`` (this tree twice: the noise floor), in a new random
order; each run is a new interpreter (``python -c``, ``PYTHONPATH`` = the side's tree, which
it must import), so start-up and imports count as they do for a user. Per side: the median
over rounds of wall and CPU seconds (user + system of the child, from ``wait4``) with the
range, the ratios new/old and again/new of the medians, whether the run imported plotly, and
the load average before and after. The old side needs plotly installed (the dev extras).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: One report in a fresh interpreter; prints the file it imported and whether plotly loaded.
CHILD = r"""
import io, json, sys, contextlib
import aigw_lab
from aigw_lab.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["report", "--db", sys.argv[1], "--out", sys.argv[2]])
print(json.dumps({"code": code, "aigw_lab": aigw_lab.__file__,
                  "plotly": "plotly" in sys.modules}))
"""


def make_log(folder: Path, items: int) -> Path:
    """examples/experiment.toml's targets on ``items`` bundled items, logged by this tree
    (bench_report_size.py's example log)."""
    sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
    from bench_report_size import run_example

    return run_example(folder, items)


def measure(tree: Path, db: Path, out: Path) -> tuple[float, float, dict]:
    """(wall s, CPU s of the child, what the child reported) of one report by ``tree``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONSTARTUP", "PYTHONHOME"}}
    env["PYTHONPATH"] = str(tree)
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    wall = time.perf_counter() - start
    after = os.times()  # the child is reaped: its CPU is in this process's children's times
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if done.returncode != 0:
        sys.exit(f"the report failed in {tree}:\n{done.stderr[-3000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    if info["code"] != 0:
        sys.exit(f"aigw-lab report exited {info['code']} in {tree}:\n{done.stderr[-3000:]}")
    if not Path(info["aigw_lab"]).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"the side for {tree} imported {info['aigw_lab']}")
    return wall, cpu, info


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--items", type=int, default=40, help="bundled items in the log")
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.old_tree / "aigw_lab" / "report" / "charts.py").is_file():
        parser.error(f"{args.old_tree} holds no aigw_lab/report/charts.py")
    rounds = 5 if args.quick else args.rounds
    sides = {"old": args.old_tree, "new": ROOT, "new, again": ROOT}
    one, five, fifteen = os.getloadavg()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {one:.1f} {five:.1f} "
        f"{fifteen:.1f}; {rounds} rounds, {args.items} items x 4 targets"
    )
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        folder = Path(scratch)
        db = make_log(folder, args.items)
        rng = random.Random(args.seed)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        imported: dict[str, set[bool]] = {name: set() for name in sides}
        sizes: dict[str, int] = {}
        for tree in sides.values():  # warm-up: disk caches, bytecode
            measure(tree, db, folder / "warm.html")
        for _ in range(rounds):
            order = list(sides)
            rng.shuffle(order)
            for name in order:
                out = folder / f"{name.replace(', ', '-')}.html"
                wall, cpu, info = measure(sides[name], db, out)
                results[name].append((wall, cpu))
                imported[name].add(info["plotly"])
                sizes[name] = out.stat().st_size
    print(f"\n{'side':<11} {'wall s, median (range)':>24} {'CPU s, median (range)':>24}  "
          f"{'plotly imported':>15} {'file bytes':>11}")  # fmt: skip
    for name in sides:
        walls = [w for w, _ in results[name]]
        cpus = [c for _, c in results[name]]
        print(f"{name:<11} {spread(walls):>24} {spread(cpus):>24}  "
              f"{'/'.join(map(str, sorted(imported[name]))):>15} {sizes[name]:>11,}")  # fmt: skip
    med = {name: [statistics.median(v[i] for v in results[name]) for i in (0, 1)] for name in sides}
    print(
        f"\nnew/old: wall {med['new'][0] / med['old'][0]:.3f}, CPU "
        f"{med['new'][1] / med['old'][1]:.3f}; again/new (noise floor): wall "
        f"{med['new, again'][0] / med['new'][0]:.3f}, CPU "
        f"{med['new, again'][1] / med['new'][1]:.3f}"
    )
    one, five, fifteen = os.getloadavg()
    print(f"end {datetime.now(UTC):%H:%M} UTC, load {one:.1f} {five:.1f} {fifteen:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
