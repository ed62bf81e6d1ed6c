"""What the HTTP provider costs per call in each mode: an earlier tree against this one, in the
same run (the exchanges are generated from one asyncio original since issue 11).

    git archive <rev> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_exchange_modes.py --old-tree /tmp/old [--rounds R] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: the noise floor). Each
round, every worker runs every workload once, the workers in a new random order each round;
the figures are medians over rounds, wall and CPU (``process_time``) per call.

Workloads: `HttpProvider` ``chat``, ``achat``, ``stream`` and ``astream`` (read to the end)
of an OpenAI provider, against an in-process ``httpx.MockTransport`` returning a real Chat
Completions body or SSE stream, so the server's cost is small and the same on every side.
The async modes run on one event loop per worker, kept across rounds.

Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

WORKLOADS = ("chat", "achat", "stream", "astream")

_BODY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27},
}
_CHUNK = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
}


def _sse() -> bytes:
    events = [
        {**_CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *(
            {**_CHUNK, "choices": [{"index": 0, "delta": {"content": word}}]}
            for word in ("The ", "capital ", "is ", "Paris.")
        ),
        {**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**_CHUNK, "choices": [], "usage": _BODY["usage"]},
    ]
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _worker() -> None:
    import asyncio

    import httpx

    from aigw_lab.providers.base import HttpClients, ProviderSpec
    from aigw_lab.providers.registry import build_provider
    from aigw_lab.types import ChatRequest, StreamEnd

    body, stream_body = json.dumps(_BODY).encode(), _sse()

    def answer(request: httpx.Request) -> httpx.Response:
        if b'"stream":true' in request.content:
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=stream_body)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)

    transport = httpx.MockTransport(answer)
    clients = HttpClients(transport=transport, async_transport=transport)
    spec = ProviderSpec(
        name="bench", kind="openai", base_url="http://bench.invalid/v1", api_key_env="BENCH_KEY"
    )
    provider = build_provider(spec, clients, env={"BENCH_KEY": "sk-bench"})
    request = ChatRequest.create("gpt-4o-mini", [{"role": "user", "content": "Capital?"}])
    loop = asyncio.new_event_loop()

    def chat_block(n: int) -> None:
        for _ in range(n):
            assert provider.chat(request).text == "Paris."

    async def achat_block(n: int) -> None:
        for _ in range(n):
            assert (await provider.achat(request)).text == "Paris."

    def stream_block(n: int) -> None:
        for _ in range(n):
            events = list(provider.stream(request))
            assert type(events[-1]) is StreamEnd

    async def astream_block(n: int) -> None:
        for _ in range(n):
            events = [e async for e in provider.astream(request)]
            assert type(events[-1]) is StreamEnd

    blocks = {
        "chat": chat_block,
        "achat": lambda n: loop.run_until_complete(achat_block(n)),
        "stream": stream_block,
        "astream": lambda n: loop.run_until_complete(astream_block(n)),
    }
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        out: dict[str, list[float]] = {}
        for name, block in blocks.items():
            wall, cpu = time.perf_counter(), time.process_time()
            block(n)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[name] = [wall / n * 1e6, cpu / n * 1e6]
        print(json.dumps(out), flush=True)
    loop.run_until_complete(clients.aclose())
    loop.close()


# --- the parent: starts the workers and interleaves them ---------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--calls", type=int, default=500, help="calls per block (500)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    sides = old_vs_new.sides(parser, args.old_tree)
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        WORKLOADS,
        rounds=args.rounds,
        line=str(args.calls),
        warm_up=str(max(1, args.calls // 10)),
        seed=args.seed,
    )

    print(
        f"bench_exchange_modes: {args.rounds} rounds, {args.calls:,} calls per block; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    old_vs_new.print_table(results, WORKLOADS, width=8, digits=1, label="mode")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
