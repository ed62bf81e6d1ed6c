"""The parent's side of the paced benches whose sides are long-lived worker processes
(bench_log_rates.py, bench_log_caller.py).

Each side is the script run with ``--worker SIDE --folder FOLDER``: it answers every line it
reads (``run N RATE``, ``end``, ...) with one JSON line. `PacedSides` starts them, asks them
in interleaved rounds (the order rotated each turn and reversed every other turn, the first
turn a warm-up that is not kept) and, at the end, checks that each side's log holds a row
for every call it made. `wakeups` and `print_rounds` are bench_log_rates.py's per-thread
split of a round (its worker's and its parent's halves).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["PacedSides", "paced", "print_rounds", "wakeups"]


def paced(call: Callable[[], Any], n: int, rate: float) -> float:
    """``n`` calls at ``rate`` per second (each sleeps until its turn); returns the block's
    start on the ``perf_counter`` clock."""
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        call()
    return start


class PacedSides:
    """One worker process per side of ``script``, spoken to by lines."""

    def __init__(
        self,
        script: str,
        sides: Sequence[str],
        folder: str,
        env: Callable[[str], Mapping[str, str] | None] = lambda side: None,
    ) -> None:
        self.sides = list(sides)
        self.procs = {
            side: subprocess.Popen(
                [sys.executable, script, "--worker", side, "--folder", folder],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env(side),
            )
            for side in self.sides
        }

    def ask(self, side: str, line: str) -> dict:
        """Send ``line`` to ``side``; its one-line JSON answer."""
        proc = self.procs[side]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    def rounds(self, line: str, rounds: int) -> dict[str, list[dict]]:
        """``rounds`` counted turns (after one warm-up) of ``line`` to every side; each side's
        answers, in turn order."""
        results: dict[str, list[dict]] = {side: [] for side in self.sides}
        sides = self.sides
        for turn in range(rounds + 1):
            order = sides[turn % len(sides) :] + sides[: turn % len(sides)]
            if turn % 2:
                order = order[::-1]
            for side in order:
                report = self.ask(side, line)
                if turn:
                    results[side].append(report)
        return results

    def end(self, names: Mapping[str, str]) -> None:
        """Stop every side; print any whose log lacks a row for a call it made."""
        where: dict[str, list[str]] = {}
        for side in self.sides:
            end = self.ask(side, "end")
            if end["rows"] is not None and end["rows"] != end["made"]:
                print(f"!! {names[side]}: {end['made']} calls but {end['rows']} rows in the log")
            if "aigw_lab" in end:  # which tree the side ran (a baseline side: another one)
                where.setdefault(end["aigw_lab"], []).append(side)
            proc = self.procs[side]
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=120)
        if len(where) > 1:
            for path, sides in where.items():
                print(f"aigw_lab imported from {path} by: {', '.join(sides)}")


def wakeups(caller_tid: int) -> int:
    """Voluntary context switches (a thread going to sleep, so each is one wake-up) of this
    process's threads other than ``caller_tid``, since they started (Linux; 0 elsewhere). A
    thread that polls shows here at every call rate; the writer wakes once per batch."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for tid in tasks:
        if int(tid) == caller_tid:
            continue
        try:
            with open(f"/proc/self/task/{tid}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            continue  # the thread ended
    return total


def print_rounds(name: str, side: list[dict], off: list[dict]) -> None:
    """A side's reports against the log-off side's (bench_log_rates.py's worker), round by
    round: the calling thread, its garbage collections and full ones on both sides, the
    log's threads, the writer's clock and the other threads' wake-ups."""
    print(f"    round by round, {name} minus log off (µs CPU/call):")
    for turn, (a, b) in enumerate(zip(side, off, strict=True), 1):
        calls = a["calls"]
        added = (a["cpu"] - b["cpu"]) / calls * 1e6
        caller = (a["caller_cpu"] - b["caller_cpu"]) / calls * 1e6
        gc_added = (a["gc"] - b["gc"]) / calls * 1e6
        full = a["gc_generations"][2][0], b["gc_generations"][2][0]
        print(
            f"      {turn}: {added:+7.1f} = calling thread {caller:+6.1f} (its GC {gc_added:+5.1f}"
            f"; full collections {full[0]} vs {full[1]}) + the log's threads "
            f"{added - caller:+6.1f} (writer clock {a['writer_cpu'] / calls * 1e6:5.1f}; "
            f"other threads' wake-ups {a.get('wakeups', 0)} vs {b.get('wakeups', 0)})"
        )
