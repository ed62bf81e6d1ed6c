"""The upstream transports side by side: httpx's default pool, the same pool split into 8
shards (``pool_shards = 8``) and the lean transport (``transport = "lean"``), over a real
loopback socket.

    python bench/bench_upstream_transport.py [--quick] [--calls N] [--rounds R]
                                             [--modes sync1,async64,paced300,...] [--gateway]

The fake OpenAI server is bench_peers.py's (its own process: keep-alive, Content-Length, a
fixed Chat Completions body), so its CPU is not counted as the client's. Every side posts
the same JSON body through an ``httpx.Client``/``AsyncClient`` and parses the answer; only
the transport under the client differs. With ``--gateway`` three more sides call through
``Gateway.chat``/``achat`` (log off) with each transport, so the gateway's share is seen.

Modes: ``syncN`` (N threads sharing one client, flat out), ``asyncN`` (one event loop, N
calls in flight, flat out), ``pacedR`` (one event loop, one call started every 1/R s: a
realistic call rate, where a pool's fixed per-call costs are not amortised). A paced side
that falls behind the rate piles calls up; those that time out are counted as failed.

Sides run in interleaved rounds, the order rotated each round. Per round, the client
process's CPU (``time.process_time``, every thread) and wall are taken per call; the
figures are medians over rounds with the interquartile range, and each side's CPU is also
given as a ratio to httpx's default pool in the same round (median over rounds). The load
average is printed with every mode. Exits 0; nothing is enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_peers  # noqa: E402
import httpx  # noqa: E402

from aigw_lab.providers.lean import LeanTransport  # noqa: E402
from aigw_lab.providers.lean_async import AsyncLeanTransport  # noqa: E402
from aigw_lab.providers.sharded import AsyncShardedTransport, ShardedTransport  # noqa: E402

LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=100)
BODY = {"model": bench_peers.MODEL, "messages": bench_peers.MESSAGES, "max_tokens": 16}
HEADERS = {"authorization": "Bearer bench-key"}
BASELINE = "httpx pool"
QUICK_MODES = ("sync1", "sync16", "async1", "async16", "async64", "paced300")
FULL_MODES = ("sync1", "sync16", "sync64", "async1", "async16", "async64", "paced300")


class Side:
    """One way to call the fake: a sync call (thread-safe) and an async one. ``failed``
    counts paced calls that raised (a pool that falls behind the rate times out)."""

    name: str
    failed: int = 0

    def call(self) -> str:
        raise NotImplementedError

    async def acall(self) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass


class Raw(Side):
    """An httpx client over one transport kind: ``httpx``, ``sharded8`` or ``lean``."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = f"{url}/chat/completions"
        self.name = {"httpx": BASELINE, "sharded8": "sharded x8", "lean": "lean"}[kind]
        if kind == "httpx":
            self.client = httpx.Client(limits=LIMITS)
            self.aclient = httpx.AsyncClient(limits=LIMITS)
        elif kind == "sharded8":
            self.client = httpx.Client(transport=ShardedTransport.build(LIMITS, 8))
            self.aclient = httpx.AsyncClient(transport=AsyncShardedTransport.build(LIMITS, 8))
        else:
            self.client = httpx.Client(transport=LeanTransport(LIMITS))
            self.aclient = httpx.AsyncClient(transport=AsyncLeanTransport(LIMITS))

    def call(self) -> str:
        answer = self.client.post(self.url, json=BODY, headers=HEADERS).json()
        return str(answer["choices"][0]["message"]["content"])

    async def acall(self) -> str:
        answer = (await self.aclient.post(self.url, json=BODY, headers=HEADERS)).json()
        return str(answer["choices"][0]["message"]["content"])

    async def aclose(self) -> None:
        await self.aclient.aclose()

    def close(self) -> None:
        self.client.close()


class Through(Side):
    """`Gateway.chat`/`achat` (log off) over one transport kind."""

    def __init__(self, url: str, kind: str) -> None:
        from aigw_lab import Gateway, Price, ProviderSpec  # lazy: only --gateway
        from aigw_lab.providers.base import PoolSettings  # lazy: as above

        pool = {"httpx": PoolSettings(), "sharded8": PoolSettings(shards=8)}.get(
            kind, PoolSettings(transport="lean")
        )
        self.name = f"gw {kind}"
        spec = ProviderSpec(name="fake", kind="openai", base_url=url, api_key_env="FAKE_KEY")
        self.gateway = Gateway(
            [spec],
            log=None,
            env={"FAKE_KEY": "bench-key"},
            prices={f"fake/{bench_peers.MODEL}": Price(0.15, 0.60)},
            pool=pool,
        )
        self.address = f"fake/{bench_peers.MODEL}"

    def call(self) -> str:
        return self.gateway.chat(self.address, bench_peers.MESSAGES, max_tokens=16).text

    async def acall(self) -> str:
        response = await self.gateway.achat(self.address, bench_peers.MESSAGES, max_tokens=16)
        return response.text

    async def aclose(self) -> None:
        await self.gateway.aclose()

    def close(self) -> None:
        self.gateway.close()


def run_round(side: Side, mode: str, calls: int, runner: asyncio.Runner) -> tuple[float, float]:
    """(CPU, wall) in us per call for ``calls`` calls of ``side`` in ``mode``."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if mode.startswith("sync"):
        _threads(side.call, int(mode.removeprefix("sync")), calls)
    elif mode.startswith("paced"):
        runner.run(_paced(side, int(mode.removeprefix("paced")), calls))
    else:
        runner.run(_concurrent(side, int(mode.removeprefix("async")), calls))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / calls * 1e6, wall / calls * 1e6


def _threads(call: Callable[[], str], n: int, calls: int) -> None:
    if n == 1:
        for _ in range(calls):
            call()
        return
    left = [calls]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            try:
                call()
            except BaseException as exc:  # re-raised below, in the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


async def _concurrent(side: Side, n: int, calls: int) -> None:
    left = [calls]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await side.acall()

    await asyncio.gather(*(worker() for _ in range(n)))


async def _paced(side: Side, rate: int, calls: int) -> None:
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    due = loop.time()
    tasks = []
    for _ in range(calls):
        pause = due - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(side.acall()))
        due += interval
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    side.failed += sum(isinstance(outcome, Exception) for outcome in outcomes)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def measure(sides: list[Side], mode: str, calls: int, rounds: int, runner: asyncio.Runner) -> None:
    for side in sides:  # every side must get the fake's answer, in both modes
        answers = {side.call(), runner.run(side.acall())}
        if answers != {"Paris."}:
            raise SystemExit(f"{side.name} got {answers!r} from the fake, not 'Paris.'")
    for side in sides:  # warm-up: connections, imports
        run_round(side, mode if not mode.startswith("paced") else "async16", 50, runner)
        side.failed = 0
    out: dict[str, dict[str, list[float]]] = {
        s.name: {"cpu": [], "wall": [], "ratio": []} for s in sides
    }
    for r in range(rounds):
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        this: dict[str, float] = {}
        for side in order:
            cpu, wall = run_round(side, mode, calls, runner)
            out[side.name]["cpu"].append(cpu)
            out[side.name]["wall"].append(wall)
            this[side.name] = cpu
        for side in sides:
            out[side.name]["ratio"].append(this[side.name] / this[BASELINE])
    print(f"\n## {mode}: {calls} calls x {rounds} rounds ({load()})")
    print(
        "| side | CPU us/call [IQR] | wall us/call [IQR] | calls/s | CPU vs httpx pool | failed |"
    )
    print("|---|---|---|---|---|---|")
    for side in sides:
        cq = quartiles(out[side.name]["cpu"])
        wq = quartiles(out[side.name]["wall"])
        rq = quartiles(out[side.name]["ratio"])
        print(
            f"| {side.name} | {cq[1]:.0f} [{cq[0]:.0f}-{cq[2]:.0f}] | {wq[1]:.0f} "
            f"[{wq[0]:.0f}-{wq[2]:.0f}] | {1e6 / wq[1]:.0f} | {rq[1]:.2f}x "
            f"[{rq[0]:.2f}-{rq[2]:.2f}] | {side.failed} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="the headline modes, raw clients, in ~2 min"
    )
    parser.add_argument("--calls", type=int, default=None, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--modes", default=None, help="comma-separated modes")
    parser.add_argument("--gateway", action="store_true", help="also through Gateway (log off)")
    args = parser.parse_args(argv)
    calls = args.calls or (200 if args.quick else 1000)
    rounds = args.rounds or (3 if args.quick else 5)
    modes = args.modes.split(",") if args.modes else (QUICK_MODES if args.quick else FULL_MODES)
    proc, url = bench_peers.start_server()
    print(
        f"# bench_upstream_transport {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {load()}"
    )
    kinds = ("httpx", "sharded8", "lean")
    sides: list[Side] = [Raw(url, kind) for kind in kinds]
    if args.gateway:
        sides += [Through(url, kind) for kind in kinds]
    try:
        with asyncio.Runner() as runner:
            for mode in modes:
                measure(sides, mode, calls, rounds, runner)
            for side in sides:
                runner.run(side.aclose())
    finally:
        for side in sides:
            side.close()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
