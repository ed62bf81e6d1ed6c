"""What does the gateway add to each call, compared with a raw httpx call to the same server?

    python bench/bench_gateway_overhead.py [--quick] [--calls N] [--rounds R]

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

The sides run in interleaved rounds (raw, gateway, gateway + log, the order rotated each
round) so drift in the machine's speed hits all of them. Each side's figures are the median
wall and CPU time (``time.process_time``: every thread of the process, the log writer's
included) per call over the rounds, with the interquartile range; "added" is the median over
rounds of (side - raw) in the same round; "other threads" is the CPU spent outside the
calling thread (the log's writer thread and DuckDB's own threads). The load average is
printed with the result. Exits 0; the target (< 50 us added per call) is reported, not
enforced. Over a real socket, at paced call rates and beside LiteLLM: bench_peers.py.
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
from datetime import UTC, datetime
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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3) of per-round figures."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def timed_round(call: object, n: int, after: object = None) -> tuple[float, float, float]:
    """(wall us, CPU us, CPU us outside this thread) per call of ``n`` calls, ``after()``
    (the log's flush) inside the clocks."""
    cpu0, wall0, own0 = time.process_time(), time.perf_counter(), time.thread_time()
    for _ in range(n):
        call()  # type: ignore[operator]
    if after is not None:
        after()  # type: ignore[operator]
    cpu = time.process_time() - cpu0
    return (
        (time.perf_counter() - wall0) / n * 1e6,
        cpu / n * 1e6,
        (cpu - (time.thread_time() - own0)) / n * 1e6,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=None, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~1 min)")
    args = parser.parse_args(argv)
    calls = args.calls or (1_000 if args.quick else 2_000)
    rounds = args.rounds or (7 if args.quick else 15)

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
    log.flush()

    sides = {"raw": (raw_call, None), "bare": (bare_call, None), "logged": (logged_call, log.flush)}
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    elsewhere: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:  # interleaved, order rotated
            # The log side's flush is inside its clocks: the writer's work counts against it.
            w, c, e = timed_round(sides[name][0], calls, sides[name][1])
            wall[name].append(w)
            cpu[name].append(c)
            elsewhere[name].append(e)
    logged_total = rounds * calls
    logged_wall = sum(wall["logged"]) * calls / 1e6
    rows = log.query("SELECT count(*) AS n FROM calls")["n"][0]
    bare.close()
    logged.close()
    raw_client.close()

    print(
        f"gateway overhead vs raw httpx, same in-process fake server ({platform.python_version()}, "
        f"{os.cpu_count()} cores, {rounds} rounds x {calls} calls)"
    )
    print(f"  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {load()}")
    print(
        f"  {'side':<22} {'wall us':>8} {'CPU us':>8} {'CPU IQR':>15} "
        f"{'added CPU us':>13} {'added IQR':>16} {'ratio':>6} {'other threads':>13}"
    )
    raw_cpu = statistics.median(cpu["raw"])
    added_logged = 0.0
    for name, label in (
        ("raw", "raw httpx (baseline)"),
        ("bare", "gateway, no log"),
        ("logged", "gateway + DuckDB log"),
    ):
        c1, c2, c3 = quartiles(cpu[name])
        a1, a2, a3 = quartiles([x - y for x, y in zip(cpu[name], cpu["raw"], strict=True)])
        if name == "logged":
            added_logged = a2
        print(
            f"  {label:<22} {statistics.median(wall[name]):8.1f} {c2:8.1f} "
            f"{f'[{c1:.1f}, {c3:.1f}]':>15} {a2:13.1f} {f'[{a1:.1f}, {a3:.1f}]':>16} "
            f"{c2 / raw_cpu:6.2f} {statistics.median(elsewhere[name]):13.1f}"
        )
    verdict = "meets" if added_logged < TARGET_ADDED_US else "MISSES"
    print(
        f"  added CPU per call with logging on: {added_logged:.1f} us "
        f"({verdict} the < {TARGET_ADDED_US:.0f} us target)"
    )
    print(
        f"  logged calls per second, end to end (rows flushed): {logged_total / logged_wall:,.0f}"
    )
    print(f"  rows in the log: {rows:,} (expected {logged_total + 1 + 500:,}); {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
