"""What each gateway primitive adds per call, as ratios against the bare gateway in the same run.

    python bench/bench_primitives.py [--quick] [--calls N] [--rounds R]

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

Sides run in interleaved rounds (order rotated each round); each figure is the median per
call over rounds, wall and CPU (``time.process_time``), and "CPU vs bare" is the median over
rounds of (side - bare) in the same round, with its interquartile range. The load average
is printed with the result. The
semantic cache has its own script (bench_semantic_cache.py): its cost is dominated by the
embedding model and the index size.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gateway_overhead import MESSAGES, MODEL, load, make_gateway, quartiles  # noqa: E402

from aigw_lab import Budget, ExactCache, Limit, MemoryStore, RateLimiter, RateLimitRule, Retry  # noqa: E402
from aigw_lab.policy import Rules, WeightedSplit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=None, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~1 min)")
    args = parser.parse_args(argv)
    args.calls = args.calls or (1_000 if args.quick else 2_000)
    args.rounds = args.rounds or (5 if args.quick else 9)

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

    def per_call_us(gw, prompt, address) -> tuple[float, float]:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(args.calls):
            gw.chat(address, prompt(), tenant="t1", max_tokens=16)
        return (
            (time.perf_counter() - wall0) / args.calls * 1e6,
            (time.process_time() - cpu0) / args.calls * 1e6,
        )

    for side in sides.values():  # warm-up; also fills the cache for the hit path
        per_call_us(*side)
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:  # interleaved, order rotated each round
            w, c = per_call_us(*sides[name])
            wall[name].append(w)
            cpu[name].append(c)
    base = statistics.median(cpu["bare gateway"])
    print(f"per-call cost of each primitive ({args.rounds} rounds x {args.calls} calls, log off)")
    print(f"  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {load()}")
    print(
        f"  {'side':<28} {'wall us':>8} {'CPU us':>8} {'CPU vs bare':>12} "
        f"{'IQR (paired)':>16} {'ratio':>6}"
    )
    for name in names:
        paired = [x - y for x, y in zip(cpu[name], cpu["bare gateway"], strict=True)]
        q1, q2, q3 = quartiles(paired)
        value = statistics.median(cpu[name])
        print(
            f"  {name:<28} {statistics.median(wall[name]):8.1f} {value:8.1f} {q2:+12.1f} "
            f"{f'[{q1:+.1f}, {q3:+.1f}]':>16} {value / base:6.2f}"
        )
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
