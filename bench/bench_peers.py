"""aigw_lab side by side with raw httpx and LiteLLM's SDK, over a real loopback socket.

    python bench/bench_peers.py [--quick] [--calls N] [--rounds R] [--modes M,M,...]
        [--transport auto] [--baseline-tree TREE]

One fake OpenAI server runs in its own process on 127.0.0.1 (a minimal asyncio HTTP/1.1
server in this file: keep-alive, Content-Length, a fixed Chat Completions body or a fixed
SSE stream), so its CPU is not counted as the client's and, on a small shared machine, it
takes as little of the cores as a server can. Every side calls it the same way:

* ``raw httpx``: build the JSON body, POST it, parse the JSON answer, read the text (the
  least any client must do; for streaming, iterate the SSE lines and parse each event);
* ``aigw log on``: ``Gateway.chat``/``achat``/``stream`` with the DuckDB call log on (a real
  file; every row is flushed before a round's clocks stop, so the writer thread's work is
  inside the measurement);
* ``aigw log off``: the same gateway without a log (to split the gateway's own cost from
  the log's);
* ``litellm``: ``litellm.completion``/``acompletion`` (``openai/`` model, ``api_base`` at the
  fake), with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it reads its bundled price map
  instead of fetching one.

Modes (``asyncN`` and ``pacedN`` take any N): ``sync`` (one thread, flat out),
``async1``/``async16``/``async64`` (one event loop, that many calls in flight), ``stream``
(sync streaming) and ``paced100`` (sync, one call every 10 ms: a realistic call rate, where
per-call fixed costs such as the log's periodic insert are not amortised over big batches).

Sides run in interleaved rounds, the order rotated each round. Per round each side makes the
same number of calls; the client process's CPU time (``time.process_time``: every thread of
this process, the log writer's included) and wall time are taken per call. Each figure is
the median over rounds with the interquartile range; "added CPU" is the median over rounds
of (side - raw httpx) in the same round. The load average is printed with every mode.
``--baseline-tree TREE`` adds ``base log on`` and ``base log off``: the same gateway sides
with ``aigw_lab`` imported from another checkout (the code before a change), each in a
worker process of its own (`_peers_tree.py`), in the same interleaved rounds, so a change is
read as a ratio within one run. Exits 0; the target (aigw's added CPU at least 100x below
LiteLLM's) is reported, not enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# bench/ is the script's folder when run, not when a test imports it (tests/test_bench_peers.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers_count import count_calls  # noqa: E402
from _peers_tree import TreeSide, print_trees  # noqa: E402
from _raw_direct import RawDirect  # noqa: E402

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one word."},
]
TARGET_RATIO = 100.0
ALL_MODES = ("sync", "async1", "async16", "async64", "stream", "paced100")

RESPONSE_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 27,
            "completion_tokens": 2,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "system_fingerprint": "fp_bench",
    }
).encode()


def _sse_body() -> bytes:
    """A Chat Completions stream: a role chunk, eight text chunks, a finish chunk, usage."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
    base["model"] = "gpt-4o-mini-2024-07-18"
    words = ["The", " capital", " of", " France", " is", " Paris", ",", " of course."]
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for word in words:
        events.append({**base, "choices": [{"index": 0, "delta": {"content": word}}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 27, "completion_tokens": 9, "total_tokens": 36}
    events.append({**base, "choices": [], "usage": usage})
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


STREAM_TEXT = "The capital of France is Paris, of course."


# --- the fake server (its own process) ---------------------------------------------------


def _reply(body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class _FakeOpenAI(asyncio.Protocol):
    """One connection of the fake server: requests parsed by Content-Length, answered at
    once (the answer depends only on whether the body asks for a stream)."""

    JSON_REPLY = _reply(RESPONSE_BODY, "application/json")
    SSE_REPLY = _reply(_sse_body(), "text/event-stream")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            streaming = b'"stream":true' in body.replace(b" ", b"")
            self.transport.write(self.SSE_REPLY if streaming else self.JSON_REPLY)  # type: ignore[attr-defined]


def serve() -> None:
    """Run the fake server on a free loopback port; print the port; serve until stdin ends."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_FakeOpenAI, "127.0.0.1", 0, backlog=512)
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # the parent closing stdin stops us
        server.close()

    asyncio.run(main())


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


# --- the sides ----------------------------------------------------------------------------


class Side:
    """One client: a sync call, an async call, a sync stream, and what ends a round."""

    name: str

    def call(self) -> str:
        raise NotImplementedError

    async def acall(self) -> str:
        raise NotImplementedError

    def stream(self) -> str:
        raise NotImplementedError

    def end_round(self) -> None:
        """Work a round owes before its clocks stop (the log's flush)."""

    async def aclose(self) -> None:
        """Close what belongs to the bench's event loop."""

    def close(self) -> None:
        pass


class RawHttpx(Side):
    name = "raw httpx"

    def __init__(self, base_url: str, shards: int = 1, lean: bool = False) -> None:
        import httpx  # lazy: the server process never needs it

        self.url = f"{base_url}/chat/completions"
        self.headers = {"authorization": "Bearer bench-key"}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        if lean:  # --transport lean: the raw client over the gateway's own transport
            from aigw_lab.providers.lean import LeanTransport  # lazy: only --transport lean
            from aigw_lab.providers.lean_async import AsyncLeanTransport  # lazy: as above

            self.name = "raw lean"
            self.client = httpx.Client(transport=LeanTransport(limits))
            self.aclient = httpx.AsyncClient(transport=AsyncLeanTransport(limits))
        elif shards == 1:
            self.client = httpx.Client(limits=limits)
            self.aclient = httpx.AsyncClient(limits=limits)
        else:  # --pool-shards: the same pool split into independent ones
            from aigw_lab.providers.sharded import (  # lazy: only --pool-shards
                AsyncShardedTransport,
                ShardedTransport,
            )

            self.name = f"raw sharded{shards}"
            self.client = httpx.Client(transport=ShardedTransport.build(limits, shards))
            self.aclient = httpx.AsyncClient(transport=AsyncShardedTransport.build(limits, shards))

    def _body(self, stream: bool = False) -> dict[str, object]:
        body: dict[str, object] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 16}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def call(self) -> str:
        response = self.client.post(self.url, json=self._body(), headers=self.headers)
        return response.json()["choices"][0]["message"]["content"]

    async def acall(self) -> str:
        response = await self.aclient.post(self.url, json=self._body(), headers=self.headers)
        return response.json()["choices"][0]["message"]["content"]

    def stream(self) -> str:
        parts = []
        body = self._body(stream=True)
        with self.client.stream("POST", self.url, json=body, headers=self.headers) as response:
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:])["choices"]:
                    parts.append(choice["delta"].get("content") or "")
        return "".join(parts)

    async def aclose(self) -> None:
        await self.aclient.aclose()

    def close(self) -> None:
        self.client.close()


class Aigw(Side):
    def __init__(
        self, base_url: str, log_path: Path | None, shards: int = 1, transport: str = "httpx"
    ) -> None:
        from aigw_lab import Gateway, Price, ProviderSpec  # lazy: not in the server process
        from aigw_lab.providers.base import PoolSettings  # lazy: as above
        from aigw_lab.store import CallLog  # lazy: as above

        self.name = "aigw log on" if log_path else "aigw log off"
        if shards > 1:
            self.name += f" sh{shards}"
        self.log = CallLog(log_path) if log_path else None
        spec = ProviderSpec(name="fake", kind="openai", base_url=base_url, api_key_env="FAKE_KEY")
        self.gateway = Gateway(
            [spec],
            log=self.log,
            env={"FAKE_KEY": "bench-key"},
            prices={f"fake/{MODEL}": Price(0.15, 0.60)},
            pool=PoolSettings(shards=shards, transport=transport),
        )
        self.address = f"fake/{MODEL}"
        # The raw client this side's added CPU is taken over: the same transport, so the
        # difference is the gateway's own work, never a cheaper client's saving.
        self.baseline = "raw direct" if transport in ("lean", "auto") else "raw httpx"

    def through_client(self) -> Aigw:
        """This gateway with the lean transport's direct path off: calls go through httpx's
        client over the same transport, as before session 9 (``--direct-ab``)."""
        self.name += " via client"
        clients = self.gateway._clients
        clients.sync_lean = clients.async_lean = lambda: None  # type: ignore[method-assign]
        return self

    def call(self) -> str:
        return self.gateway.chat(self.address, MESSAGES, max_tokens=16).text

    async def acall(self) -> str:
        return (await self.gateway.achat(self.address, MESSAGES, max_tokens=16)).text

    def stream(self) -> str:
        return "".join(self.gateway.stream(self.address, MESSAGES, max_tokens=16))

    def end_round(self) -> None:
        if self.log is not None:
            self.log.flush()

    def rows(self) -> int:
        return int(self.log.query("SELECT count(*) AS n FROM calls")["n"][0]) if self.log else 0

    async def aclose(self) -> None:
        await self.gateway.aclose()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class LiteLLM(Side):
    name = "litellm"

    def __init__(self, base_url: str) -> None:
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # its bundled prices, no fetch
        import litellm  # lazy: optional peer, slow to import, not in the server process

        litellm.telemetry = False
        self.litellm = litellm
        self.kwargs = {
            "model": f"openai/{MODEL}",
            "messages": MESSAGES,
            "max_tokens": 16,
            "api_base": base_url,
            "api_key": "bench-key",
        }

    def call(self) -> str:
        return self.litellm.completion(**self.kwargs).choices[0].message.content

    async def acall(self) -> str:
        response = await self.litellm.acompletion(**self.kwargs)
        return response.choices[0].message.content

    def stream(self) -> str:
        chunks = self.litellm.completion(
            **self.kwargs, stream=True, stream_options={"include_usage": True}
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


# --- measuring ----------------------------------------------------------------------------


def run_round(
    side: Side, mode: str, calls: int, runner: asyncio.Runner
) -> tuple[float, float, float]:
    """(CPU, wall, CPU outside the calling thread) in us per call of ``calls`` calls of
    ``side`` in ``mode``. The calling thread runs every client and the event loop, so CPU
    elsewhere is the log's writer thread and DuckDB's own threads."""
    if isinstance(side, TreeSide):  # --baseline-tree: measured the same way, in its worker
        return side.remote_round(mode, calls)
    cpu0, wall0, own0 = time.process_time(), time.perf_counter(), time.thread_time()
    if mode == "sync":
        for _ in range(calls):
            side.call()
    elif mode == "stream":
        for _ in range(calls):
            side.stream()
    elif mode.startswith("paced"):
        interval = 1.0 / int(mode.removeprefix("paced"))
        due = time.perf_counter()
        for _ in range(calls):
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            side.call()
            due += interval
    else:
        runner.run(_concurrent(side, int(mode.removeprefix("async")), calls))
    side.end_round()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    elsewhere = cpu - (time.thread_time() - own0)
    return cpu / calls * 1e6, wall / calls * 1e6, elsewhere / calls * 1e6


async def _concurrent(side: Side, concurrency: int, calls: int) -> None:
    left = [calls]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await side.acall()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def measure(
    sides: list[Side], mode: str, calls: int, rounds: int, runner: asyncio.Runner
) -> dict[str, dict[str, list[float]]]:
    """Interleaved rounds; per side the per-round CPU, wall and added CPU over raw."""
    warm = max(10, calls // 10)
    for side in sides:  # warm-up: pools, imports, caches, the first log insert
        run_round(side, mode if not mode.startswith("paced") else "sync", warm, runner)
    out = {
        side.name: {"cpu": [], "wall": [], "added": [], "over_httpx": [], "other": []}
        for side in sides
    }
    for r in range(rounds):
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        this: dict[str, float] = {}
        for side in order:
            cpu, wall, other = run_round(side, mode, calls, runner)
            out[side.name]["cpu"].append(cpu)
            out[side.name]["wall"].append(wall)
            out[side.name]["other"].append(other)
            this[side.name] = cpu
        for side in sides:
            baseline = getattr(side, "baseline", "raw httpx")
            out[side.name]["added"].append(this[side.name] - this[baseline])
            out[side.name]["over_httpx"].append(this[side.name] - this["raw httpx"])
    return out


def report(mode: str, calls: int, rounds: int, data: dict[str, dict[str, list[float]]]) -> float:
    print(f"\n[{mode}] {rounds} rounds x {calls} calls per side; {load()}")
    print(
        f"  {'side':<14} {'CPU us/call':>12} {'IQR':>15} {'wall us/call':>13} {'IQR':>15}"
        f" {'added CPU us':>13} {'IQR':>17} {'other threads':>13}"
    )
    for name, d in data.items():
        c1, c2, c3 = quartiles(d["cpu"])
        w1, w2, w3 = quartiles(d["wall"])
        a1, a2, a3 = quartiles(d["added"])
        print(
            f"  {name:<14} {c2:12.1f} {f'[{c1:.0f}, {c3:.0f}]':>15} {w2:13.1f}"
            f" {f'[{w1:.0f}, {w3:.0f}]':>15} {a2:13.1f} {f'[{a1:.1f}, {a3:.1f}]':>17}"
            f" {statistics.median(d['other']):13.1f}"
        )
    if "base log on" in data and "litellm" not in data:
        print_trees(data, None)
    if "litellm" in data and "aigw log on" in data:
        lite = quartiles(data["litellm"]["added"])
        aigw = quartiles(data["aigw log on"]["added"])
        ratio = lite[1] / aigw[1] if aigw[1] > 0 else float("inf")
        worst = lite[0] / aigw[2] if aigw[2] > 0 else float("inf")
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(
            f"  litellm added / aigw (log on) added: {ratio:.0f}x (median); "
            f"{worst:.0f}x (litellm Q1 / aigw Q3); {verdict} the >= {TARGET_RATIO:.0f}x target"
        )
        if "base log on" in data:  # --baseline-tree: the trees side by side
            print_trees(data, lite[1])
        if "raw direct" in data:  # aigw's baseline is the direct path: say so beside httpx
            over = statistics.median(data["aigw log on"]["over_httpx"])
            print(
                f"  (aigw log on's added CPU over raw direct, its own transport path:"
                f" {aigw[1]:.1f} us; over raw httpx: {over:.1f} us per call)"
            )
        return ratio
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the headline figures in ~2 min")
    parser.add_argument("--calls", type=int, help="calls per side per round (default 300)")
    parser.add_argument("--rounds", type=int, help="rounds per mode (default 9)")
    parser.add_argument("--modes", default=None, help=f"comma-separated, of {','.join(ALL_MODES)}")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument(
        "--pool-shards",
        type=int,
        default=1,
        help="also run raw httpx and aigw (log on) over a pool split into this many shards"
        " (aigw_lab.providers.sharded), interleaved with the default pool",
    )
    parser.add_argument(
        "--transport",
        choices=("httpx", "lean", "auto"),
        default="httpx",
        help="the gateway's upstream transport (default httpx; auto is the gateway's own"
        " default, lean when httptools is installed); with lean or auto a raw client calling"
        " the lean transport's direct path (raw direct) is the gateway's baseline, raw httpx"
        " stays LiteLLM's",
    )
    parser.add_argument(
        "--direct-ab",
        action="store_true",
        help="with --transport lean/auto, also run aigw (log off) with the direct path off"
        " (httpx's client over the same lean transport): the A/B of session 9's change",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also run aigw (log on, log off) with aigw_lab imported from this checkout (the"
        " code before a change; named base log on/off), each in a worker process",
    )
    parser.add_argument(
        "--tree-workers",
        action="store_true",
        help="with --baseline-tree, also run this checkout's gateway sides in worker"
        " processes (this log on/off), so the two trees are measured the same way",
    )
    parser.add_argument(
        "--count-calls",
        action="store_true",
        help="also count Python function calls per call in the calling thread (load-proof)",
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in a pipe
    calls = args.calls or (150 if args.quick else 300)
    rounds = args.rounds or (5 if args.quick else 9)
    quick_modes = "sync,async16,stream,paced100"
    modes = (args.modes or (quick_modes if args.quick else ",".join(ALL_MODES))).split(",")
    unknown = [m for m in modes if not re.fullmatch(r"sync|stream|async[1-9]\d*|paced[1-9]\d*", m)]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; use sync, stream, asyncN or pacedN")

    if args.baseline_tree and not (args.baseline_tree / "aigw_lab" / "__init__.py").is_file():
        parser.error(f"{args.baseline_tree} holds no aigw_lab package")
    proc, base_url = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="aigw-peers-"))
    sides: list[Side] = [RawHttpx(base_url)]
    if args.transport in ("lean", "auto"):
        sides.append(RawDirect(base_url, MODEL, MESSAGES))
    sides.append(Aigw(base_url, tmp / "calls.duckdb", transport=args.transport))
    sides.append(Aigw(base_url, None, transport=args.transport))
    if args.direct_ab and args.transport in ("lean", "auto"):
        sides.append(Aigw(base_url, None, transport=args.transport).through_client())
    if args.baseline_tree is not None:
        baseline = sides[-1].baseline  # type: ignore[attr-defined]  # the Aigw side's
        trees = {"base": args.baseline_tree}
        if args.tree_workers:  # this checkout in workers too: both trees measured alike
            trees["this"] = Path(__file__).resolve().parent.parent
        for label, tree in trees.items():
            for path in (tmp / f"{label}.duckdb", None):
                sides.append(TreeSide(tree, base_url, path, args.transport, baseline, label))
    if args.pool_shards > 1:
        sides.append(RawHttpx(base_url, args.pool_shards))
        sides.append(Aigw(base_url, tmp / "sharded.duckdb", args.pool_shards))
    if not args.no_litellm:
        sides.append(LiteLLM(base_url))
    for side in sides:  # every side gets the same answer from the same server
        answers = side.check() if isinstance(side, TreeSide) else (side.call(), side.stream())
        assert answers == ("Paris.", STREAM_TEXT), side.name
    print(
        f"bench_peers: client CPU and wall per call against one loopback fake OpenAI server "
        f"(own process)\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.machine()} | "
        f"{os.cpu_count()} cores | Python {platform.python_version()} | {load()}"
    )
    ratios: dict[str, float] = {}
    tree_ratios: dict[str, dict[str, float]] = {}
    with asyncio.Runner() as runner:
        runner.run(sides[0].acall())
        if args.count_calls:
            count_calls(sides, runner, run_round, load)
        for mode in modes:
            # A paced round lasts about a second (at least 50 calls).
            n = calls if not mode.startswith("paced") else max(50, int(mode[5:]))
            data = measure(sides, mode, n, rounds, runner)
            ratios[mode] = report(mode, n, rounds, data)
            for label in ("base", "this"):
                if f"{label} log on" in data and "litellm" in data:
                    lite, tree = (
                        statistics.median(data[k]["added"]) for k in ("litellm", f"{label} log on")
                    )
                    tree_ratios.setdefault(label, {})[mode] = lite / tree if tree > 0 else 0.0
        for side in sides:
            runner.run(side.aclose())
    logged = next(s for s in sides if isinstance(s, Aigw) and s.log is not None)
    print(f"\nrows in the call log: {logged.rows():,}; {load()}")
    for side in sides:
        side.close()
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    if ratios and "litellm" in {s.name for s in sides}:
        summary = ", ".join(f"{m} {r:.0f}x" for m, r in ratios.items())
        print(f"headline: litellm's added CPU / aigw's (log on): {summary}")
    for label, found in tree_ratios.items():
        summary = ", ".join(f"{m} {r:.0f}x" for m, r in found.items())
        print(f"{label} (worker processes): the same ratio: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
