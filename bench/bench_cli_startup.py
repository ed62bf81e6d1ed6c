"""What starting ``aigw-lab`` costs: CPU and wall time of a fresh process per command, for
this tree and (``--old-tree DIR``) an earlier one, in one run.

    python bench/bench_cli_startup.py [--rounds R] [--old-tree DIR]

``DIR`` holds an earlier ``aigw_lab`` and ``datasets`` (the bundled sets), e.g. ``git archive
44b59a3 aigw_lab datasets | tar -x -C DIR``.
Each command runs as ``python -m aigw_lab.cli.main ...`` with ``PYTHONPATH`` set to the tree,
from a scratch folder (so neither tree is found through the current directory). The trees
take turns command by command, in a new random order every round, so both see the same
machine state; a bare ``python -c pass`` is measured the same way as the interpreter's own
floor. Reported per command: the median over rounds of the child's CPU (user + system, from
``getrusage``) and of its wall time, and new / old ratios.

The commands: ``--help``, the help of a few verbs, and ``run`` of a 4-item experiment on the
simulated fleet with no waiting (``time_scale = 0``), which imports the whole run path.
Nothing is timed in the test suite; this script is where the numbers come from.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

from _child_time import run_timed  # bench/, the script's own folder

HERE = Path(__file__).resolve().parent.parent

EXPERIMENT = """\
[experiment]
name = "startup"
dataset = "bundled:mixed_v1"
sample = 4
seed = 0
scorers = ["auto"]

[[targets]]
model = "sim-openai/sim-nano"

[gateway.simulated]
time_scale = 0.0
"""

COMMANDS: dict[str, list[str]] = {
    "python -c pass (floor)": [],
    "aigw-lab --help": ["--help"],
    "aigw-lab run --help": ["run", "--help"],
    "aigw-lab demo --help": ["demo", "--help"],
    "aigw-lab report --help": ["report", "--help"],
    "aigw-lab policy export --help": ["policy", "export", "--help"],
    "aigw-lab run EXPERIMENT (4 calls)": ["run", "experiment.toml", "--db", "{db}"],
}


def measure(tree: Path, argv: list[str], scratch: Path, n: int) -> tuple[float, float]:
    """CPU and wall seconds of one fresh process running ``argv`` against ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if argv:
        argv = [a.replace("{db}", str(scratch / f"calls-{tree.name}-{n}.duckdb")) for a in argv]
        command = [sys.executable, "-m", "aigw_lab.cli.main", *argv]
    else:
        command = [sys.executable, "-c", "pass"]
    timed = run_timed(command, cwd=scratch, env=env)
    if timed.done.returncode != 0:
        raise SystemExit(f"{command} failed ({timed.done.returncode}): {timed.done.stderr[-2000:]}")
    return timed.cpu, timed.wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="turns per command (default: 7)")
    parser.add_argument("--old-tree", type=Path, help="an earlier tree to compare with")
    parser.add_argument("--seed", type=int, default=0, help="order of the turns (default: 0)")
    args = parser.parse_args()
    trees = {"new": HERE}
    if args.old_tree:
        trees["old"] = args.old_tree.resolve()
    rng = random.Random(args.seed)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="aigw-startup-") as folder:
        scratch = Path(folder)
        (scratch / "experiment.toml").write_text(EXPERIMENT, encoding="utf-8")
        for n in range(args.rounds):
            for command, argv in COMMANDS.items():
                sides = list(trees.items())
                rng.shuffle(sides)
                for side, tree in sides:
                    results.setdefault((command, side), []).append(measure(tree, argv, scratch, n))
    print(
        f"aigw-lab start-up, fresh process per command, median of {args.rounds} rounds "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end)"
    )
    header = "| command | new CPU ms | new wall ms |"
    if "old" in trees:
        header += " old CPU ms | old wall ms | CPU new/old |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for command in COMMANDS:
        new = results[(command, "new")]
        cpu, wall = (statistics.median(x[i] for x in new) * 1000 for i in (0, 1))
        row = f"| {command} | {cpu:.0f} | {wall:.0f} |"
        if "old" in trees:
            old = results[(command, "old")]
            ocpu, owall = (statistics.median(x[i] for x in old) * 1000 for i in (0, 1))
            row += f" {ocpu:.0f} | {owall:.0f} | {cpu / ocpu:.2f} |"
        print(row)


if __name__ == "__main__":
    main()
