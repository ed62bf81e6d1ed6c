"""CPU per request of ``serve``'s front alone (uvicorn's HTTP protocol and `GatewayApp`), no
sockets and no upstream, for A/B comparisons too small for the throughput bench to see on
a loaded box (issue 14 §3, step 3).

    python bench/bench_serve_front.py --quick                     # this tree, both parsers
    python bench/bench_serve_front.py --quick --baseline-tree /work/main

A child process (``--child``) builds a `GatewayApp` over a `Gateway` whose one provider is
`aigw_lab.testing.fakes.MockProvider` (log off: the front, not the log, is measured; the
gateway's pipeline is in the figure, and is the same code in both trees unless they differ
there), wraps it in uvicorn's protocol class exactly as ``serve`` does
(`aigw_lab.server.runner.uvicorn_config`), and drives one keep-alive connection through a
fake transport: 64 connections take turns, each fed a whole Chat Completions request and
run until its answer is written. It prints the process CPU per request over
``--requests`` requests. The driver runs every (tree, parser) variant in a new random order
per round, in separate processes, and prints the median CPU per request with the min-max
over rounds and the ratio to the first variant, with ``os.getloadavg()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
BODY = json.dumps({"model": "mock/m", "messages": [{"role": "user", "content": "hi"}]}).encode()
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8788\r\n"
    b"content-type: application/json\r\nauthorization: Bearer x\r\n"
    b"user-agent: bench\r\naccept: application/json\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; ``done`` is set when an answer is complete."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.done = asyncio.Event()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name, default=None):
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol) -> None:
        pass


async def _drive(http: str, requests: int, connections: int) -> dict:
    import uvicorn

    from aigw_lab.gateway.gateway import Gateway
    from aigw_lab.server import GatewayApp
    from aigw_lab.server.runner import uvicorn_config
    from aigw_lab.testing.fakes import MockProvider

    gateway = Gateway([MockProvider("mock", default="hi there", models=("m",))], log=None)
    app = GatewayApp(gateway, None)
    try:
        config = uvicorn_config(app, None, log_level="warning", lifespan="off", http=http)
    except TypeError:  # an older tree: no http parameter (h11 only)
        if http != "h11":
            raise SystemExit("this tree has h11 only") from None
        config = uvicorn_config(app, None, log_level="warning", lifespan="off")
    config.load()
    state = uvicorn.server.ServerState()
    loop = asyncio.get_running_loop()
    protocols = []
    for _ in range(connections):
        transport = FakeTransport()
        protocol = config.http_protocol_class(
            config=config, server_state=state, app_state={}, _loop=loop
        )
        protocol.connection_made(transport)
        protocols.append((protocol, transport))

    waiting: dict[int, asyncio.Future] = {}

    def on_complete(protocol, original):
        def complete(*args) -> None:  # the protocol's own end of an answer, then ours
            original(*args)
            waiting.pop(id(protocol)).set_result(None)

        return complete

    for protocol, _ in protocols:  # each cycle is handed this bound hook when it starts
        # uvicorn's protocols: on_response_complete; aigw's (aigw_lab.server.h1): answered
        hook = "answered" if hasattr(protocol, "answered") else "on_response_complete"
        setattr(protocol, hook, on_complete(protocol, getattr(protocol, hook)))

    async def one(protocol, transport) -> None:
        waiting[id(protocol)] = done = loop.create_future()
        protocol.data_received(REQUEST)
        await done

    for protocol, transport in protocols:  # warm-up: first use of every path
        await one(protocol, transport)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = 0
    while done < requests:
        batch = protocols[: min(connections, requests - done)]
        await asyncio.gather(*(one(p, t) for p, t in batch))
        done += len(batch)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for protocol, _ in protocols:
        protocol.connection_lost(None)
    gateway.close()
    assert all(t.written > 0 for _, t in protocols)
    return {"requests": done, "cpu_s": cpu, "wall_s": wall}


def child(http: str, requests: int, connections: int) -> None:
    try:
        import uvloop  # lazy: optional, as under serve (--loop auto)

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_drive(http, requests, connections))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds x 3,000 requests")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--baseline-tree", metavar="PATH", help="also run another checkout")
    parser.add_argument("--child", metavar="HTTP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.requests, args.connections)
    if args.quick:
        args.rounds, args.requests = 5, 3000
    this_tree = str(HERE.parent.parent)
    variants = {"this tree, httptools": (this_tree, "httptools"),
                "this tree, aigw": (this_tree, "aigw"),
                "this tree, h11": (this_tree, "h11")}  # fmt: skip
    if args.baseline_tree:
        variants["baseline tree, h11"] = (args.baseline_tree, "h11")
    print(f"{args.rounds} rounds x {args.requests} requests over {args.connections} "
          f"connections; loadavg {os.getloadavg()}", flush=True)  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            tree, http = variants[name]
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run(
                [sys.executable, str(HERE), "--child", http, "--requests", str(args.requests),
                 "--connections", str(args.connections)],
                capture_output=True, text=True, env=env, cwd=tree,
            )  # fmt: skip
            if out.returncode:
                raise SystemExit(f"{name} failed: {out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            per = 1e6 * result["cpu_s"] / result["requests"]
            results[name].append(per)
            print(f"  round {round_} {name:22} {per:6.0f} us CPU/req  "
                  f"(wall {1e6 * result['wall_s'] / result['requests']:6.0f} us/req)  "
                  f"loadavg {os.getloadavg()}", flush=True)  # fmt: skip
    first = next(iter(variants))
    print(f"\nmedian CPU per request [min-max] over {args.rounds} rounds; loadavg "
          f"{os.getloadavg()}")  # fmt: skip
    for name, values in results.items():
        ratios = [v / f for v, f in zip(values, results[first], strict=True)]
        print(f"  {name:22} {statistics.median(values):6.0f} us [{min(values):.0f}-"
              f"{max(values):.0f}]  x{statistics.median(ratios):.2f} of {first} per round "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]")  # fmt: skip


if __name__ == "__main__":
    main()
