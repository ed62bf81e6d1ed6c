"""What shadow traffic costs the caller: per live call, a gateway without a shadow against
the same gateway with one, in the same run (interleaved rounds).

    python bench/bench_shadow.py [--calls N] [--rounds R]

Sides: ``none`` (no shadow; ``none_b``, a second one, shows the noise floor), ``draw`` (a
`Shadow` whose share is so small that it only draws: the offer's fixed cost) and ``all``
(share 1.0: every call is handed to the shadow's threads, ``max_in_flight`` 4; a call
offered while 4 run is dropped, and the table says how many were sent). Both targets are
in-process test providers that answer at once, with no call log, so the figures are the
gateway's own work. Each figure is the median over rounds of the per-call time of a block
of calls: wall time and the *calling thread's* CPU time (``time.thread_time``: the
shadow's worker threads are not the caller's cost, but they do compete for the GIL, which
shows in wall time). Modes: ``chat``, ``achat`` (awaited in one event loop), ``stream``
(read to its end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import time

from aigw_lab import Gateway, Price
from aigw_lab.gateway import Shadow
from aigw_lab.testing.fakes import FunctionProvider

PRICES = {"live/m": Price(1.0, 2.0), "cand/m": Price(3.0, 6.0)}
SHARES = {"none": None, "none_b": None, "draw": 1e-12, "all": 1.0}


def _gateway(share: float | None) -> Gateway:
    shadow = None
    if share is not None:
        shadow = Shadow("cand/m", share=share, budget_usd=1e9, rng=random.Random(0))
    providers = [
        FunctionProvider(lambda r: "live answer", "live"),
        FunctionProvider(lambda r: "candidate answer", "cand"),
    ]
    return Gateway(providers, log=None, prices=PRICES, shadow=shadow)


def _block(gw: Gateway, mode: str, calls: int, loop: asyncio.AbstractEventLoop) -> tuple:
    wall, cpu = time.perf_counter(), time.thread_time()
    if mode == "chat":
        for _ in range(calls):
            gw.chat("live/m", "hello")
    elif mode == "stream":
        for _ in range(calls):
            for _text in gw.stream("live/m", "hello"):
                pass
    else:

        async def run() -> None:
            for _ in range(calls):
                await gw.achat("live/m", "hello")

        loop.run_until_complete(run())
    return (time.perf_counter() - wall) / calls * 1e6, (time.thread_time() - cpu) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per block (2,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    args = parser.parse_args(argv)
    gateways = {name: _gateway(share) for name, share in SHARES.items()}
    modes = ("chat", "achat", "stream")
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loop = asyncio.new_event_loop()
    try:
        for _ in range(args.rounds):
            for mode in modes:
                for name, gw in gateways.items():  # interleaved: each round runs every side
                    times.setdefault((mode, name), []).append(_block(gw, mode, args.calls, loop))
    finally:
        loop.close()
        for gw in gateways.values():
            gw.close()
    print(
        f"bench_shadow: {args.rounds} rounds, {args.calls:,} calls per block; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    stats = gateways["all"].shadow.stats()  # type: ignore[union-attr]
    print(
        f"side 'all': {stats.sent:,} shadow calls sent, {stats.dropped_in_flight:,} dropped "
        f"at max_in_flight of {stats.sampled:,} sampled"
    )
    print(
        f"{'mode':<7} {'side':<6} {'wall µs':>9} {'caller CPU µs':>14} "
        f"{'wall / none':>12} {'CPU / none':>11}"
    )
    for mode in modes:
        base_wall = statistics.median(w for w, _ in times[(mode, "none")])
        base_cpu = statistics.median(c for _, c in times[(mode, "none")])
        for name in gateways:
            wall = statistics.median(w for w, _ in times[(mode, name)])
            cpu = statistics.median(c for _, c in times[(mode, name)])
            print(
                f"{mode:<7} {name:<6} {wall:9.1f} {cpu:14.1f} {wall / base_wall:12.3f} "
                f"{cpu / base_cpu:11.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
