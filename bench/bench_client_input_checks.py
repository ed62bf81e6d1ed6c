"""What do issue 9's client-input checks cost per call?

    python bench/bench_client_input_checks.py [--calls N] [--rounds R]

The checks added where client values enter (`aigw_lab.addressing`): the model name's
character set and segments and the ``extra`` allowlist in ``ChatRequest.create``, the
allowlist of body fields in the served APIs' parsers (``fields.only``), and the codec's own
``extra`` allowlist. (The URL-path check runs once per distinct URL, then the parsed URL is
cached, so it is not on the per-call path.)

Each side runs the same work with the checks on, and with them replaced by no-ops, in
interleaved rounds (on, off, on, off...) so drift in the machine's speed hits both; each
figure is the median per-call time over the rounds, wall and CPU (process time):

* ``parse``: ``openai_api.parse_chat_request`` of a typical body (model, messages,
  temperature, max_tokens, response_format);
* ``gateway``: ``Gateway.chat`` without a log against an ``httpx.MockTransport`` fake
  OpenAI server, with ``extra={"response_format": ...}``.

Prints microseconds per call and the on/off ratio. Exits 0; nothing is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import httpx

import aigw_lab.providers.openai as openai_codec
import aigw_lab.server.fields as fields
import aigw_lab.types as types
from aigw_lab import Gateway, HttpClients, Price, ProviderSpec
from aigw_lab.server.openai_api import parse_chat_request

MODEL = "@cf/meta/llama-3.1-8b-instruct"
BODY = {
    "model": f"up/{MODEL}",
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France? Answer in one word."},
    ],
    "temperature": 0.2,
    "max_tokens": 16,
    "response_format": {"type": "text"},
}
REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."},
             "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27},
    }
).encode()  # fmt: skip


@contextmanager
def checks_off() -> Any:
    """Replace the per-call checks by no-ops (where each module looks them up)."""
    saved = (types.check_model_name, types.check_extra, fields.only, openai_codec.check_extra)
    types.check_model_name = lambda name, **_: name  # type: ignore[assignment]
    types.check_extra = lambda *a, **k: None  # type: ignore[assignment]
    fields.only = lambda *a, **k: None  # type: ignore[assignment]
    openai_codec.check_extra = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        (types.check_model_name, types.check_extra, fields.only,
         openai_codec.check_extra) = saved  # fmt: skip


def per_call(work: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Wall and CPU microseconds per call of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        work()
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=REPLY))
    clients = HttpClients(transport=transport)
    spec = ProviderSpec(
        name="up", kind="openai-compatible", base_url="http://bench.invalid/v1",
        prices={MODEL: Price(0.1, 0.1)},
    )  # fmt: skip
    gateway = Gateway([spec], clients=clients, log=None)
    extra = {"response_format": {"type": "text"}}
    work = {
        "parse": lambda: parse_chat_request(BODY),
        "gateway": lambda: gateway.chat(
            f"up/{MODEL}", BODY["messages"], max_tokens=16, extra=extra
        ),
    }
    for run in work.values():  # warm up: imports, caches, the URL cache
        for _ in range(200):
            run()

    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for name, run in work.items():
            results.setdefault((name, True), []).append(per_call(run, args.calls))
            with checks_off():
                results.setdefault((name, False), []).append(per_call(run, args.calls))
    gateway.close()
    clients.close()

    machine = f"{platform.machine()} Python {platform.python_version()} cpus={os.cpu_count()}"
    print(f"machine: {machine}; {args.rounds} interleaved rounds x {args.calls} calls")
    print(f"{'':10} {'checks on':>22} {'checks off':>22} {'added':>16} {'ratio':>7}")
    print(f"{'':10} {'wall us':>10} {'cpu us':>11} {'wall us':>10} {'cpu us':>11} "
          f"{'wall us':>7} {'cpu us':>8} {'wall':>7}")  # fmt: skip
    for name in work:
        on = results[(name, True)]
        off = results[(name, False)]
        on_wall = statistics.median(w for w, _ in on)
        on_cpu = statistics.median(c for _, c in on)
        off_wall = statistics.median(w for w, _ in off)
        off_cpu = statistics.median(c for _, c in off)
        print(
            f"{name:10} {on_wall:10.2f} {on_cpu:11.2f} {off_wall:10.2f} {off_cpu:11.2f} "
            f"{on_wall - off_wall:7.2f} {on_cpu - off_cpu:8.2f} {on_wall / off_wall:7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
