"""What the caches cost per call in each call mode: an earlier tree against this one, in the
same run (the sans-IO caches of issue 11 against the four-hook ones, for example).

    git archive <rev> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_cache_modes.py --old-tree /tmp/old [--rounds R] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: the noise floor). Each
round, every worker runs every workload once, in a new random order of workers, so they
share the machine's state; figures are medians over rounds of the per-call wall time and
process CPU time (all threads: the semantic cache's async lookups run on a worker thread).

Every workload calls a `Gateway` over an in-process `MockProvider`, without a call log, so
only the cache's path differs:

* ``exact hit, <mode>``: an `ExactCache` answering a repeated prompt, in chat, achat,
  stream and astream (a stream hit replays the answer a word at a time);
* ``exact miss, <mode>``: a fresh prompt every call (key, lookup, flight, store);
* ``semantic hit, <mode>``: a `SemanticCache` with the `HashingEmbedder` test double and
  1,000 stored entries in the partition, answering a paraphrase.

Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("chat", "achat", "stream", "astream")
WORKLOADS = tuple(
    f"{kind}, {mode}"
    for kind, modes in (
        ("exact hit", MODES),
        ("exact miss", ("chat", "achat")),
        ("semantic hit", ("chat", "achat", "astream")),
    )
    for mode in modes
)


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _worker() -> None:
    import asyncio

    from aigw_lab import ChatRequest, ChatResponse, Gateway, Price
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.gateway.cache import ExactCache
    from aigw_lab.gateway.semantic_cache import SemanticCache
    from aigw_lab.testing.fakes import MockProvider
    from aigw_lab.types import Usage

    def gateway(cache: object) -> Gateway:
        return Gateway(
            [MockProvider("mock", models=("m1",))],
            middleware=[cache],
            log=None,
            prices={"mock/m1": Price(1.0, 2.0)},
        )

    exact = gateway(ExactCache())
    semantic_cache = SemanticCache(HashingEmbedder(256), threshold=0.8, max_entries=2_000)
    reply = ChatResponse(
        text="the stored answer, a few words long",
        finish_reason="stop",
        usage=Usage(input_tokens=5, output_tokens=7),
        provider="mock",
        model="m1",
    )
    prompt = "How do I reverse a list in Python?"
    for i in range(1_000):
        text = f"Unrelated stored question number {i} about topic {i * 7}"
        semantic_cache.add(ChatRequest.create("m1", text), reply, provider="mock", model="m1")
    semantic_cache.add(ChatRequest.create("m1", prompt), reply, provider="mock", model="m1")
    semantic = gateway(semantic_cache)
    paraphrase = "how do I reverse a list in python"
    fresh = itertools.count()
    loop = asyncio.new_event_loop()

    def sync_block(gw: Gateway, mode: str, prompts: list[str]) -> None:
        if mode == "chat":
            for p in prompts:
                gw.chat("mock/m1", p)
        else:
            for p in prompts:
                for _ in gw.stream("mock/m1", p):
                    pass

    async def async_block(gw: Gateway, mode: str, prompts: list[str]) -> None:
        if mode == "achat":
            for p in prompts:
                await gw.achat("mock/m1", p)
        else:
            for p in prompts:
                async for _ in gw.astream("mock/m1", p):
                    pass

    def block(workload: str, n: int) -> None:
        kind, mode = workload.split(", ")
        gw = semantic if kind == "semantic hit" else exact
        if kind == "exact miss":
            prompts = [f"a fresh prompt {next(fresh)}" for _ in range(n)]
        else:
            prompts = [paraphrase if kind == "semantic hit" else prompt] * n
        if mode in ("chat", "stream"):
            sync_block(gw, mode, prompts)
        else:
            loop.run_until_complete(async_block(gw, mode, prompts))

    for workload in WORKLOADS:  # warm: the first exact call misses, later ones hit
        block(workload, 3)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        calls = int(line)
        out: dict[str, list[float]] = {}
        for workload in WORKLOADS:
            wall, cpu = time.perf_counter(), time.process_time()
            block(workload, calls)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[workload] = [wall / calls * 1e6, cpu / calls * 1e6]
        print(json.dumps(out), flush=True)
    loop.close()
    exact.close()
    semantic.close()


# --- the parent: starts the workers and interleaves them ---------------------------------


def _start(tree: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    assert proc.stdout is not None
    hello = json.loads(proc.stdout.readline())
    assert hello["ready"], hello
    return proc


def _round(proc: subprocess.Popen[str], calls: int) -> dict[str, list[float]]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{calls}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--calls", type=int, default=300, help="calls per block (300)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    if not (args.old_tree / "aigw_lab" / "types.py").is_file():
        parser.error(f"{args.old_tree} holds no aigw_lab/types.py")

    new_tree = HERE.parent
    sides = {"old": args.old_tree, "new": new_tree, "new, again": new_tree}
    procs = {name: _start(tree) for name, tree in sides.items()}
    rng = random.Random(args.seed)
    results: dict[str, dict[str, list[list[float]]]] = {
        name: {w: [] for w in WORKLOADS} for name in sides
    }
    try:
        for _ in range(args.rounds):
            order = list(procs)
            rng.shuffle(order)
            for name in order:
                for workload, value in _round(procs[name], args.calls).items():
                    results[name][workload].append(value)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)

    print(
        f"bench_cache_modes: {args.rounds} rounds, {args.calls:,} calls per block; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'workload':<22} {'old µs':>8} {'new µs':>8} {'new/old':>8} {'again/new':>10}"
        f"   {'old CPU':>8} {'new CPU':>8} {'new/old':>8} {'again/new':>10}"
    )
    for workload in WORKLOADS:
        med = {
            name: [statistics.median(v[i] for v in results[name][workload]) for i in (0, 1)]
            for name in sides
        }
        old, new, again = med["old"], med["new"], med["new, again"]
        print(
            f"{workload:<22} {old[0]:8.1f} {new[0]:8.1f} {new[0] / old[0]:8.3f} "
            f"{again[0] / new[0]:10.3f}   {old[1]:8.1f} {new[1]:8.1f} "
            f"{new[1] / old[1]:8.3f} {again[1] / new[1]:10.3f}"
        )
    print(
        "new/old: this tree over the old one; again/new: two identical copies of this tree "
        "(the noise floor). Medians over rounds; CPU is process time (all threads)."
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
