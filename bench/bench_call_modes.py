"""What a gateway call costs in each call mode and primitive stack: an earlier tree against
this one, in the same run (the guard of issue 11 §1's refactor into sans-IO primitives).

    git archive <rev> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_call_modes.py --old-tree /tmp/old [--rounds R] [--calls N]
        [--paced-calls N] [--rate R] [--modes chat,astream] [--stacks none,full]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: how far two identical
sides drift apart on this machine, the noise floor). Each round every worker runs every
workload once, the workers in a new random order each round; the figures are medians over
rounds of the per-call wall and CPU time (``process_time``: every thread of the worker,
the call log's writer included).

A workload is a call mode (``chat``, ``achat``, ``stream``, ``astream``: the stream modes
read every text delta) x a primitive stack, at one pace:

* stacks: ``none``; ``budget`` (one gateway-wide limit); ``ratelimit`` (requests and tokens
  per minute, wait mode, never empty); ``cache-hit`` (an exact cache answering every call)
  and ``cache-miss`` (every prompt new, so each call is looked up, sent and stored);
  ``retry`` (retries with a fallback and a health tracker, never needed); ``split`` (a
  weighted split policy over two models); ``full`` (budget, rate limit, exact cache missing,
  the split, retry: the documented order);
* paces: ``flat`` (calls back to back; per-call wall = block wall / calls) and ``paced``
  (one call every 1/``--rate`` s; per-call wall = the median call's own duration).

Every gateway writes a DuckDB call log, flushed at the end of each block (its cost is in
the CPU figure), and calls an in-process fake OpenAI server (``httpx.MockTransport``, JSON
for plain calls and Server-Sent Events for streams), so the upstream costs the same on
every side. Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

MODES = ("chat", "achat", "stream", "astream")
STACKS = ("none", "budget", "ratelimit", "cache-hit", "cache-miss", "retry", "split", "full")
PACES = ("flat", "paced")
MODEL = "gpt-4o-mini"
TEXT = "Paris is the capital of France."


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _bodies() -> tuple[bytes, bytes]:
    answer = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 27, "completion_tokens": 8, "total_tokens": 35},
    }
    events = []
    for word in TEXT.split(" "):
        delta = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
        events.append(f"data: {json.dumps(delta)}\n\n")
    end = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 27, "completion_tokens": 8, "total_tokens": 35},
    }
    events.append(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n")
    return json.dumps(answer).encode(), "".join(events).encode()


def _worker() -> None:  # noqa: C901 - one closure per workload, kept together
    import asyncio

    import httpx

    from aigw_lab import Gateway, HttpClients, Price, ProviderSpec
    from aigw_lab.gateway import Budget, ExactCache, Limit, RateLimiter, Retry
    from aigw_lab.policy import WeightedSplit
    from aigw_lab.store import CallLog

    plain, sse = _bodies()

    def server(request: httpx.Request) -> httpx.Response:
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=plain, headers={"content-type": "application/json"})

    async def aserver(request: httpx.Request) -> httpx.Response:
        return server(request)

    def middleware(stack: str) -> tuple[list[object], list[object], str]:
        budget = Budget([Limit("gateway", 1e9, "total")], tokenizer="estimate")
        limiter = RateLimiter(
            [{"key": [], "requests_per_minute": 10**9, "tokens_per_minute": 10**12}]
        )
        retry = Retry(
            max_attempts=3, fallbacks={f"b/{MODEL}": [f"b/{MODEL}-2"]}, health={"cooldown": 30}
        )
        split = WeightedSplit("split", {f"b/{MODEL}": 1, f"b/{MODEL}-2": 1}, seed=0)
        return {
            "none": ([], [], f"b/{MODEL}"),
            "budget": ([budget], [], f"b/{MODEL}"),
            "ratelimit": ([limiter], [], f"b/{MODEL}"),
            "cache-hit": ([ExactCache()], [], f"b/{MODEL}"),
            "cache-miss": ([ExactCache()], [], f"b/{MODEL}"),
            "retry": ([retry], [], f"b/{MODEL}"),
            "split": ([], [split], "split"),
            "full": ([budget, limiter, ExactCache(), retry], [split], "split"),
        }[stack]

    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-modes-"))
    gateways: dict[str, tuple[object, object, str]] = {}
    for stack in STACKS:
        log = CallLog(tmp / f"{stack}.duckdb")
        mw, policies, address = middleware(stack)
        spec = ProviderSpec(name="b", kind="openai", base_url="http://bench.invalid/v1")
        gw = Gateway(
            [spec],
            log=log,
            clients=HttpClients(
                transport=httpx.MockTransport(server), async_transport=httpx.MockTransport(aserver)
            ),
            env={"OPENAI_API_KEY": "bench-key"},
            prices={f"b/{MODEL}": Price(0.15, 0.60), f"b/{MODEL}-2": Price(0.15, 0.60)},
            middleware=mw,
            policies=policies or None,
        )
        gateways[stack] = (gw, log, address)
    counter = iter(range(10**12))

    def prompt(stack: str) -> str:
        if stack in ("cache-hit",):
            return "What is the capital of France?"
        return f"What is the capital of France? ({next(counter)})"  # a new call each time

    def one_sync(mode: str, gw: object, address: str, text: str) -> str:
        if mode == "chat":
            return gw.chat(address, text, max_tokens=16).text  # type: ignore[attr-defined]
        return "".join(gw.stream(address, text, max_tokens=16))  # type: ignore[attr-defined]

    async def one_async(mode: str, gw: object, address: str, text: str) -> str:
        if mode == "achat":
            return (await gw.achat(address, text, max_tokens=16)).text  # type: ignore[attr-defined]
        parts = [p async for p in gw.astream(address, text, max_tokens=16)]  # type: ignore[attr-defined]
        return "".join(parts)

    def block(mode: str, stack: str, pace: str, n: int, rate: float) -> list[float]:
        gw, log, address = gateways[stack]
        durations: list[float] = []
        gap = 1.0 / rate

        def sync_block() -> None:
            start = time.perf_counter()
            for i in range(n):
                if pace == "paced":
                    delay = start + i * gap - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                t = time.perf_counter()
                assert one_sync(mode, gw, address, prompt(stack)).strip() == TEXT
                durations.append(time.perf_counter() - t)

        async def async_block() -> None:
            start = time.perf_counter()
            for i in range(n):
                if pace == "paced":
                    delay = start + i * gap - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                t = time.perf_counter()
                assert (await one_async(mode, gw, address, prompt(stack))).strip() == TEXT
                durations.append(time.perf_counter() - t)

        wall, cpu = time.perf_counter(), time.process_time()
        if mode.startswith("a"):
            asyncio.run(async_block())
        else:
            sync_block()
        log.flush()  # type: ignore[attr-defined]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per_call_wall = wall / n if pace == "flat" else statistics.median(durations)
        return [per_call_wall * 1e6, cpu / n * 1e6]

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        out = {}
        for key in request["workloads"]:
            mode, stack, pace = key.split("|")
            n = request["paced_calls"] if pace == "paced" else request["calls"]
            out[key] = block(mode, stack, pace, n, request["rate"])
        print(json.dumps(out), flush=True)
    for gw, log, _ in gateways.values():
        gw.close()  # type: ignore[attr-defined]
        log.close()  # type: ignore[attr-defined]
    shutil.rmtree(tmp, ignore_errors=True)


# --- the parent: starts the workers and interleaves them ---------------------------------


def _names(value: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(v for v in value.split(",") if v)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; use some of {known}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--calls", type=int, default=200, help="calls per flat block (200)")
    parser.add_argument("--paced-calls", type=int, default=40, help="calls per paced block (40)")
    parser.add_argument("--rate", type=float, default=200.0, help="paced calls/s (200)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated stacks")
    parser.add_argument("--paces", default=",".join(PACES), help="flat, paced or both")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    sides = old_vs_new.sides(parser, args.old_tree)
    try:
        modes = _names(args.modes, MODES, "modes")
        stacks = _names(args.stacks, STACKS, "stacks")
        paces = _names(args.paces, PACES, "paces")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    workloads = [f"{m}|{s}|{p}" for p in paces for s in stacks for m in modes]

    request = {
        "workloads": workloads,
        "calls": args.calls,
        "paced_calls": args.paced_calls,
        "rate": args.rate,
    }
    warm = dict(request, calls=max(1, args.calls // 10), paced_calls=2)
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        workloads,
        rounds=args.rounds,
        line=json.dumps(request),
        warm_up=json.dumps(warm),
        seed=args.seed,
    )

    print(
        f"bench_call_modes: {args.rounds} rounds; {args.calls} calls per flat block, "
        f"{args.paced_calls} per paced block at {args.rate:g}/s; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'mode':<8}{'stack':<11}{'pace':<7}{'old µs':>8}{'new µs':>8}{'new/old':>8}"
        f"{'again/new':>10}  {'old CPU':>8}{'new CPU':>8}{'new/old':>8}{'again/new':>10}"
    )
    # CPU ratios per workload, for the summaries by mode and by stack.
    ratios: dict[str, tuple[float, float]] = {}
    for workload in workloads:
        med = {
            name: [statistics.median(v[i] for v in results[name][workload]) for i in (0, 1)]
            for name in sides
        }
        old, new, again = med["old"], med["new"], med["new, again"]
        mode, stack, pace = workload.split("|")
        ratios[workload] = (new[1] / old[1], again[1] / new[1])
        print(
            f"{mode:<8}{stack:<11}{pace:<7}{old[0]:8.0f}{new[0]:8.0f}{new[0] / old[0]:8.3f}"
            f"{again[0] / new[0]:10.3f}  {old[1]:8.0f}{new[1]:8.0f}{new[1] / old[1]:8.3f}"
            f"{again[1] / new[1]:10.3f}"
        )
    print("CPU ratios, median over the workloads of each group [min-max]:")
    groups = [("all", "")] + [("mode", m) for m in modes] + [("stack", s) for s in stacks]
    groups += [("pace", p) for p in paces]
    for kind, value in groups:
        chosen = [r for w, r in ratios.items() if kind == "all" or value in w.split("|")[:3]]
        new_old = [r[0] for r in chosen]
        noise = [r[1] for r in chosen]
        label = "all workloads" if kind == "all" else f"{kind} {value}"
        print(
            f"  {label:<22} new/old {statistics.median(new_old):.3f} "
            f"[{min(new_old):.2f}-{max(new_old):.2f}]   again/new "
            f"{statistics.median(noise):.3f} [{min(noise):.2f}-{max(noise):.2f}]"
        )
    print(
        "new/old: this tree over the old one; again/new: two identical copies of this tree "
        "(the noise floor). Medians over rounds; CPU is the whole worker process per call."
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
