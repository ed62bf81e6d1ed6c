"""What each gateway primitive adds per call, as ratios against the bare gateway in the same run.

    python bench/bench_primitives.py [--calls N] [--rounds R]

Every side calls the same in-process fake OpenAI server (see bench_gateway_overhead.py) with
logging off, so only the middleware differs:

* ``bare gateway``: no middleware (the baseline);
* ``exact cache, hit path``: every call after the first is a hit in a memory store (the
  provider is not called at all);
* ``exact cache, miss path``: a fresh prompt every call (key, lookup, store);
* ``rate limiter``: one rule keyed by tenant and model, far from its limit;
* ``budget``: one tenant limit, far from exhausted (estimate, reserve, settle);
* ``retry``: the success path of retries with fallbacks and health tracking;
* ``routing policy``: the call addressed to a policy (a one-target weighted split, and a
  rules policy on a tag) that routes it to the same model: the route stage's own cost.

Sides run in interleaved rounds; each figure is the median per-call time over rounds. The
semantic cache has its own script (bench_semantic_cache.py): its cost is dominated by the
embedding model and the index size.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gateway_overhead import MESSAGES, MODEL, make_gateway  # noqa: E402

from aigw_lab import Budget, ExactCache, Limit, MemoryStore, RateLimiter, RateLimitRule, Retry  # noqa: E402
from aigw_lab.policy import Rules, WeightedSplit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)

    def gateway(*middleware: object, policies: tuple[object, ...] = ()):
        return make_gateway(None, middleware, policies)

    direct = f"bench/{MODEL}"
    split = WeightedSplit("split", {direct: 1})
    rules = Rules("rules", [({"tags": {"team": "x"}}, direct)], default=direct)

    fresh = itertools.count()
    # side -> (gateway, prompt maker, the address called)
    sides = {
        "bare gateway": (gateway(), lambda: MESSAGES, direct),
        "exact cache, hit path": (
            gateway(ExactCache(store=MemoryStore())),
            lambda: MESSAGES,
            direct,
        ),
        "exact cache, miss path": (
            gateway(ExactCache(store=MemoryStore(max_bytes=8 * 2**20))),
            lambda: f"question number {next(fresh)}",
            direct,
        ),
        "rate limiter": (
            gateway(RateLimiter([RateLimitRule(key=("tenant", "model"), requests_per_second=1e9)])),
            lambda: MESSAGES,
            direct,
        ),
        "budget": (gateway(Budget([Limit("tenant", 1e9, "month")])), lambda: MESSAGES, direct),
        "retry + fallback + health": (
            gateway(Retry(max_attempts=3, fallbacks={"default": []}, health={})),
            lambda: MESSAGES,
            direct,
        ),
        "policy: weighted split": (gateway(policies=(split,)), lambda: MESSAGES, "split"),
        "policy: rules on a tag": (gateway(policies=(rules,)), lambda: MESSAGES, "rules"),
    }

    def per_call_us(gw, prompt, address) -> float:
        start = time.perf_counter()
        for _ in range(args.calls):
            gw.chat(address, prompt(), tenant="t1", max_tokens=16)
        return (time.perf_counter() - start) / args.calls * 1e6

    for side in sides.values():  # warm-up; also fills the cache for the hit path
        per_call_us(*side)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            samples[name].append(per_call_us(*side))
    base = statistics.median(samples["bare gateway"])
    print(f"per-call cost of each primitive ({args.rounds} rounds x {args.calls} calls, log off)")
    print(f"  {'side':<28} {'us/call':>9} {'vs bare':>9} {'ratio':>7}")
    for name, values in samples.items():
        value = statistics.median(values)
        print(f"  {name:<28} {value:9.1f} {value - base:+9.1f} {value / base:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
