"""What shared state on Redis costs a call, against the same primitives in memory.

Starts its own ``redis-server`` (Debian's package) on a free loopback port, no persistence,
and runs one gateway per side in this process (a `MockProvider` upstream: no network, so the
difference is the stores' alone). Both sides carry the same four primitives: a rate limit,
a budget, the exact cache and retry with circuit breakers; ``memory`` keeps their state in
this process, ``redis`` in the server (`aigw_lab.gateway.state`).

1. Flat out: N calls in a row per side (distinct prompts: cache misses; then one repeated
   prompt: hits), the sides interleaved round by round; wall and CPU time per call, and the
   redis/memory ratio per round (ratios survive a loaded box, absolute figures do not).
2. At a realistic rate (``--rate`` calls a second, paced): per-call latency p50/p99 per side.
3. The stores alone: microseconds per operation (bucket admit+charge, budget
   reserve+settle, cache get, circuit peek) on Redis.
4. Async at concurrency 1/16/64 (``achat``, cache misses): calls a second, CPU per call,
   p50/p99 latency and the event loop's worst stall (a ticker's longest late wake-up), per
   side and round, interleaved. With ``--before TREE`` (e.g. a checkout of main) each round
   also runs the same section in a subprocess on TREE's code: before/after in one run.

Every result line carries ``os.getloadavg()``.

    python bench/bench_shared_state.py            # about 3-4 minutes
    python bench/bench_shared_state.py --quick    # the headline figures, under 2 minutes
    python bench/bench_shared_state.py --quick --only async --before /work/main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    sys.exit("redis-server did not start")


def gateway(shared):
    """A gateway with a rate limit, a budget, the exact cache and breakers; ``shared``: a
    `SharedStores` (Redis) or None (memory)."""
    from aigw_lab import Gateway, Price
    from aigw_lab.gateway.budget import Budget, Limit
    from aigw_lab.gateway.cache import ExactCache
    from aigw_lab.gateway.health import HealthTracker
    from aigw_lab.gateway.ratelimit import RateLimiter
    from aigw_lab.gateway.reliability import Retry
    from aigw_lab.testing.fakes import MockProvider

    def store(name, *args):
        return None if shared is None else getattr(shared, name)(*args)

    health = HealthTracker(failure_threshold=5, clock=time.time, store=store("circuits"))
    middleware = [
        RateLimiter([{"requests_per_second": 1e9, "tokens_per_second": 1e12}],
                    store=store("buckets")),
        Budget([Limit("gateway", 1e9, "day")], store=store("budgets")),
        ExactCache(store("cache")) if shared is not None else ExactCache(),
        Retry(max_attempts=1, fallbacks={"mock/m1": ["mock/m2"]}, health=health),
    ]  # fmt: skip
    provider = MockProvider("mock", models=("m1", "m2"))
    prices = {"mock/m1": Price(1.0, 2.0), "mock/m2": Price(1.0, 2.0)}
    return Gateway([provider], log=None, prices=prices, middleware=middleware)


def timed(gw, prompts) -> tuple[float, float]:
    """Wall and CPU microseconds per call over ``prompts``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for prompt in prompts:
        gw.chat("mock/m1", prompt, max_tokens=16)
    n = len(prompts)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def flat_out(sides, rounds: int, calls: int) -> None:
    print(f"\n1. flat out, {calls} calls per side per round, {rounds} rounds (µs per call)")
    for kind in ("miss", "hit"):
        ratios_wall, ratios_cpu = [], []
        for r in range(rounds):
            figures = {}
            for name, gw in sides:  # interleaved: each round runs both sides back to back
                prompts = (
                    [f"{kind} {name} {r} {i}" for i in range(calls)]
                    if kind == "miss"
                    else [f"the same question {name}"] * calls
                )
                figures[name] = timed(gw, prompts)
            (mw, mc), (rw, rc) = figures["memory"], figures["redis"]
            ratios_wall.append(rw / mw)
            ratios_cpu.append(rc / mc)
            print(
                f"  {kind:4} round {r}: memory {mw:7.1f} wall {mc:7.1f} cpu | redis {rw:7.1f} "
                f"wall {rc:7.1f} cpu | ratio wall {rw / mw:4.2f} cpu {rc / mc:4.2f} | {load()}"
            )
        print(
            f"  {kind:4} redis/memory: wall median {statistics.median(ratios_wall):.2f} "
            f"[{min(ratios_wall):.2f}-{max(ratios_wall):.2f}], cpu median "
            f"{statistics.median(ratios_cpu):.2f} [{min(ratios_cpu):.2f}-{max(ratios_cpu):.2f}]"
        )


def paced(sides, rate: float, calls: int) -> None:
    print(f"\n2. paced at {rate:g} calls/s, {calls} calls per side, interleaved (µs per call)")
    latencies: dict[str, list[float]] = {name: [] for name, _ in sides}
    cpu = {name: 0.0 for name, _ in sides}
    gap = 1.0 / rate
    for i in range(calls):
        for name, gw in sides:
            start, c0 = time.perf_counter(), time.process_time()
            gw.chat("mock/m1", f"paced {name} {i}", max_tokens=16)
            latencies[name].append((time.perf_counter() - start) * 1e6)
            cpu[name] += time.process_time() - c0
            time.sleep(max(0.0, gap - (time.perf_counter() - start)))
    for name, values in latencies.items():
        values.sort()
        p50, p99 = values[len(values) // 2], values[min(len(values) - 1, int(0.99 * len(values)))]
        print(
            f"  {name:6}: p50 {p50:7.1f} p99 {p99:8.1f} wall, cpu mean "
            f"{cpu[name] / calls * 1e6:7.1f} | {load()}"
        )


def stores_alone(shared, n: int) -> None:
    from aigw_lab.gateway.budget import Limit
    from aigw_lab.gateway.budget_limits import _Account
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.gateway.ratelimit_rules import RateLimitRule, _Waiter
    from aigw_lab.types import ChatRequest, ChatResponse, Usage

    print(f"\n3. the Redis stores alone, {n} operations each (µs per operation)")
    buckets, budgets = shared.buckets(), shared.budgets()
    cache, circuits = shared.cache(), shared.circuits()
    rule = RateLimitRule(requests_per_second=1e9, tokens_per_second=1e12)
    ctx = CallContext(
        ChatRequest.create("m", "hi"), "p", "m", "t", stream=False, started=0.0,
        started_wall=0.0, gateway=None,
    )  # fmt: skip
    limit = Limit("gateway", 1e9, "day")
    budgets.open([((0, None), _Account(limit, None, time.time()))])
    usage = Usage(input_tokens=10, output_tokens=20)
    answer = ChatResponse(
        text="x" * 200, finish_reason="stop", usage=usage, provider="p", model="m"
    )
    cache.set("k", answer, 600)

    def bucket_op():
        waiter = _Waiter(ctx, 100, 16)
        buckets.arrive(waiter, [(0, (), rule)], 0.0, join=False)
        buckets.charge(waiter, 1.0, 90.0, 0.0)

    def budget_op():
        budgets.settle(budgets.reserve([(0, None)], 0.001, time.time()), 0.001, time.time())

    for name, op in (
        ("bucket arrive+charge", bucket_op),
        ("budget reserve+settle", budget_op),
        ("cache get (hit)", lambda: cache.get("k")),
        ("circuit peek", lambda: circuits.peek("p/m")),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            op()
        print(
            f"  {name:22}: {(time.perf_counter() - wall) / n * 1e6:7.1f} wall "
            f"{(time.process_time() - cpu) / n * 1e6:7.1f} cpu | {load()}"
        )


TICK = 0.01  # the stall ticker's period (seconds)


async def _async_round(gw, concurrency: int, calls: int, tag: str) -> dict[str, float]:
    """``calls`` distinct prompts through ``gw.achat`` by ``concurrency`` tasks, with a
    ticker measuring how late the loop wakes it (a blocked loop wakes it late)."""
    latencies: list[float] = []
    stall = 0.0
    done = False

    async def ticker() -> None:
        # Every 10 ms: often enough to see a blocked loop, rarely enough that its own CPU
        # (a wake-up every tick while the loop waits for Redis) stays out of the figures.
        nonlocal stall
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            stall = max(stall, time.perf_counter() - start - TICK)

    async def worker(w: int) -> None:
        for i in range(w, calls, concurrency):
            start = time.perf_counter()
            await gw.achat("mock/m1", f"async {tag} {i}", max_tokens=16)
            latencies.append(time.perf_counter() - start)

    tick = asyncio.ensure_future(ticker())
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = True
    await tick
    latencies.sort()
    return {
        "rate": calls / wall,
        "cpu_us": cpu / calls * 1e6,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3,
        "stall_ms": stall * 1e3,
    }


def async_side(url: str, side: str, concurrency: int, calls: int, tag: str) -> dict[str, float]:
    """One async round of one side (``memory`` or ``redis``) on a fresh loop."""
    from aigw_lab.gateway.state import StateSettings

    shared = None
    if side == "redis":
        shared = StateSettings.from_table(
            {"backend": "redis", "url_env": "U", "prefix": f"a{tag}:", "timeout": 10},
            {"U": url},
        ).stores()
    gw = gateway(shared)

    async def run() -> dict[str, float]:
        await _async_round(gw, concurrency, min(calls, 50), f"warm {tag}")
        return await _async_round(gw, concurrency, calls, tag)

    try:
        return asyncio.run(run())
    finally:
        gw.close()
        if shared is not None:
            shared.state.close()


def _before_side(tree: str, url: str, side: str, concurrency: int, calls: int, tag: str):
    """The same round in a subprocess importing aigw_lab from ``tree`` (the code before)."""
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, __file__, "--one-async", json.dumps([url, side, concurrency, calls, tag])],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def async_concurrency(url, levels, rounds: int, calls: int, before: str | None) -> None:
    print(f"\n4. async (achat, misses), {calls} calls per side per round, {rounds} rounds")
    print("   rate calls/s | cpu µs/call | p50/p99 ms | worst loop stall ms")
    for level in levels:
        rows: dict[str, list[dict[str, float]]] = {}
        for r in range(rounds):
            names = ["memory", "redis"] + (["redis-before"] if before else [])
            for name in names:  # interleaved within each round
                tag = f"{level}-{r}-{name}"
                if name == "redis-before":
                    got = _before_side(before, url, "redis", level, calls, tag)
                else:
                    got = async_side(url, name, level, calls, tag)
                rows.setdefault(name, []).append(got)
                print(
                    f"  c={level:<3} round {r} {name:12}: {got['rate']:7.0f}/s "
                    f"{got['cpu_us']:7.0f} cpu {got['p50_ms']:7.2f}/{got['p99_ms']:7.2f} ms "
                    f"stall {got['stall_ms']:7.2f} | {load()}"
                )
        for name, got in rows.items():
            med = {k: statistics.median(g[k] for g in got) for k in got[0]}
            spread = (min(g["rate"] for g in got), max(g["rate"] for g in got))
            print(
                f"  c={level:<3} {name:12} median: {med['rate']:7.0f}/s "
                f"[{spread[0]:.0f}-{spread[1]:.0f}] {med['cpu_us']:7.0f} cpu µs "
                f"p50 {med['p50_ms']:.2f} p99 {med['p99_ms']:.2f} ms "
                f"stall {med['stall_ms']:.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the headline figures, < 2 min")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--only", choices=("sync", "async"), help="run one half only")
    parser.add_argument("--concurrency", default="1,16,64", help="async levels")
    parser.add_argument("--before", help="a source tree to run section 4 on too (before)")
    parser.add_argument("--one-async", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_async:  # one round for --before, in the before tree's interpreter path
        print(json.dumps(async_side(*json.loads(args.one_async))))
        return
    levels = [int(x) for x in args.concurrency.split(",")]
    async_rounds, async_calls = 5, 1000
    rounds, calls, paced_calls, ops = args.rounds, args.calls, 500, 5000
    if args.quick:
        rounds, calls, paced_calls, ops = 5, 400, 200, 2000
        async_rounds, async_calls = 3, 400

    from aigw_lab.gateway.state import StateSettings

    print(f"bench_shared_state: {time.strftime('%Y-%m-%d %H:%M')} | {os.cpu_count()} cores | "
          f"{load()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_redis(Path(folder))
        try:
            settings = StateSettings.from_table(
                # A long timeout: on a loaded box Redis may not run for a second, and a store
                # failing open would skip its round trips (any outage is logged to stderr).
                {
                    "backend": "redis",
                    "url_env": "BENCH_REDIS_URL",
                    "prefix": "bench:",
                    "timeout": 10,
                },
                {"BENCH_REDIS_URL": url},
            )
            shared = settings.stores()
            if args.only != "async":
                sides = [("memory", gateway(None)), ("redis", gateway(shared))]
                for _, gw in sides:  # warm up both
                    timed(gw, [f"warm {i}" for i in range(100)])
                flat_out(sides, rounds, calls)
                paced(sides, args.rate, paced_calls)
                stores_alone(shared, ops)
            if args.only != "sync":
                async_concurrency(url, levels, async_rounds, async_calls, args.before)
            shared.state.close()
        finally:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
