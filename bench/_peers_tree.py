"""``bench_peers.py --baseline-tree TREE``: the gateway's sides (log on, log off) with
``aigw_lab`` imported from another checkout (the code before a change), in a worker process
of their own, so before and after run in the same rounds against the same server.

The parent (`TreeSide`) starts ``python bench/_peers_tree.py`` with ``PYTHONPATH=TREE``; the
worker checks it imported that tree, builds the same `bench_peers.Aigw` side as the parent
would, and answers one line per request: ``check`` (the plain and the streamed answer),
``round MODE CALLS`` (the side's CPU, wall and other-threads CPU per call, measured in the
worker by `bench_peers.run_round`: its own process's clocks) and ``close``. Only its figures
cross the pipe, between rounds, outside every clock. The worker's process is otherwise idle,
as the parent's is for its own sides, so its CPU per call compares with theirs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


class TreeSide:
    """An `Aigw` side of ``bench_peers.py`` run by a worker process on another tree's code.
    Named ``base log on`` / ``base log off`` (``this ...`` for this checkout run the same
    way, ``--tree-workers``); its baseline is the parent's same-transport raw
    client, so "added CPU" reads like the gateway side's."""

    def __init__(
        self,
        tree: Path,
        base_url: str,
        log_path: Path | None,
        transport: str,
        baseline: str,
        label: str = "base",
    ) -> None:
        self.name = f"{label} log on" if log_path else f"{label} log off"
        self.baseline = baseline
        env = dict(os.environ, PYTHONPATH=str(tree))
        command = [sys.executable, str(Path(__file__)), base_url, str(log_path or "-"), transport]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        hello = self._ask(None)
        imported = Path(hello["aigw_lab"]).resolve()
        if not imported.is_relative_to(tree.resolve()):
            raise SystemExit(f"the baseline worker imported {imported}, not {tree}'s aigw_lab")

    def _ask(self, line: str | None) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f"the {self.name} worker died (its error is above)")
        return json.loads(answer)

    def check(self) -> tuple[str, str]:
        found = self._ask("check")
        return found["call"], found["stream"]

    def remote_round(self, mode: str, calls: int) -> tuple[float, float, float]:
        cpu, wall, other = self._ask(f"round {mode} {calls}")["round"]
        return cpu, wall, other

    def end_round(self) -> None:
        """The worker's round flushed its own log before its clocks stopped."""

    async def aclose(self) -> None:
        """The worker closes its gateway itself (see `close`)."""

    def close(self) -> None:
        if self.proc.poll() is None:
            self._ask("close")
            self.proc.wait(timeout=30)


def worker(base_url: str, log: str, transport: str) -> int:
    """The worker's side of `TreeSide`: one JSON line per request line."""
    sys.path.insert(0, str(HERE))
    import bench_peers  # this harness; aigw_lab comes from PYTHONPATH (the tree measured)

    import aigw_lab

    print(json.dumps({"aigw_lab": aigw_lab.__file__}), flush=True)
    side = bench_peers.Aigw(base_url, None if log == "-" else Path(log), transport=transport)
    with asyncio.Runner() as runner:
        for line in sys.stdin:
            words = line.split()
            if words[0] == "check":
                answer = {"call": side.call(), "stream": side.stream()}
            elif words[0] == "round":
                answer = {"round": bench_peers.run_round(side, words[1], int(words[2]), runner)}
            else:
                runner.run(side.aclose())
                side.close()
                print(json.dumps({"closed": True}), flush=True)
                return 0
            print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker(*sys.argv[1:4]))


def print_trees(data: dict[str, dict[str, list[float]]], litellm_added: float | None) -> None:
    """The ``--baseline-tree`` lines of a mode's report: LiteLLM's added CPU over each tree's
    (log on; ``litellm_added`` None: LiteLLM was not run), and each tree's added CPU (log on,
    log off) minus the baseline tree's in the same round: median [min, max] over rounds."""
    import statistics  # lazy: only the parent reports

    for label in ("base", "this", "aigw"):
        on = f"{label} log on"
        if on not in data:
            continue
        added = statistics.median(data[on]["added"])
        parts = []
        if litellm_added is not None:
            parts.append(
                f"litellm added / its added {litellm_added / added:.0f}x"
                if added > 0
                else "litellm added / its added inf"
            )
        if label != "base":
            for state in ("on", "off"):
                mine, base = (
                    data[f"{label} log {state}"]["added"],
                    data[f"base log {state}"]["added"],
                )
                diffs = sorted(m - b for m, b in zip(mine, base, strict=True))
                parts.append(
                    f"log {state} added minus base's: {statistics.median(diffs):+.1f} us"
                    f" [{diffs[0]:+.1f}, {diffs[-1]:+.1f}]"
                )
        if parts:
            print(f"  {on}: " + "; ".join(parts))
