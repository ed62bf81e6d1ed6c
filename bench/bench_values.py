"""What keyword-only values cost: an earlier tree against this one, in the same run.

    git archive main aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_values.py --old-tree /tmp/old [--rounds R] [--builds N] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: how far two identical
sides drift apart on this machine, the noise floor). Each round, every worker runs every
workload once, the workers in a new random order each round, so they share the machine's
state; the figures are medians over rounds, per operation, wall and CPU (``thread_time``
of the worker's calling thread for the builds; ``process_time``, all threads, for the calls).

Workloads:

* ``response``: a `ChatResponse` with its `Usage` and `Latency`, all fields given, as the
  gateway builds one for every answer: positionally in the old tree (as its code did),
  by keyword in the new one;
* ``response, keywords``: the same by keyword in both trees (what the keyword call itself
  costs, apart from the class);
* ``call record``: a `CallRecord` (a log row) by keyword, as both trees build it (the new
  one's constructor is keyword-only);
* ``gateway call``: ``Gateway.chat`` to the in-process fake OpenAI server of
  bench_gateway_overhead.py, no log (request, codec, response, pricing);
* ``gateway call + log``: the same with a DuckDB call log, flushed at the end of each block.

Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKLOADS = (
    "response",
    "response, keywords",
    "call record",
    "gateway call",
    "gateway call + log",
)


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _worker() -> None:
    sys.path.insert(0, str(HERE))
    import dataclasses

    from bench_gateway_overhead import MESSAGES, MODEL, make_gateway

    from aigw_lab.store import CallLog, CallRecord
    from aigw_lab.types import ChatResponse, Latency, Usage

    keyword_only = any(f.kw_only for f in dataclasses.fields(ChatResponse))
    now = datetime.now(UTC)

    def response_positional() -> object:
        return ChatResponse(
            "Paris.",
            "stop",
            Usage(21, 2, 0, 0, 0, True),
            "bench",
            MODEL,
            Latency(1.5, 1.0, 1.5, 1.2),
            0.000005,
            "none",
            1,
            "chatcmpl-bench",
            None,
            None,
            False,
            "call-1",
            "trace-1",
        )

    def response_keywords() -> object:
        return ChatResponse(
            text="Paris.",
            finish_reason="stop",
            usage=Usage(
                input_tokens=21,
                output_tokens=2,
                cache_read_tokens=0,
                cache_write_tokens=0,
                reasoning_tokens=0,
                known=True,
            ),
            provider="bench",
            model=MODEL,
            latency=Latency(total_ms=1.5, ttfb_ms=1.0, ttft_ms=1.5, upstream_ms=1.2),
            cost_usd=0.000005,
            cache_status="none",
            attempts=1,
            response_id="chatcmpl-bench",
            tool_calls=None,
            raw=None,
            simulated=False,
            call_id="call-1",
            trace_id="trace-1",
        )

    def call_record() -> object:
        return CallRecord(
            call_id="call-1",
            trace_id="trace-1",
            timestamp=now,
            provider_name="bench",
            request_model=MODEL,
            response_model=MODEL,
            response_id="chatcmpl-bench",
            api_format="openai",
            request_json="{}",
            response_text="Paris.",
            finish_reason="stop",
            input_tokens=21,
            output_tokens=2,
            cost_usd=0.000005,
            latency_ms=1.5,
            ttfb_ms=1.0,
            ttft_ms=1.5,
            upstream_ms=1.2,
            overhead_ms=0.3,
            tags_json="{}",
            metadata_json="{}",
        )

    bare = make_gateway(None)
    tmp = tempfile.mkdtemp(prefix="aigw-bench-values-")
    log = CallLog(Path(tmp) / "bench.duckdb")
    logged = make_gateway(log)

    def gateway_call() -> object:
        return bare.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16)

    def logged_call() -> object:
        return logged.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16)

    assert response_keywords() == response_positional() if not keyword_only else True
    assert gateway_call().text == logged_call().text == "Paris."
    builds = {
        "response": response_keywords if keyword_only else response_positional,
        "response, keywords": response_keywords,
        "call record": call_record,
    }
    print(json.dumps({"ready": True, "keyword_only": keyword_only}), flush=True)
    for line in sys.stdin:
        n_builds, n_calls = (int(x) for x in line.split())
        out: dict[str, list[float]] = {}
        for name, build in builds.items():
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(n_builds):
                build()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            out[name] = [wall / n_builds * 1e6, cpu / n_builds * 1e6]
        for name, call, flush in (
            ("gateway call", gateway_call, None),
            ("gateway call + log", logged_call, log.flush),
        ):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(n_calls):
                call()
            if flush is not None:
                flush()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[name] = [wall / n_calls * 1e6, cpu / n_calls * 1e6]
        print(json.dumps(out), flush=True)
    bare.close()
    logged.close()
    shutil.rmtree(tmp, ignore_errors=True)


# --- the parent: starts the workers and interleaves them ---------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--builds", type=int, default=20_000, help="builds per block (20,000)")
    parser.add_argument("--calls", type=int, default=500, help="gateway calls per block (500)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    sides = old_vs_new.sides(parser, args.old_tree)
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        WORKLOADS,
        rounds=args.rounds,
        line=f"{args.builds} {args.calls}",
        warm_up=f"{args.builds // 10} {args.calls // 10}",
        seed=args.seed,
    )

    print(
        f"bench_values: {args.rounds} rounds, {args.builds:,} builds and {args.calls:,} "
        f"calls per block; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    old_vs_new.print_table(results, WORKLOADS, width=20, digits=2)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
