"""Running one benchmark script in several worker processes, each importing its own
``aigw_lab`` (an old tree, this checkout, this checkout again), interleaved in rounds: the
parent's side of bench_values.py and bench_around_stages.py.

A worker is the script run with ``--worker``: it prints one JSON line with ``"ready"`` (and
``"aigw_lab"``, the file it imported, when it wants the tree checked), then for each line
it reads (the round's parameters) prints one JSON object ``{workload: [wall, cpu]}``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["run_rounds"]


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
    return json.loads(proc.stdout.readline())


def run_rounds(
    script: Path,
    sides: Mapping[str, Path],
    workloads: Sequence[str],
    *,
    rounds: int,
    line: str,
    warm_up: str,
    seed: int,
) -> dict[str, dict[str, list[list[float]]]]:
    """Start a worker of ``script`` per side (name -> tree), send each ``warm_up`` once,
    then ``rounds`` times ``line`` to every worker in a new random order; returns, per side
    and workload, the ``[wall, cpu]`` of every round."""
    procs = {name: _start(script, tree) for name, tree in sides.items()}
    rng = random.Random(seed)
    results: dict[str, dict[str, list[list[float]]]] = {
        name: {w: [] for w in workloads} for name in sides
    }
    try:
        for proc in procs.values():
            _ask(proc, warm_up)
        for _ in range(rounds):
            order = list(procs)
            rng.shuffle(order)
            for name in order:
                for workload, value in _ask(procs[name], line).items():
                    results[name][workload].append(value)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
    return results
