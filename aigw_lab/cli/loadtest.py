"""``aigw-lab loadtest``: drive the gateway at a fixed arrival rate and report from the log.

Open loop: request *i* is sent at ``start + i / rps`` whether or not earlier ones have
answered, as real traffic arrives, so a slow target shows up as latency and errors rather
than as a politely lower rate. The run is bounded: ``rps * duration`` requests, each with a
timeout. Afterwards everything is read back with SQL from the call log (the run's calls carry
a ``loadtest`` tag): achieved rate, successes and errors by type, latency percentiles and the
cache hit rate.

Offline by default (the simulated fleet, in-process). With ``--config``, it drives whatever
the config describes: point it only at servers you are allowed to load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from typing import Any

from aigw_lab.cli._args import describe, finite_float
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import AigwError, ConfigError

__all__ = ["register", "run", "LoadResult", "drive"]

MAX_REQUESTS = 200_000


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "loadtest",
        help=VERBS["loadtest"],
        description=describe(
            "Drive the gateway at a fixed arrival rate, then report from the call log.",
            "Open loop: request i is sent at start + i / rps whether or not earlier ones have "
            "answered, as real traffic arrives, so a slow target shows up as latency and "
            "errors rather than as a politely lower rate. The run is bounded: rps x duration "
            "requests, each with a timeout. Afterwards everything is read back with SQL from "
            "the call log (the run's calls carry a loadtest tag): achieved rate, successes and "
            "errors by type, latency percentiles and the cache hit rate.",
            "Offline by default (the simulated fleet, in-process). With --config it drives "
            "whatever the config describes: point it only at servers you are allowed to load.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rps", type=finite_float(), required=True, help="requests per second to send"
    )
    parser.add_argument(
        "--duration", type=finite_float(), required=True, help="seconds to keep sending"
    )
    parser.add_argument(
        "--targets",
        help="comma-separated provider/model targets, used in turn (default: every model)",
    )
    parser.add_argument("--config", help="a gateway TOML config (default: the simulated fleet)")
    parser.add_argument("--db", default=":memory:", help="DuckDB call log (default: in memory)")
    parser.add_argument(
        "--timeout",
        type=finite_float(),
        default=30.0,
        help="seconds to wait for each request (default: %(default)s)",
    )
    parser.add_argument(
        "--time-scale",
        type=finite_float(),
        default=1.0,
        help="simulated fleet only: scale its latencies, 1.0 = as modelled, 0 = no waiting "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--repeat-prompts",
        type=int,
        default=0,
        help="use only this many distinct prompts, so a configured cache can hit "
        "(default: 0, every prompt distinct)",
    )
    parser.set_defaults(func=run)


class LoadResult:
    """What a run sent: its tag, how many requests, and how long sending took."""

    def __init__(self, run_id: str, sent: int, send_seconds: float, max_lag_ms: float) -> None:
        self.run_id = run_id
        self.sent = sent
        self.send_seconds = send_seconds
        self.max_lag_ms = max_lag_ms


async def drive(
    gateway: Any,
    targets: list[str],
    prompts: list[str],
    *,
    rps: float,
    duration: float,
    timeout: float,
    run_id: str,
) -> LoadResult:
    """Send ``rps * duration`` requests on schedule, without waiting for answers."""
    loop = asyncio.get_running_loop()
    total = int(rps * duration)
    plan = zip(range(total), itertools.cycle(targets), itertools.cycle(prompts), strict=False)
    tasks: list[asyncio.Task[Any]] = []
    max_lag = 0.0
    start = loop.time()

    async def one(target: str, prompt: str) -> None:
        try:
            await gateway.achat(
                target, prompt, max_tokens=128, timeout=timeout, tags={"loadtest": run_id}
            )
        except AigwError:
            pass  # every outcome is in the log; the report reads it from there

    for i, target, prompt in plan:
        due = start + i / rps
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        tasks.append(asyncio.create_task(one(target, prompt)))
    send_seconds = loop.time() - start
    await asyncio.gather(*tasks)
    return LoadResult(run_id, total, send_seconds, max_lag * 1000.0)


def run(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.datasets import load_bundled
    from aigw_lab.gateway import Gateway

    if args.rps <= 0 or args.duration <= 0:
        raise ConfigError(
            "--rps and --duration must be positive", hint="e.g. --rps 50 --duration 10"
        )
    if args.rps * args.duration > MAX_REQUESTS:
        raise ConfigError(
            f"--rps x --duration asks for {int(args.rps * args.duration):,} requests",
            hint=f"a run is bounded at {MAX_REQUESTS:,}; lower the rate or the duration",
        )
    if args.timeout <= 0 or args.time_scale < 0:
        raise ConfigError("--timeout must be positive and --time-scale not negative")
    if args.config:
        gateway = Gateway.from_config(args.config, log=args.db)
    else:
        gateway = Gateway.simulated_fleet(time_scale=args.time_scale, log=args.db)
    prompts = [item["prompt"] for item in load_bundled()]
    if args.repeat_prompts > 0:
        prompts = prompts[: args.repeat_prompts]
    run_id = f"lt-{int(time.time())}-{os.getpid()}"

    async def main() -> LoadResult:
        async with gateway:
            if args.targets:
                targets = [t.strip() for t in args.targets.split(",") if t.strip()]
            else:
                targets = [f"{p}/{m}" for p, ms in gateway.list_models().items() for m in ms]
            if not targets:
                raise ConfigError("no targets", hint="pass --targets provider/model,...")
            result = await drive(
                gateway,
                targets,
                prompts,
                rps=args.rps,
                duration=args.duration,
                timeout=args.timeout,
                run_id=run_id,
            )
            _report(gateway, result, args.rps)
            return result

    asyncio.run(main())
    return 0


def _report(gateway: Any, result: LoadResult, rps: float) -> None:
    where = "json_extract_string(tags_json, '$.loadtest') = ?"
    overall = gateway.query(
        f"""
        SELECT count(DISTINCT trace_id) AS calls,
               count(DISTINCT trace_id) FILTER (WHERE status = 'ok') AS ok_calls,
               count(*) AS rows,
               quantile_cont(latency_ms, 0.50) FILTER (WHERE status = 'ok') AS p50,
               quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok') AS p95,
               quantile_cont(latency_ms, 0.99) FILTER (WHERE status = 'ok') AS p99,
               count(*) FILTER (WHERE cache_status = 'hit') AS cache_hits,
               count(*) FILTER (WHERE cache_status IN ('hit', 'miss')) AS cache_lookups
        FROM calls WHERE {where}
        """,
        [result.run_id],
    ).iloc[0]
    errors = gateway.query(
        f"SELECT error_type, count(*) AS n FROM calls WHERE {where} AND status <> 'ok' "
        "GROUP BY error_type ORDER BY n DESC, error_type",
        [result.run_id],
    )
    calls = int(overall["calls"])
    print(f"loadtest {result.run_id}: {result.sent} requests at a target {rps:g}/s")
    print(f"  achieved send rate   {result.sent / max(result.send_seconds, 1e-9):,.1f}/s")
    print(f"  scheduler max lag    {result.max_lag_ms:,.1f} ms")
    print(f"  calls in the log     {calls} ({int(overall['rows'])} rows incl. retries)")
    print(f"  succeeded            {int(overall['ok_calls'])}")
    for row in errors.itertuples(index=False):
        print(f"  error {row.error_type:<22}{int(row.n)}")
    if int(overall["ok_calls"]):
        print(
            f"  latency ms p50/p95/p99  {overall['p50']:,.1f} / {overall['p95']:,.1f} / "
            f"{overall['p99']:,.1f}"
        )
    lookups = int(overall["cache_lookups"])
    hit_rate = f"{int(overall['cache_hits']) / lookups:.1%}" if lookups else "n/a (no cache)"
    print(f"  cache hit rate       {hit_rate}")
    if gateway.simulated:
        print("  (simulated fleet: no real provider was called)")
    sys.stdout.flush()
