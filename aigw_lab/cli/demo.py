"""``aigw-lab demo``: a few hundred calls through the gateway, all logged, then a per-model
report computed with SQL over the DuckDB call log.

Offline by default: the calls go to the simulated fleet (with faults injected, so the log has
errors worth reading). With API keys in the environment, ``--providers openai,anthropic``
points the same demo at real providers instead.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import describe, finite_float
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.providers.base import ProviderSpec

__all__ = ["register", "run", "REAL_PROVIDER_DEFAULTS", "DEMO_FAULTS"]

#: Fault rates injected into the simulated fleet during the demo.
DEMO_FAULTS: dict[str, float] = {
    "rate_limited": 0.03,
    "server_error": 0.015,
    "unavailable": 0.01,
    "overloaded": 0.01,
    "timeout": 0.01,
    "truncated": 0.02,
    "malformed": 0.01,
}

#: For ``--providers``: the kind, key variable and a cheap default model of each real provider.
REAL_PROVIDER_DEFAULTS: dict[str, dict[str, Any]] = {
    "openai": {
        "kind": "openai",
        "api_key_env": "OPENAI_API_KEY",
        "base_url_env": "OPENAI_BASE_URL",
        "model": "gpt-4o-mini",
    },
    "anthropic": {
        "kind": "anthropic",
        "api_key_env": "ANTHROPIC_API_KEY",
        "base_url_env": "ANTHROPIC_BASE_URL",
        "model": "claude-3-5-haiku-latest",
    },
    "workers-ai": {
        "kind": "workers-ai",
        "api_key_env": "CLOUDFLARE_API_TOKEN",
        "account_id_env": "CLOUDFLARE_ACCOUNT_ID",
        "model": "@cf/meta/llama-3.1-8b-instruct",
    },
}

DEFAULT_DB = "aigw_lab_demo.duckdb"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help=VERBS["demo"],
        description=describe(
            "Send a few hundred calls through the gateway, every one logged, then print a "
            "per-model report (calls, errors, latency percentiles, tokens, cost) computed with "
            "SQL over the DuckDB call log.",
            "Offline by default: the calls go to the simulated fleet, with faults injected so "
            "the log has errors worth reading. With API keys in the environment, "
            "--providers openai,anthropic points the same demo at real providers instead.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB log file (default: {DEFAULT_DB})")
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help="number of calls (default: 300 simulated, 6 per real model)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="calls in flight at once (default: 32)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the simulated fleet (default: 0)"
    )
    parser.add_argument(
        "--time-scale",
        type=finite_float(),
        default=1.0,
        help="scale the simulated latencies: 1.0 = as modelled, 0 = no waiting "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--providers",
        default="simulated",
        help="'simulated' (default), or real providers, comma-separated: "
        + ", ".join(REAL_PROVIDER_DEFAULTS)
        + " (needs their API key variables)",
    )
    parser.add_argument(
        "--config",
        help="a gateway TOML config: run the demo over the models it lists instead",
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="do not inject faults into the fleet"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.gateway import Gateway

    if args.calls is not None and args.calls < 1:
        raise ConfigError(f"--calls {args.calls} must be at least 1", hint="e.g. --calls 300")
    if args.concurrency < 1:
        raise ConfigError(
            f"--concurrency {args.concurrency} must be at least 1", hint="e.g. --concurrency 32"
        )
    if args.time_scale < 0:
        raise ConfigError(
            f"--time-scale {args.time_scale} must not be negative",
            hint="1.0 waits as modelled, 0 does not wait",
        )
    db = _check_db_path(args.db)

    simulated = args.providers.strip() == "simulated" and not args.config
    if args.config:
        gateway = Gateway.from_config(args.config, log=db)
        simulated = gateway.simulated
        calls = args.calls or (300 if simulated else 6 * len(_targets(gateway)))
    elif simulated:
        faults = None if args.no_faults else DEMO_FAULTS
        gateway = Gateway.simulated_fleet(
            seed=args.seed, time_scale=args.time_scale, faults=faults, timeout=10.0, log=db
        )
        calls = args.calls or 300
    else:
        specs, models = _real_specs(args.providers)
        gateway = Gateway(specs, log=db)
        calls = args.calls or 6 * len(models)
    asyncio.run(_main(gateway, args, calls, simulated, db))
    return 0


async def _main(
    gateway: Any, args: argparse.Namespace, calls: int, simulated: bool, db: str
) -> None:
    async with gateway:  # closes the async connection pool of this event loop, then the log
        targets = _targets(gateway)
        if not targets:
            raise ConfigError(
                "the config lists no models to call",
                hint='add models = ["..."] to each provider table in the config',
            )
        for provider in {t.partition("/")[0] for t in targets}:
            gateway.provider(provider)  # a missing key fails here, before any call is sent
        say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
        say(
            f"aigw-lab demo: {calls} calls over {len(targets)} "
            f"{'SIMULATED ' if simulated else ''}targets, {args.concurrency} at a time, "
            f"logging to {db}"
        )
        started = time.perf_counter()
        await _drive(gateway, targets, _prompts(simulated), calls, args.concurrency, say)
        elapsed = time.perf_counter() - started
        _report(gateway, elapsed, simulated, db)


def _check_db_path(db: str) -> str:
    if db == ":memory:":
        return db
    path = Path(db).expanduser()
    if path.is_dir():
        raise ConfigError(f"--db {db!r} is a directory", hint="give a file path like demo.duckdb")
    return str(path)


def _real_specs(names: str) -> tuple[list[ProviderSpec], list[str]]:
    specs: list[ProviderSpec] = []
    models: list[str] = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        defaults = REAL_PROVIDER_DEFAULTS.get(name)
        if defaults is None:
            raise ConfigError(
                f"--providers names unknown provider {name!r}",
                hint="use 'simulated' or any of: " + ", ".join(REAL_PROVIDER_DEFAULTS),
            )
        account_id = None
        if "account_id_env" in defaults:
            account_id = os.environ.get(defaults["account_id_env"])
            if not account_id:
                raise ConfigError(
                    f"{name} needs the account id in ${defaults['account_id_env']}",
                    hint=f"export {defaults['account_id_env']}=<your Cloudflare account id>",
                )
        specs.append(
            ProviderSpec(
                name=name,
                kind=defaults["kind"],
                api_key_env=defaults["api_key_env"],
                account_id=account_id,
                # The official SDKs' variables, so a proxy or a local server can stand in.
                base_url=os.environ.get(defaults.get("base_url_env", "")) or None,
                models=(defaults["model"],),
                timeout=60.0,
            )
        )
        models.append(f"{name}/{defaults['model']}")
    if not specs:
        raise ConfigError("--providers is empty", hint="name at least one provider")
    return specs, models


def _targets(gateway: Any) -> list[str]:
    return [f"{p}/{m}" for p, models in gateway.list_models().items() for m in models]


def _prompts(simulated: bool) -> list[dict[str, Any]]:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.datasets import load_bundled

    items = load_bundled()
    return items if simulated else items[:20]


async def _drive(
    gateway: Any,
    targets: Sequence[str],
    items: Sequence[dict[str, Any]],
    calls: int,
    concurrency: int,
    say: Any,
) -> None:
    """Send ``calls`` requests, a fifth of them streamed, ``concurrency`` at a time."""
    plan = list(itertools.islice(zip(itertools.cycle(targets), itertools.cycle(items)), calls))
    semaphore = asyncio.Semaphore(concurrency)
    done = 0
    failed = 0
    last_report = time.perf_counter()

    async def one(i: int, target: str, item: dict[str, Any]) -> None:
        nonlocal done, failed, last_report
        async with semaphore:
            kwargs = {
                "max_tokens": 256,
                "tags": {"demo": "1", "category": str(item.get("category", ""))},
            }
            try:
                if i % 5 == 4:
                    stream = gateway.astream(target, item["prompt"], **kwargs)
                    await stream.until_done()
                else:
                    await gateway.achat(target, item["prompt"], **kwargs)
            except AigwError:
                failed += 1  # logged by the gateway; the report counts it from the log
            done += 1
            now = time.perf_counter()
            if now - last_report >= 2.0 or done == calls:
                last_report = now
                say(f"  {done}/{calls} calls done, {failed} failed")

    await asyncio.gather(*(one(i, t, item) for i, (t, item) in enumerate(plan)))


def _report(gateway: Any, elapsed: float, simulated: bool, db: str) -> None:
    summary = gateway.summary()
    view = summary.assign(target=summary.provider_name + "/" + summary.request_model)[
        [
            "target",
            "calls",
            "errors",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "ttft_p50_ms",
            "input_tokens",
            "output_tokens",
            "cost_usd",
        ]
    ]
    view = view.assign(cost_usd=[None if c != c else f"{c:.6f}" for c in view.cost_usd]).rename(
        columns={
            "latency_p50_ms": "p50_ms",
            "latency_p95_ms": "p95_ms",
            "latency_p99_ms": "p99_ms",
            "ttft_p50_ms": "ttft_p50_ms",
            "input_tokens": "in_tokens",
            "output_tokens": "out_tokens",
        }
    )
    errors = gateway.query(
        "SELECT error_type, count(*) AS calls, "
        "string_agg(DISTINCT CAST(http_status_code AS VARCHAR), ', ') AS http_statuses "
        "FROM calls WHERE status = 'error' GROUP BY error_type ORDER BY calls DESC, error_type"
    )
    total = gateway.query(
        "SELECT count(*) AS n_rows, count(DISTINCT trace_id) AS n_calls FROM calls"
    )
    print()
    if simulated:
        print(
            "All numbers below come from the SIMULATED provider fleet (offline): "
            "no real model answered."
        )
    print(f"Per target, from SQL over the call log {db}")
    print("(latency over successful calls; time to first token over streamed ones):")
    print(_table(view))
    if len(errors):
        print()
        print("Errors by type:")
        print(_table(errors))
    print()
    print(
        f"{int(total['n_rows'][0])} log rows for {int(total['n_calls'][0])} calls "
        f"in {elapsed:.1f} s."
    )
    if db != ":memory:":
        query = f"duckdb.connect({db!r}).sql('FROM calls LIMIT 5').show()"
        print(f'Explore it: python -c "import duckdb; {query}"')


def _table(df: Any) -> str:
    """A plain-text table: numbers right-aligned, floats rounded for reading."""
    if df is None or len(df) == 0:
        return "  (none)"
    columns = list(df.columns)
    rows = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    numeric = [all(_is_number(v) for v in df[c]) for c in columns]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        )

    lines = [fmt([str(c) for c in columns]), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    return "\n".join("  " + line for line in lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer():
            return f"{int(value):,}"
        if abs(value) < 0.01:
            return f"{value:.6f}"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)
