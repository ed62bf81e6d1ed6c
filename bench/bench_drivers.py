"""What the gateway's drivers cost a primitive, against a four-hook middleware that does the
same nothing, in the same run.

    python bench/bench_drivers.py [--calls N] [--rounds R]

Both sides pass a call straight through to a next stage that answers at once: a `Primitive`
whose ``admit`` says `PROCEED` (so its hooks are the drivers of gateway/_async/drive.py and
the sync code generated from it) and a plain `Middleware` (its default hooks). Sides run in
interleaved rounds, sync (``handle``) and async (``ahandle``, awaited in one event loop);
each figure is the median per-call time over rounds, wall and CPU (``process_time``).
Flat out only: the drivers do no I/O, so a paced rate would add only idle time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time

from aigw_lab.gateway.middleware import Middleware, Primitive


class _Pass(Primitive):
    """Lets every call through (its hooks are the drivers)."""


def _sync(stage: Middleware, calls: int) -> tuple[float, float]:
    def answer(ctx: object) -> int:
        return 1

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        stage.handle(None, answer)  # type: ignore[arg-type]
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


async def _async(stage: Middleware, calls: int) -> tuple[float, float]:
    async def answer(ctx: object) -> int:
        return 1

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await stage.ahandle(None, answer)  # type: ignore[arg-type]
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per block (200,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    args = parser.parse_args(argv)
    sides = {"middleware": Middleware(), "primitive": _Pass()}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loop = asyncio.new_event_loop()
    try:
        for _ in range(args.rounds):
            for name, stage in sides.items():  # interleaved: each round runs every side
                times.setdefault(("sync", name), []).append(_sync(stage, args.calls))
                times.setdefault(("async", name), []).append(
                    loop.run_until_complete(_async(stage, args.calls))
                )
    finally:
        loop.close()
    print(
        f"bench_drivers: {args.rounds} rounds, {args.calls:,} calls per block; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'mode':<6} {'side':<11} {'wall µs':>8} {'CPU µs':>8} {'CPU vs middleware':>18}")
    for mode in ("sync", "async"):
        base = statistics.median(c for _, c in times[(mode, "middleware")])
        for name in sides:
            wall = statistics.median(w for w, _ in times[(mode, name)])
            cpu = statistics.median(c for _, c in times[(mode, name)])
            print(f"{mode:<6} {name:<11} {wall:8.3f} {cpu:8.3f} {cpu - base:+17.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
