"""What a call log on a shared `LogEngine` saves against one on a DuckDB instance of its own:
per open and close, and over test folders' fast lanes.

**Opens** (default): interleaved rounds; in each, the sides take turns in random order and
each opens and closes ``--opens`` logs:

- ``own, file``: ``CallLog(path).close()`` on a copy of a migrated, empty log (what the test
  suite's ``new_log_path`` gives, and a user reopening a log does);
- ``engine, file``: the same with ``engine=`` one engine made at the start;
- ``own, :memory:`` and ``engine, :memory:``: an in-memory log (a ``Gateway()``'s default).

Prints the median CPU (process time) and wall milliseconds per open+close with the range over
rounds, and engine/own ratios, with the UTC time and the load average before and after.

**Suite** (``--suite``): the fast lane (``-m "not slow"``, ``-p no:xdist``, one process) of
each folder in ``--folders``, for two trees in turn: ``--base`` (a checkout of the tree
before the engine, e.g. ``git archive <commit> | tar -x -C /tmp/base``) and this tree. Folders
and sides are interleaved (each folder runs on both sides before the next, the side order
random), or with ``--together`` started at the same moment, so both see the same load (the
box is shared). CPU is each pytest process's user + system time with the children it waited
for (``wait4``, what ``/usr/bin/time`` reports), beside wall time and the tests passed, per
folder and in total.
``--own`` adds a third side: this tree with ``AIGW_LAB_TEST_OWN_INSTANCE=1`` (every log on its
own instance again), which runs the same tests as this tree without the engine.

Usage: ``python bench/bench_log_engine.py [--rounds 7] [--opens 20]``;
``python bench/bench_log_engine.py --suite --base /tmp/base [--together] [--own] [--repeat N]
[--folders tests/gateway tests/store tests/analysis tests/experiments]``; ``--quick``: 3
rounds of 10 opens (seconds), or for ``--suite`` the folders tests/analysis and
tests/experiments (about 2 minutes on a quiet box). Prints each run, then per side the median
CPU with its range over repetitions, and the ratios against the base tree.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
#: One pytest run: CPU seconds, wall seconds, pytest's summary line.
Result = tuple[float, float, str]


def _stamp(label: str) -> None:
    load = os.getloadavg()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"{label}: {now}, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} [{min(values):6.2f}-{max(values):6.2f}]"


def opens(rounds: int, per_round: int, seed: int) -> None:
    from aigw_lab.store import CallLog
    from aigw_lab.store.engine import LogEngine

    work = Path(tempfile.mkdtemp(prefix="bench-log-engine-"))
    template = work / "template.duckdb"
    CallLog(template).close()
    engine = LogEngine()
    counter = iter(range(10**9))

    def copy() -> Path:
        path = work / f"log-{next(counter)}.duckdb"
        shutil.copyfile(template, path)
        return path

    sides: dict[str, Callable[[], None]] = {
        "own, file": lambda: CallLog(copy()).close(),
        "engine, file": lambda: CallLog(copy(), engine=engine).close(),
        "own, :memory:": lambda: CallLog(":memory:").close(),
        "engine, :memory:": lambda: CallLog(":memory:", engine=engine).close(),
    }
    for run in sides.values():  # warm: imports, the engine's first attach, the page cache
        run()
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    wall: dict[str, list[float]] = {name: [] for name in sides}
    rng = random.Random(seed)
    _stamp("start")
    for _ in range(rounds):
        order = list(sides)
        rng.shuffle(order)
        for name in order:
            run = sides[name]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(per_round):
                run()
            cpu[name].append((time.process_time() - c0) * 1000 / per_round)
            wall[name].append((time.perf_counter() - w0) * 1000 / per_round)
    _stamp("end")
    engine.close()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{rounds} rounds x {per_round} open+close per side; ms per open+close, median [range]")
    print(f"{'side':20} {'CPU ms':>22} {'wall ms':>22}")
    for name in sides:
        print(f"{name:20} {_spread(cpu[name])} {_spread(wall[name])}")
    for kind in ("file", ":memory:"):
        own, eng = f"own, {kind}", f"engine, {kind}"
        ratio_cpu = statistics.median(cpu[eng]) / statistics.median(cpu[own])
        ratio_wall = statistics.median(wall[eng]) / statistics.median(wall[own])
        per_round = [e / o for e, o in zip(cpu[eng], cpu[own], strict=True)]
        print(
            f"engine/own, {kind}: CPU {ratio_cpu:.2f}x (per round "
            f"{min(per_round):.2f}-{max(per_round):.2f}), wall {ratio_wall:.2f}x"
        )


def _start(tree: Path, folder: str, own: bool) -> tuple[subprocess.Popen[str], float]:
    """Start the fast lane of ``folder`` in ``tree`` (``own``: every log on its own instance)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("AIGW_LAB_TEST_OWN_INSTANCE", None)
    if own:
        env["AIGW_LAB_TEST_OWN_INSTANCE"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider"]
    command += ["-q", "-m", "not slow", folder]
    out = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
    )
    process._bench_out = out  # type: ignore[attr-defined]
    return process, time.perf_counter()


def _reap(process: subprocess.Popen[str], status: int, usage: Any, wall: float) -> Result:
    """``process``'s CPU (user + system, with the children it waited for, as
    ``/usr/bin/time`` reports), wall seconds and pytest's summary line."""
    process.returncode = os.waitstatus_to_exitcode(status)
    out = process._bench_out  # type: ignore[attr-defined]
    out.seek(0)
    text = out.read()
    out.close()
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    last = summary[-1].strip("= ") if summary else f"exit {process.returncode}"
    return usage.ru_utime + usage.ru_stime, wall, last


def _run_folder(tree: Path, folder: str, own: bool) -> Result:
    process, started = _start(tree, folder, own)
    _, status, usage = os.wait4(process.pid, 0)
    return _reap(process, status, usage, time.perf_counter() - started)


def _run_together(runs: dict[str, tuple[Path, str, bool]]) -> dict[str, Result]:
    """Start every run at once; each one's wall time ends when it does."""
    started = {name: _start(*run) for name, run in runs.items()}
    by_pid = {process.pid: name for name, (process, _) in started.items()}
    results: dict[str, Result] = {}
    while by_pid:
        pid, status, usage = os.wait4(-1, 0)
        name = by_pid.pop(pid, None)
        if name is None:
            continue  # not one of ours
        process, t0 = started[name]
        results[name] = _reap(process, status, usage, time.perf_counter() - t0)
    return results


def suite(
    base: Path, folders: list[str], with_own: bool, together: bool, repeat: int, seed: int
) -> None:
    sides = {"before (base tree)": (base, False), "after (this tree)": (HERE, False)}
    if with_own:
        sides["this tree, own instances"] = (HERE, True)
    rng = random.Random(seed)
    # side -> folder -> one result per repetition
    results: dict[str, dict[str, list[Result]]] = {n: {f: [] for f in folders} for n in sides}
    _stamp("start")
    for _ in range(repeat):
        for folder in folders:
            order = list(sides)
            rng.shuffle(order)
            if together:  # all sides at once: each sees the same load
                runs = {n: (sides[n][0], folder, sides[n][1]) for n in order}
                done = _run_together(runs)
            else:
                done = {n: _run_folder(sides[n][0], folder, sides[n][1]) for n in order}
            for name in order:
                results[name][folder].append(done[name])
                cpu, wall, summary = done[name]
                print(f"  {folder:20} {name:26} CPU {cpu:7.1f} s  wall {wall:7.1f} s  {summary}")
            _stamp("    ")
    _stamp("end")
    print(f"\nmedian over {repeat} repetition(s) [range]; CPU s, wall s")
    print(f"{'folder':18} " + " ".join(f"{name:>40}" for name in sides))
    for folder in folders:
        cells = []
        for n in sides:
            cpu = [r[0] for r in results[n][folder]]
            wall = [r[1] for r in results[n][folder]]
            cells.append(f"CPU {_spread(cpu)} wall {statistics.median(wall):6.1f}")
        print(f"{folder:18} " + " ".join(f"{c:>40}" for c in cells))
    totals = {
        n: [
            (sum(results[n][f][i][0] for f in folders), sum(results[n][f][i][1] for f in folders))
            for i in range(repeat)
        ]
        for n in sides
    }
    first = next(iter(sides))
    for name in sides:
        cpu = [t[0] for t in totals[name]]
        wall = [t[1] for t in totals[name]]
        print(f"total {name:26} CPU {_spread(cpu)}  wall {_spread(wall)}")
    for name in list(sides)[1:]:
        cpu = [a[0] / b[0] for a, b in zip(totals[name], totals[first], strict=True)]
        wall = [a[1] / b[1] for a, b in zip(totals[name], totals[first], strict=True)]
        print(
            f"{name} / {first}: CPU {statistics.median(cpu):.2f}x [{min(cpu):.2f}-{max(cpu):.2f}], "
            f"wall {statistics.median(wall):.2f}x [{min(wall):.2f}-{max(wall):.2f}]"
        )
        for folder in folders:
            ratios = [
                a[0] / b[0]
                for a, b in zip(results[name][folder], results[first][folder], strict=True)
            ]
            print(f"    {folder:18} CPU {statistics.median(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--opens", type=int, default=20, help="open+close per side per round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="about 1-2 minutes")
    parser.add_argument("--suite", action="store_true", help="test folders' fast lanes instead")
    parser.add_argument("--base", type=Path, help="--suite: the tree before the engine")
    parser.add_argument("--own", action="store_true", help="--suite: add this tree, own instances")
    parser.add_argument("--repeat", type=int, default=1, help="--suite: repetitions")
    parser.add_argument(
        "--together", action="store_true", help="--suite: start the sides of a folder at once"
    )
    parser.add_argument(
        "--folders",
        nargs="+",
        default=["tests/gateway", "tests/store", "tests/analysis", "tests/experiments"],
    )
    args = parser.parse_args()
    if args.suite:
        if args.base is None:
            parser.error("--suite needs --base (a checkout of the tree before the engine)")
        folders = ["tests/analysis", "tests/experiments"] if args.quick else args.folders
        suite(args.base.resolve(), folders, args.own, args.together, args.repeat, args.seed)
        return
    rounds, per_round = (3, 10) if args.quick else (args.rounds, args.opens)
    opens(rounds, per_round, args.seed)


if __name__ == "__main__":
    main()
