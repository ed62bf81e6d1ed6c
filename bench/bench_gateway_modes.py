"""What the gateway costs per call in each call mode: an earlier tree against this one, in
the same run (issue 11: the recorder and the attempt stage written once for asyncio, the
sync code generated).

    git archive <rev> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_gateway_modes.py --old-tree /tmp/old [--rounds R] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: how far two identical
sides drift apart on this machine, the noise floor). Each round, every worker runs every
workload once, the workers in a new random order each round; figures are medians over
rounds of the per-call wall time and process CPU time (all threads).

Workloads, all against the in-process fake OpenAI server of bench_gateway_overhead.py (an
``httpx.MockTransport``; a streamed request gets a three-event SSE answer):
``chat``, ``achat``, ``stream``, ``astream`` with logging off, then ``chat + log`` and
``stream + log`` with a DuckDB call log (flushed at the end of each block).

Each worker also counts the Python function calls (``sys.setprofile`` "call" events, C
functions apart) that one call of each workload makes: exact, the same on any machine and
under any load, so a few added or removed calls show even on a busy box where the timings
cannot.

Prints one table; exits 0. Timings are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON_CALLS: dict[int, dict[str, float]] = {}  # worker pid -> Python calls per call
WORKLOADS = ("chat", "achat", "stream", "astream", "chat + log", "stream + log")
SSE = (
    b'data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Par"}}]}'
    b"\n\n"
    b'data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"is."}}]}'
    b"\n\n"
    b'data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":27,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _worker() -> None:
    sys.path.insert(0, str(HERE))
    import httpx
    from bench_gateway_overhead import BASE_URL, MESSAGES, MODEL, RESPONSE_BODY

    from aigw_lab import Gateway, HttpClients, Price, ProviderSpec
    from aigw_lab.store import CallLog

    def server(request: httpx.Request) -> httpx.Response:
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx.Response(200, content=SSE, headers={"content-type": "text/event-stream"})
        return httpx.Response(
            200, content=RESPONSE_BODY, headers={"content-type": "application/json"}
        )

    def gateway(log: CallLog | None) -> Gateway:
        spec = ProviderSpec(name="bench", kind="openai", base_url=BASE_URL, api_key_env="K")
        transport = httpx.MockTransport(server)
        return Gateway(
            [spec],
            log=log,
            clients=HttpClients(transport=transport, async_transport=transport),
            env={"K": "bench-key"},
            prices={f"bench/{MODEL}": Price(0.15, 0.60)},
        )

    bare = gateway(None)
    tmp = tempfile.mkdtemp(prefix="aigw-bench-modes-")
    log = CallLog(Path(tmp) / "bench.duckdb")
    logged = gateway(log)
    address = f"bench/{MODEL}"
    loop = asyncio.new_event_loop()

    def sync_block(gw: Gateway, stream: bool, n: int) -> str:
        text = ""
        for _ in range(n):
            if stream:
                text = "".join(gw.stream(address, MESSAGES, max_tokens=16))
            else:
                text = gw.chat(address, MESSAGES, max_tokens=16).text
        return text

    async def async_block(gw: Gateway, stream: bool, n: int) -> str:
        text = ""
        for _ in range(n):
            if stream:
                text = "".join([t async for t in gw.astream(address, MESSAGES, max_tokens=16)])
            else:
                text = (await gw.achat(address, MESSAGES, max_tokens=16)).text
        return text

    blocks = {
        "chat": lambda n: sync_block(bare, False, n),
        "achat": lambda n: loop.run_until_complete(async_block(bare, False, n)),
        "stream": lambda n: sync_block(bare, True, n),
        "astream": lambda n: loop.run_until_complete(async_block(bare, True, n)),
        "chat + log": lambda n: sync_block(logged, False, n),
        "stream + log": lambda n: sync_block(logged, True, n),
    }
    assert all(block(1) == "Paris." for block in blocks.values())
    counts = {}
    for name, block in blocks.items():
        block(20)  # warm: first-use work (pools, caches) is not counted
        if "log" in name:
            log.flush()
        counted = [0]

        def count(frame: object, event: str, arg: object, counted: list[int] = counted) -> None:
            if event == "call":
                counted[0] += 1

        sys.setprofile(count)
        block(10)
        sys.setprofile(None)
        counts[name] = counted[0] / 10
    print(json.dumps({"ready": True, "python_calls": counts}), flush=True)
    for line in sys.stdin:
        calls = int(line)
        out: dict[str, list[float]] = {}
        for name, block in blocks.items():
            wall, cpu = time.perf_counter(), time.process_time()
            block(calls)
            if "log" in name:
                log.flush()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[name] = [wall / calls * 1e6, cpu / calls * 1e6]
        print(json.dumps(out), flush=True)
    loop.run_until_complete(bare.aclose())
    loop.close()
    logged.close()
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)


# --- the parent: starts the workers and interleaves them ---------------------------------


def _start(tree: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    assert proc.stdout is not None
    hello = json.loads(proc.stdout.readline())
    assert hello["ready"], hello
    PYTHON_CALLS[proc.pid] = hello["python_calls"]
    return proc


def _round(proc: subprocess.Popen[str], calls: int) -> dict[str, list[float]]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{calls}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=11, help="rounds (default 11)")
    parser.add_argument("--calls", type=int, default=400, help="calls per block (400)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    if not (args.old_tree / "aigw_lab" / "types.py").is_file():
        parser.error(f"{args.old_tree} holds no aigw_lab/types.py")

    new_tree = HERE.parent
    sides = {"old": args.old_tree, "new": new_tree, "new, again": new_tree}
    procs = {name: _start(tree) for name, tree in sides.items()}
    rng = random.Random(args.seed)
    results: dict[str, dict[str, list[list[float]]]] = {
        name: {w: [] for w in WORKLOADS} for name in sides
    }
    try:
        _ = [_round(p, max(1, args.calls // 10)) for p in procs.values()]  # warm-up
        for _ in range(args.rounds):
            order = list(procs)
            rng.shuffle(order)
            for name in order:
                for workload, value in _round(procs[name], args.calls).items():
                    results[name][workload].append(value)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)

    print(
        f"bench_gateway_modes: {args.rounds} rounds, {args.calls:,} calls per block; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'workload':<14} {'old µs':>8} {'new µs':>8} {'new/old':>8} {'again/new':>10}"
        f"   {'old CPU':>8} {'new CPU':>8} {'new/old':>8} {'again/new':>10}"
        f"   {'old calls':>9} {'new calls':>9}"
    )
    calls = {name: PYTHON_CALLS[proc.pid] for name, proc in procs.items()}
    for workload in WORKLOADS:
        med = {
            name: [statistics.median(v[i] for v in results[name][workload]) for i in (0, 1)]
            for name in sides
        }
        old, new, again = med["old"], med["new"], med["new, again"]
        print(
            f"{workload:<14} {old[0]:8.1f} {new[0]:8.1f} {new[0] / old[0]:8.3f} "
            f"{again[0] / new[0]:10.3f}   {old[1]:8.1f} {new[1]:8.1f} "
            f"{new[1] / old[1]:8.3f} {again[1] / new[1]:10.3f}"
            f"   {calls['old'][workload]:9.1f} {calls['new'][workload]:9.1f}"
        )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
        sys.exit(0)
    sys.exit(main())
