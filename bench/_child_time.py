"""One child process run to its end, timed as ``/usr/bin/time`` times it: wall seconds, and
user and system CPU seconds of the child and of every process it waited for (the delta of
``getrusage(RUSAGE_CHILDREN)`` around the run). Processes the child did not wait for (a
daemon, a Ray worker) are not counted. Shared by the benches that time whole commands
(bench_fast_lane.py, bench_heavy_test_files.py, bench_suite_schedule.py, bench_policy_cli.py,
bench_cli_startup.py)."""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["Timed", "run_timed"]


class Timed(NamedTuple):
    """A finished child: what ``subprocess.run`` returned, and its times in seconds."""

    done: subprocess.CompletedProcess[str]
    wall: float
    user: float
    system: float

    @property
    def cpu(self) -> float:
        return self.user + self.system


def run_timed(command: Sequence[str], **options: Any) -> Timed:
    """Run ``command`` with its output captured as text (``options`` go to
    ``subprocess.run``: cwd, env), and time it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(list(command), capture_output=True, text=True, **options)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timed(done, wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
