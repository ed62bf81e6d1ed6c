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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--calls", type=int, default=300, help="calls per block (300)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    sides = old_vs_new.sides(parser, args.old_tree)
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        WORKLOADS,
        rounds=args.rounds,
        line=str(args.calls),
        warm_up=None,
        seed=args.seed,
    )

    print(
        f"bench_cache_modes: {args.rounds} rounds, {args.calls:,} calls per block; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    old_vs_new.print_table(
        results, WORKLOADS, width=22, digits=1, note="CPU is process time (all threads)."
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
