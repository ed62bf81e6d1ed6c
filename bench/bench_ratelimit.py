"""What the rate limiter costs per call in each call mode: an earlier tree against this one,
in the same run.

    git archive <rev> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_ratelimit.py --old-tree /tmp/old [--rounds R] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: the noise floor). Each
round every worker runs every workload once, the workers in a new random order each round;
the figures are medians over rounds of the per-call wall time and process CPU time.

Workloads (an in-process `FunctionProvider`, no log, so the limiter is a large share):

* ``bare <mode>``: no middleware, in chat, achat, stream and astream;
* ``limiter <mode>``: one rule keyed by tenant and model with a request and a token limit
  far from reached (estimate, claim, settle; streams are metered);
* ``alone <mode>``: the limiter's own hook called directly with a next stage that answers
  at once (no gateway, no provider; 10x the calls): its cost without the gateway's noise;
* ``queued threads``: 4 threads share a limit of 300 requests a second, 600 calls a block:
  half of them wait in the queue and are woken as capacity returns (the wake-up path).

Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

MODES = ("chat", "achat", "stream", "astream")
WORKLOADS = (
    *(f"bare {m}" for m in MODES),
    *(f"limiter {m}" for m in MODES),
    "alone chat",
    "alone achat",
    "queued threads",
)
QUEUED_CALLS = 600


def _worker() -> None:
    import warnings

    warnings.simplefilter("ignore")  # the fake provider has no price: not what is measured
    from aigw_lab import Gateway, RateLimiter, RateLimitRule
    from aigw_lab.testing.fakes import FunctionProvider
    from aigw_lab.types import ChatResponse, Usage

    def answer(request: object) -> ChatResponse:
        return ChatResponse(
            text="Paris is the capital.",
            finish_reason="stop",
            usage=Usage(input_tokens=12, output_tokens=6),
            provider="f",
            model="m",
        )

    def gateway(*middleware: object) -> Gateway:
        return Gateway([FunctionProvider(answer, "f", models=("m",))], middleware=middleware)

    rule = RateLimitRule(key=("tenant", "model"), requests_per_second=1e9, tokens_per_second=1e12)
    gateways = {"bare": gateway(), "limiter": gateway(RateLimiter([rule]))}

    def blocks(gw: Gateway) -> dict[str, object]:
        def chat(n: int) -> None:
            for _ in range(n):
                gw.chat("f/m", "What is the capital of France?", tenant="t1", max_tokens=16)

        async def achat_all(n: int) -> None:
            for _ in range(n):
                await gw.achat("f/m", "What is the capital of France?", tenant="t1", max_tokens=16)

        def stream(n: int) -> None:
            for _ in range(n):
                for _ in gw.stream("f/m", "What is the capital of France?", tenant="t1"):
                    pass

        async def astream_all(n: int) -> None:
            for _ in range(n):
                async for _ in gw.astream("f/m", "What is the capital of France?", tenant="t1"):
                    pass

        return {
            "chat": chat,
            "achat": lambda n: asyncio.run(achat_all(n)),
            "stream": stream,
            "astream": lambda n: asyncio.run(astream_all(n)),
        }

    runs = {f"{g} {m}": f for g, gw in gateways.items() for m, f in blocks(gw).items()}

    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.types import ChatRequest

    alone = RateLimiter([rule])
    answered = answer(None)
    request = ChatRequest.create("m", "What is the capital of France?", tenant="t1", max_tokens=16)

    def context() -> CallContext:
        ctx = CallContext(
            request, "f", "m", "trace", stream=False, started=0.0, started_wall=0.0, gateway=None
        )
        ctx.attempt = 1
        return ctx

    def reply(ctx: CallContext) -> ChatResponse:
        return answered

    async def areply(ctx: CallContext) -> ChatResponse:
        return answered

    def alone_chat(n: int) -> None:
        handle = alone.handle
        for _ in range(n):
            handle(context(), reply)

    async def alone_achat_all(n: int) -> None:
        ahandle = alone.ahandle
        for _ in range(n):
            await ahandle(context(), areply)

    runs["alone chat"] = alone_chat
    runs["alone achat"] = lambda n: asyncio.run(alone_achat_all(n))

    def queued(_: int) -> None:
        limiter = RateLimiter([{"requests_per_second": 300}], timeout=None)
        gw = gateway(limiter)
        threads = [
            threading.Thread(
                target=lambda: [gw.chat("f/m", "hi") for _ in range(QUEUED_CALLS // 4)]
            )
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        out: dict[str, list[float]] = {}
        for name in WORKLOADS:
            run = queued if name == "queued threads" else runs[name]
            calls = QUEUED_CALLS if name == "queued threads" else n
            if name.startswith("alone"):
                calls = 10 * n
            wall, cpu = time.perf_counter(), time.process_time()
            run(calls)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[name] = [wall / calls * 1e6, cpu / calls * 1e6]
        print(json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--calls", type=int, default=1_000, help="calls per block (1,000)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    sides = old_vs_new.sides(parser, args.old_tree)
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        WORKLOADS,
        rounds=args.rounds,
        line=str(args.calls),
        warm_up=str(args.calls // 10),
        seed=args.seed,
    )

    med = {
        name: {
            w: [statistics.median(v[i] for v in results[name][w]) for i in (0, 1)]
            for w in WORKLOADS
        }
        for name in sides
    }
    print(
        f"bench_ratelimit: {args.rounds} rounds, {args.calls:,} calls per block; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'workload':<16} {'old µs':>8} {'new µs':>8} {'new/old':>8} {'again/new':>10}"
        f"   {'old CPU':>8} {'new CPU':>8} {'new/old':>8} {'again/new':>10}"
    )
    for w in WORKLOADS:
        old, new, again = med["old"][w], med["new"][w], med["new, again"][w]
        print(
            f"{w:<16} {old[0]:8.2f} {new[0]:8.2f} {new[0] / old[0]:8.3f} "
            f"{again[0] / new[0]:10.3f}   {old[1]:8.2f} {new[1]:8.2f} "
            f"{new[1] / old[1]:8.3f} {again[1] / new[1]:10.3f}"
        )
    print("the limiter's own cost (limiter - bare, µs CPU per call):")
    for m in MODES:
        cost = {name: med[name][f"limiter {m}"][1] - med[name][f"bare {m}"][1] for name in sides}
        print(
            f"  {m:<8} old {cost['old']:7.2f}  new {cost['new']:7.2f}  "
            f"new, again {cost['new, again']:7.2f}"
        )
    print(
        "new/old: this tree over the old one; again/new: two identical copies of this tree "
        "(the noise floor). Medians over rounds."
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
