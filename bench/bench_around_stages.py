"""What the "around" stages (retry/fallback, the policy route stage) cost per call in every
call mode: an earlier tree against this one, in the same run.

    git archive main aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_around_stages.py --old-tree /tmp/old [--rounds R] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: how far two identical
sides drift apart on this machine, the noise floor). Each round every worker runs every
workload once, in a new random order of workers per round; figures are medians over rounds
of the per-call wall time and CPU time (``process_time``) in microseconds.

Every workload calls an in-process `FunctionProvider` with logging off, so the figures are
the pipeline's own cost (the stages written once and generated, and the drivers' calls):

* ``retry <mode>``: `Retry` with fallbacks and health, on its success path;
* ``retry+fallback <mode>``: the first target fails (a quota), the fallback answers;
* ``policy <mode>``: a one-target weighted split addressed by name;
* ``chain <mode>``: a fallback-chain policy whose first target fails;
* ``cascade chat``/``cascade stream``: a two-step cascade that escalates.

Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

HERE = Path(__file__).resolve().parent
MODES = ("chat", "achat", "stream", "astream")
WORKLOADS = (
    *(f"retry {m}" for m in MODES),
    *(f"retry+fallback {m}" for m in MODES),
    *(f"policy {m}" for m in MODES),
    *(f"chain {m}" for m in MODES),
    "cascade chat",
    "cascade stream",
)


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _worker() -> None:
    import asyncio

    from aigw_lab import Gateway, Price, Retry
    from aigw_lab.errors import QuotaExceededError
    from aigw_lab.policy import Cascade, CascadeStep, FallbackChain, WeightedSplit
    from aigw_lab.testing.fakes import FunctionProvider

    def answer(request):
        return "the answer is here"

    def refuse(request):
        raise QuotaExceededError("no credit", provider="down")

    def reject(request, response):
        return 0.0  # the cascade always escalates

    prices = {f"{n}/m": Price(1.0, 2.0) for n in ("up", "up2", "down")}

    def gateway(middleware=(), policies=()):
        return Gateway(
            [
                FunctionProvider(answer, "up"),
                FunctionProvider(answer, "up2"),
                FunctionProvider(refuse, "down"),
            ],
            log=None,
            prices=prices,
            middleware=list(middleware),
            policies=list(policies),
        )

    def retry(fallbacks):
        return Retry(max_attempts=3, fallbacks=fallbacks, health={}, sleep=lambda s: None)

    gateways = {
        "retry": (gateway([retry({"default": []})]), "up/m"),
        "retry+fallback": (gateway([retry({"down/m": ["up/m"]})]), "down/m"),
        "policy": (gateway(policies=[WeightedSplit("split", {"up/m": 1})]), "split"),
        "chain": (gateway(policies=[FallbackChain("chain", ["down/m", "up/m"])]), "chain"),
        "cascade": (
            gateway(
                policies=[Cascade("c", [CascadeStep("up/m", reject, 0.5), CascadeStep("up2/m")])]
            ),
            "c",
        ),
    }

    loop = asyncio.new_event_loop()

    def block(workload: str, calls: int) -> list[float]:
        name, mode = workload.rsplit(" ", 1)
        gw, address = gateways[name]
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        if mode == "chat":
            for _ in range(calls):
                gw.chat(address, "hi")
        elif mode == "stream":
            for _ in range(calls):
                for _text in gw.stream(address, "hi"):
                    pass
        elif mode == "achat":

            async def run() -> None:
                for _ in range(calls):
                    await gw.achat(address, "hi")

            loop.run_until_complete(run())
        else:

            async def run() -> None:
                for _ in range(calls):
                    async for _text in gw.astream(address, "hi"):
                        pass

            loop.run_until_complete(run())
        wall = (time.perf_counter() - start_wall) / calls * 1e6
        cpu = (time.process_time() - start_cpu) / calls * 1e6
        return [wall, cpu]

    import aigw_lab

    print(json.dumps({"ready": True, "aigw_lab": aigw_lab.__file__}), flush=True)
    for line in sys.stdin:
        calls = int(line)
        print(json.dumps({w: block(w, calls) for w in WORKLOADS}), flush=True)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


# --- the parent: starts the workers and interleaves them ---------------------------------


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--worker"]:
        _worker()
        return 0
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
        warm_up=str(max(1, args.calls // 10)),
        seed=args.seed,
    )

    print(
        f"bench_around_stages: {args.rounds} rounds, {args.calls:,} calls per block; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    old_vs_new.print_table(results, WORKLOADS, width=22, digits=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
