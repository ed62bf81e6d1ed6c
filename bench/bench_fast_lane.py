"""The fast lane (``python -m pytest -m "not slow"``, as a developer runs it) in an old checkout
and in this one, the sides taking turns in random order: wall and CPU of the whole run.

    python bench/bench_fast_lane.py --old-tree /path/to/old/checkout [--rounds 2]
    python bench/bench_fast_lane.py --old-tree /path/to/old/checkout --quick
    python bench/bench_fast_lane.py --old-tree /path/to/old/checkout --suite [--rounds 2]
    python bench/bench_fast_lane.py --old-tree OLD --suite --select "tests/docs -k caching"

Each round runs the command once in each tree (the tree's own tests/conftest.py decides the
workers: two per CPU), one side after the other in random order, so both see about the same
load. CPU is user + system of the pytest process and every process it waited for (the xdist
workers and the subprocesses of tests), from ``getrusage(RUSAGE_CHILDREN)``, as
``/usr/bin/time`` reports it; on a shared machine compare the CPU, the wall is indicative.
``--quick`` measures only what every run pays before its first test, the workers' start-up
and collection (``-k`` selecting nothing), three rounds: about a minute on a quiet 2-core
box. The full rounds take about 2 x 100 s each on a quiet box. ``--suite`` runs the whole suite
(``python -m pytest``, the README's and CI's command) instead of the fast lane: about 2 x 5 min
a round on a quiet box. Numbers in docs/performance.md ("The fast lane's start-up, session 11",
"The suite's schedule, session 12") come from here.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _child_time import run_timed  # bench/, the script's own folder

THIS_TREE = Path(__file__).resolve().parent.parent
#: A -k expression no test matches: the run starts its workers, collects, and stops.
NOTHING = "not_a_test_of_this_suite_zz"


def run_side(
    tree: Path, *, quick: bool, suite: bool = False, select: Sequence[str] = ()
) -> dict[str, object]:
    """Run the fast lane (or the whole suite) in ``tree`` once; its wall, CPU, load and summary
    line."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    for name, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        ("RAY_USAGE_STATS_ENABLED", "0"),
    ):
        env.setdefault(name, value)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not suite:
        command += ["-m", "not slow"]
    command += list(select)
    if quick:
        command += ["-k", NOTHING]
    load = os.getloadavg()[0]
    started = time.strftime("%H:%M:%S", time.gmtime())
    done, wall, user, system = run_timed(command, cwd=tree, env=env)
    expected = 5 if quick else 0  # 5: no test selected
    if done.returncode != expected:
        sys.exit(f"pytest exited {done.returncode} in {tree}:\n{done.stdout[-3000:]}")
    summary = next(
        (line for line in reversed(done.stdout.splitlines()) if re.search(r" in [\d.]+s", line)),
        "",
    )
    return dict(
        wall=wall,
        cpu=user + system,
        user=user,
        system=system,
        load=(load, os.getloadavg()[0]),
        started=started,
        summary=summary.strip("= "),
    )


def _spread(values: list[float], digits: int = 1) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{median:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="a checkout to compare")
    parser.add_argument("--rounds", type=int, help="rounds, each running both sides")
    parser.add_argument("--quick", action="store_true", help="start-up and collection only")
    parser.add_argument("--suite", action="store_true", help="the whole suite, not the fast lane")
    parser.add_argument(
        "--select",
        default="",
        help="more pytest arguments, one string (e.g. a folder and -k), for a part of the run",
    )
    parser.add_argument("--seed", type=int, help="the side order's seed (default: random)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 2)
    rng = random.Random(args.seed)
    sides = {"old": args.old_tree.resolve(), "new": THIS_TREE}
    what = "the whole suite" if args.suite else "the fast lane"
    if args.select:
        what += f" with {args.select}"
    if args.quick:
        what = f"start-up + collection of {what} (-k selecting nothing)"
    print(f"{what}, {rounds} rounds; old = {sides['old']}, new = {sides['new']}")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, {os.cpu_count()} CPUs")
    results: dict[str, list[dict[str, object]]] = {"old": [], "new": []}
    for number in range(1, rounds + 1):
        order = ["old", "new"]
        rng.shuffle(order)
        for side in order:
            result = run_side(
                sides[side], quick=args.quick, suite=args.suite, select=shlex.split(args.select)
            )
            results[side].append(result)
            first, last = result["load"]  # type: ignore[misc]
            load = f"{first:.1f} -> {last:.1f}"
            print(
                f"round {number} {side:3} {result['started']} UTC  wall {result['wall']:6.1f} s"
                f"  CPU {result['cpu']:6.1f} s (user {result['user']:.1f} + sys"
                f" {result['system']:.1f})  load {load}  {result['summary']}",
                flush=True,
            )
    print(f"\nmedian [range] over {rounds} rounds:")
    for side in ("old", "new"):
        walls = [r["wall"] for r in results[side]]
        cpus = [r["cpu"] for r in results[side]]
        print(f"  {side}: wall {_spread(walls)} s, CPU {_spread(cpus)} s")  # type: ignore[arg-type]
    for key in ("cpu", "wall"):
        ratios = [
            new[key] / old[key]  # type: ignore[operator]
            for old, new in zip(results["old"], results["new"], strict=True)
        ]
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"  new/old {key}: median {_spread(ratios, 2)}; per round {each}")


if __name__ == "__main__":
    main()
