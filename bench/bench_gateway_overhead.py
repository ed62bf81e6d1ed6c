"""What does the gateway add to each call, compared with a raw httpx call to the same server?

    python bench/bench_gateway_overhead.py [--calls N] [--rounds R]

Both sides call the same in-process fake OpenAI server (an ``httpx.MockTransport`` that
returns a real Chat Completions body), so the server's own cost is identical and cancels:

* ``raw httpx``: build the JSON body, POST it, parse the JSON answer, read the text: the least
  any client must do;
* ``gateway, no log``: ``Gateway.chat`` with logging off (request validation, routing, the
  OpenAI codec, response normalisation, pricing);
* ``gateway + log``: the same with the DuckDB call log on (logging on, cache off: the
  configuration the targets are about). The background writer's work runs in this process
  and competes for the GIL, so it is inside the measurement, and every row is flushed to the
  file before the clock stops.

The sides run in interleaved rounds (raw, gateway, gateway + log, raw, ...) so drift in the
machine's speed hits all of them; each side's figure is the median per-call time over the
rounds. Exits 0; the target (< 50 us added per call) is reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from aigw_lab import Gateway, HttpClients, Middleware, Price, ProviderSpec
from aigw_lab.policy import Policy
from aigw_lab.store import CallLog

TARGET_ADDED_US = 50.0
BASE_URL = "http://bench.invalid/v1"
MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one word."},
]
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


def fake_server(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=RESPONSE_BODY, headers={"content-type": "application/json"})


def make_raw_call() -> tuple[object, httpx.Client]:
    client = httpx.Client(transport=httpx.MockTransport(fake_server))
    headers = {"authorization": "Bearer bench-key"}
    url = f"{BASE_URL}/chat/completions"

    def call() -> str:
        body = {"model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": 16}
        response = client.post(url, json=body, headers=headers)
        return response.json()["choices"][0]["message"]["content"]

    return call, client


def make_gateway(
    log: CallLog | None, middleware: Sequence[Middleware] = (), policies: Sequence[Policy] = ()
) -> Gateway:
    spec = ProviderSpec(name="bench", kind="openai", base_url=BASE_URL, api_key_env="BENCH_KEY")
    return Gateway(
        [spec],
        log=log,
        clients=HttpClients(transport=httpx.MockTransport(fake_server)),
        env={"BENCH_KEY": "bench-key"},
        prices={f"bench/{MODEL}": Price(0.15, 0.60)},
        middleware=middleware,
        policies=list(policies),
    )


def per_call_us(call: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)

    raw_call, raw_client = make_raw_call()
    bare = make_gateway(None)
    tmp = tempfile.mkdtemp(prefix="aigw-bench-")
    log = CallLog(Path(tmp) / "bench.duckdb")
    logged = make_gateway(log)

    def bare_call() -> str:
        return bare.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16).text

    def logged_call() -> str:
        return logged.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16).text

    assert raw_call() == bare_call() == logged_call() == "Paris."  # same answer on all sides
    for call in (raw_call, bare_call, logged_call):  # warm-up: caches, connection pool
        per_call_us(call, 500)

    samples: dict[str, list[float]] = {"raw": [], "bare": [], "logged": []}
    logged_total = 0
    logged_wall = 0.0
    for _ in range(args.rounds):
        samples["raw"].append(per_call_us(raw_call, args.calls))
        samples["bare"].append(per_call_us(bare_call, args.calls))
        start = time.perf_counter()
        per_call_us(logged_call, args.calls)
        log.flush()  # the writer's work for these rows counts against this side
        elapsed = time.perf_counter() - start
        samples["logged"].append(elapsed / args.calls * 1e6)
        logged_total += args.calls
        logged_wall += elapsed

    raw = statistics.median(samples["raw"])
    bare_us = statistics.median(samples["bare"])
    logged_us = statistics.median(samples["logged"])
    rows = log.query("SELECT count(*) AS n FROM calls")["n"][0]
    bare.close()
    logged.close()
    raw_client.close()

    print(
        f"gateway overhead vs raw httpx, same in-process fake server ({platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.rounds} rounds x {args.calls} calls)"
    )
    print(f"  {'side':<26} {'us/call':>9} {'added us':>9} {'ratio':>7}")
    for label, value in (
        ("raw httpx (baseline)", raw),
        ("gateway, no log", bare_us),
        ("gateway + DuckDB log", logged_us),
    ):
        print(f"  {label:<26} {value:9.1f} {value - raw:9.1f} {value / raw:7.2f}")
    added = logged_us - raw
    verdict = "meets" if added < TARGET_ADDED_US else "MISSES"
    print(
        f"  added per call with logging on: {added:.1f} us "
        f"({verdict} the < {TARGET_ADDED_US:.0f} us target)"
    )
    print(
        f"  logged calls per second, end to end (rows flushed): {logged_total / logged_wall:,.0f}"
    )
    print(f"  rows in the log: {rows:,} (expected {logged_total + 1 + 500:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
