"""The test suite's heaviest tests, old tree against this checkout, side by side: per test the
wall time, the CPU time of the pytest process (all its threads) and of the subprocesses it
waited for, and the seconds spent in ``time.sleep``/``asyncio.sleep`` (any thread), with the
load average (docs/performance.md, "The test suite's time, session 9 (heaviest tests)").

    python bench/bench_test_modules.py --old-tree /path/to/old/checkout [--rounds 2] [NODE ...]
    python bench/bench_test_modules.py --old-tree /path/to/old/checkout --quick
    python bench/bench_test_modules.py --old-tree /path/to/old/checkout --set rollups --quick

Each round runs the tests once in each tree (one ``pytest -p no:xdist`` process per side, the
sides in random order), so both sides see the same load; on a loaded machine compare the CPU
columns and the sleep column, not the wall. ``--quick`` runs one round; without test ids the
tests are a named ``--set``: session 9's headline tests (the default; about two minutes on a
quiet 2-core box) or session 11's ``rollups`` (about a minute).

The file is also the pytest plugin that measures (``-p bench_test_modules``, with this folder
on ``PYTHONPATH``): it writes one JSON line per test phase to ``$BENCH_TEST_MODULES_OUT``, with
the xdist worker that ran it and the time it ended (bench/bench_suite_schedule.py reads them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

#: The tests this session changed (tests/cli/test_warm_cli.py): latency sleeps and a model load.
HEADLINE = (
    "tests/cli/test_warm_cli.py::test_serve_warms_the_semantic_cache_too",
    "tests/cli/test_warm_cli.py::test_serve_warms_a_memory_cache_from_its_own_log_before_it_listens",
    "tests/cli/test_warm_cli.py::test_warming_from_a_log_uses_its_answers_without_a_call",
)
#: The slow property tests of tests/analysis/test_rollups.py, whose examples run on copies of
#: one migrated template since session 11 (docs/performance.md, "The test suite's time,
#: session 11"): about a minute per side on a quiet 2-core box.
ROLLUPS = tuple(
    f"tests/analysis/test_rollups.py::{name}"
    for name in (
        "test_rolled_up_analyses_equal_the_reference",
        "test_refreshes_in_chunks_build_the_rollups_one_refresh_builds",
        "test_histogram_percentiles_are_within_the_stated_relative_error",
    )
)
#: The named sets of tests (``--set``).
SETS = {"warm-cli": HEADLINE, "rollups": ROLLUPS}
_OUT_ENV = "BENCH_TEST_MODULES_OUT"

# --- the plugin (inside the measured pytest process) ---------------------------------------

_slept = [0.0]
_lock = threading.Lock()


def _counted_sleeps() -> None:
    # Both sleeps are wrapped once the plugin is configured, so every later caller (the code
    # under test, its threads, default arguments bound at import) is counted.
    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        start = time.perf_counter()
        try:
            real_sleep(seconds)
        finally:
            with _lock:
                _slept[0] += time.perf_counter() - start

    async def async_sleep(delay: float, *args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return await real_async_sleep(delay, *args, **kwargs)
        finally:
            with _lock:
                _slept[0] += time.perf_counter() - start

    time.sleep, asyncio.sleep = sleep, async_sleep  # type: ignore[assignment]


def _now() -> tuple[float, float, float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        time.perf_counter(),
        me.ru_utime + me.ru_stime,
        children.ru_utime + children.ru_stime,
        _slept[0],
    )


def pytest_configure(config: object) -> None:
    if os.environ.get(_OUT_ENV):
        _counted_sleeps()


def _measured(phase: str):  # noqa: ANN202 - a pytest hook wrapper
    import pytest  # lazy: only the measured pytest process needs it

    @pytest.hookimpl(hookwrapper=True)
    def hook(item: object):  # noqa: ANN202
        before = _now()
        yield
        after = _now()
        out = os.environ.get(_OUT_ENV)
        if out:
            wall, cpu, child, slept = (b - a for a, b in zip(before, after, strict=True))
            line = {"id": item.nodeid, "phase": phase, "wall": wall, "cpu": cpu}  # type: ignore[attr-defined]
            line.update(child=child, slept=slept, load=os.getloadavg()[0])
            # Which xdist worker, and when the phase ended: a run's timeline per worker.
            line.update(worker=os.environ.get("PYTEST_XDIST_WORKER"), end=time.time())
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    return hook


pytest_runtest_setup = _measured("setup")
pytest_runtest_call = _measured("call")
pytest_runtest_teardown = _measured("teardown")

# --- the driver ------------------------------------------------------------------------------


def run_side(tree: Path, nodes: list[str], out: Path) -> tuple[float, float]:
    """Run ``nodes`` in ``tree`` once; returns (wall, CPU of the whole pytest process)."""
    env = dict(os.environ, PYTHONPATH=f"{Path(__file__).resolve().parent}{os.pathsep}{tree}")
    env[_OUT_ENV] = str(out)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    command = [sys.executable, "-m", "pytest", "-p", "bench_test_modules", "-q"]
    command += ["-p", "no:cacheprovider", "-p", "no:xdist", "-m", "", *nodes]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"pytest failed in {tree}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="a checkout to compare")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each runs both sides)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument(
        "--set",
        choices=sorted(SETS),
        default="warm-cli",
        help="the tests to run when no test ids are given (default: %(default)s, session 9's "
        "headline tests; rollups: session 11's)",
    )
    parser.add_argument("nodes", nargs="*", help="test ids (default: the --set)")
    args = parser.parse_args()
    new_tree = Path(__file__).resolve().parent.parent
    if not (args.old_tree / "tests").is_dir():
        parser.error(f"{args.old_tree} holds no tests/ folder")
    nodes = args.nodes or list(SETS[args.set])
    rounds = 1 if args.quick else args.rounds
    sides = {"old": args.old_tree.resolve(), "new": new_tree}
    rows: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        for number in range(rounds):
            order = random.sample(list(sides), len(sides))
            for side in order:
                out = Path(folder) / f"{side}-{number}.jsonl"
                wall, cpu = run_side(sides[side], nodes, out)
                print(
                    f"round {number + 1} {side:4}: pytest {wall:7.1f} s wall, {cpu:6.1f} s CPU "
                    f"(children included), load {os.getloadavg()[0]:.1f}"
                )
                per_test: dict[str, list[float]] = defaultdict(lambda: [0.0] * 5)
                for line in out.read_text(encoding="utf-8").splitlines():
                    record = json.loads(line)
                    sums = per_test[record["id"]]
                    for i, key in enumerate(("wall", "cpu", "child", "slept")):
                        sums[i] += record[key]
                    sums[4] = max(sums[4], record["load"])
                for test, sums in per_test.items():
                    rows[(test, side)].append(sums)
    print(f"\n{'side':4} {'wall s':>8} {'CPU s':>7} {'child':>6} {'slept':>6} {'load':>5}  test")
    for (test, side), runs in sorted(rows.items()):
        for wall, cpu, child, slept, load in runs:
            name = test.split("::", 1)[1][:70]
            print(f"{side:4} {wall:8.2f} {cpu:7.2f} {child:6.2f} {slept:6.2f} {load:5.1f}  {name}")


if __name__ == "__main__":
    main()
