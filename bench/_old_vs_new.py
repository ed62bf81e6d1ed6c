"""Running one benchmark script in several worker processes, each importing its own
``aigw_lab`` (an old tree, this checkout, this checkout again), interleaved in rounds: the
parent's side of the scripts that compare trees (bench_values.py, bench_around_stages.py,
bench_call_modes.py, bench_budget_modes.py, bench_cache_modes.py, bench_exchange_modes.py,
bench_gateway_modes.py, bench_ratelimit.py).

A worker is the script run with ``--worker``: it prints one JSON line with ``"ready"`` (and
``"aigw_lab"``, the file it imported, when it wants the tree checked), then for each line
it reads (the round's parameters) prints one JSON object ``{workload: [wall, cpu]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["sides", "run_rounds", "print_table"]


def sides(
    parser: argparse.ArgumentParser, old_tree: Path, marker: str = "types.py"
) -> dict[str, Path]:
    """The three sides, ``old`` (``old_tree``), ``new`` and ``new, again`` (this checkout
    twice: how far identical sides drift apart, the noise floor); a parser error when
    ``old_tree`` holds no ``aigw_lab/<marker>`` (the module the script compares)."""
    if not (old_tree / "aigw_lab" / marker).is_file():
        parser.error(f"{old_tree} holds no aigw_lab/{marker}")
    new_tree = Path(__file__).resolve().parent.parent
    return {"old": old_tree, "new": new_tree, "new, again": new_tree}


def _start(script: Path, tree: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(
        [sys.executable, str(script), "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    assert proc.stdout is not None
    hello = json.loads(proc.stdout.readline())
    assert hello["ready"], hello
    if "aigw_lab" in hello:
        # The worker must have imported the tree it stands for, not an installed copy.
        assert Path(hello["aigw_lab"]).resolve().is_relative_to(tree.resolve()), hello
    return proc


def _ask(proc: subprocess.Popen[str], line: str) -> dict[str, list[float]]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    answer = proc.stdout.readline()
    if not answer:
        raise RuntimeError("a worker died (its error is above)")
    return json.loads(answer)


def run_rounds(
    script: Path,
    sides: Mapping[str, Path],
    workloads: Sequence[str] | None,
    *,
    rounds: int,
    line: str,
    warm_up: str | None,
    seed: int,
) -> dict[str, dict[str, list[list[float]]]]:
    """Start a worker of ``script`` per side (name -> tree), send each ``warm_up`` once
    (None: no warm-up round), then ``rounds`` times ``line`` to every worker in a new
    random order; returns, per side and workload, the ``[wall, cpu]`` of every round
    (``workloads`` None: whichever the workers report)."""
    procs = {name: _start(script, tree) for name, tree in sides.items()}
    rng = random.Random(seed)
    results: dict[str, dict[str, list[list[float]]]] = {
        name: {w: [] for w in workloads or ()} for name in sides
    }
    try:
        if warm_up is not None:
            for proc in procs.values():
                _ask(proc, warm_up)
        for _ in range(rounds):
            order = list(procs)
            rng.shuffle(order)
            for name in order:
                for workload, value in _ask(procs[name], line).items():
                    results[name].setdefault(workload, []).append(value)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=120)
    return results


def print_table(
    results: Mapping[str, Mapping[str, list[list[float]]]],
    workloads: Sequence[str],
    *,
    width: int = 20,
    digits: int = 2,
    label: str = "workload",
    note: str = "",
) -> None:
    """One row per workload: medians over rounds of wall and CPU microseconds for ``old``
    and ``new``, ``new/old``, and ``again/new`` (the noise floor); ``note`` ends the
    footer."""
    print(
        f"{label:<{width}} {'old µs':>8} {'new µs':>8} {'new/old':>8} {'again/new':>10}"
        f"   {'old CPU':>8} {'new CPU':>8} {'new/old':>8} {'again/new':>10}"
    )
    for workload in workloads:
        med = {
            name: [statistics.median(v[i] for v in results[name][workload]) for i in (0, 1)]
            for name in results
        }
        old, new, again = med["old"], med["new"], med["new, again"]
        print(
            f"{workload:<{width}} {old[0]:8.{digits}f} {new[0]:8.{digits}f} "
            f"{new[0] / old[0]:8.3f} {again[0] / new[0]:10.3f}   {old[1]:8.{digits}f} "
            f"{new[1]:8.{digits}f} {new[1] / old[1]:8.3f} {again[1] / new[1]:10.3f}"
        )
    print(
        "new/old: this tree over the old one; again/new: two identical copies of this tree "
        "(the noise floor). Medians over rounds." + (f" {note}" if note else "")
    )
