"""What the numerical libraries' thread count per xdist worker costs the test suite: a sample of
tests run twice side by side, started together, in the same tree.

    python bench/bench_suite_threads.py [--quick] [--rounds R] [--workers N] [PATHS ...]

The sides differ only in the thread variables the workers start with (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ... as tests/conftest.py's ``THREAD_VARS``):

- ``a thread per CPU``: every variable set to the machine's CPU count, which is what each
  library chooses by itself (the suite before session 9); tests/conftest.py keeps a variable
  the user set, so this side runs as the old suite did;
- ``CPUs / workers``: the variables unset, so tests/conftest.py gives each worker its share
  (one thread each for two workers on two cores).

Each side is ``python -m pytest -q -p no:cacheprovider -n N -m "not slow" PATHS``; the two
start together, in alternating order each round, so both see the same load. Reported per side
and round: the pytest process tree's CPU (user + system, from ``wait4``: the controller and
its xdist workers), its wall time and the load average at start and end, and the ratios
(per CPU / split). Default paths: tests/policy, the numerical part of the suite (numpy,
scikit-learn, torch). ``--quick``: one round. Nothing is timed in the test suite; this script
is where the numbers in docs/performance.md ("The test suite's time, session 9") come from.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.conftest import THREAD_VARS  # noqa: E402  (the tree's own list)

SIDES = ("a thread per CPU", "CPUs / workers")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _start(side: str, paths: list[str], workers: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if side == SIDES[0]:
        env.update(dict.fromkeys(THREAD_VARS, str(_cpus())))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-n", str(workers), "-m", "not slow", *paths]
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)


def _outcome(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if " in " in line and "passed" in line]
    return lines[-1].strip("= ") if lines else "(no summary: see " + str(log) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=["tests/policy"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--logs", default="/tmp", help="folder for each side's pytest output")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    print(f"{_cpus()} CPUs, {args.workers} workers, paths {' '.join(args.paths)}")
    totals = {side: [0.0, 0.0] for side in SIDES}
    for round_ in range(rounds):
        order = SIDES if round_ % 2 == 0 else SIDES[::-1]
        load = os.getloadavg()
        started = time.perf_counter()
        procs = {}
        for side in order:
            log = Path(args.logs) / f"bench_suite_threads-{round_}-{SIDES.index(side)}.log"
            procs[side] = (_start(side, args.paths, args.workers, log), log)
        results = {}
        by_pid = {proc.pid: side for side, (proc, _) in procs.items()}
        while len(results) < len(procs):
            pid, _, usage = os.wait4(-1, 0)  # whichever ends first, at its own end
            if pid in by_pid:
                wall = time.perf_counter() - started
                results[by_pid[pid]] = (usage.ru_utime + usage.ru_stime, wall)
                procs[by_pid[pid]][0].returncode = 0  # reaped here; Popen must not wait again
        end = os.getloadavg()
        print(f"round {round_ + 1} (load {load[0]:.1f} at start, {end[0]:.1f} at end):")
        for side in SIDES:
            cpu, wall = results[side]
            totals[side][0] += cpu
            totals[side][1] += wall
            print(f"  {side:18s} CPU {cpu:7.1f} s  wall {wall:7.1f} s  {_outcome(procs[side][1])}")
        (cpu_a, wall_a), (cpu_b, wall_b) = results[SIDES[0]], results[SIDES[1]]
        print(f"  ratio split / per CPU: CPU {cpu_b / cpu_a:.2f}x  wall {wall_b / wall_a:.2f}x")
    if rounds > 1:
        (cpu_a, wall_a), (cpu_b, wall_b) = totals[SIDES[0]], totals[SIDES[1]]
        print(f"all rounds: CPU {cpu_b / cpu_a:.2f}x  wall {wall_b / wall_a:.2f}x")


if __name__ == "__main__":
    main()
