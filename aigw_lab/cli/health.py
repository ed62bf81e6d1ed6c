"""``aigw-lab health``: send one tiny request to each configured target and print its status
and latency. Exits 0 when every target answered, 1 when any failed (so scripts and CI can
use it as a check), 2 on a configuration mistake.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aigw_lab.cli._args import describe, finite_float
from aigw_lab.errors import AigwError

__all__ = ["register", "run"]

PROBE_PROMPT = "Reply with the single word: ok"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health",
        help="send a tiny request to each configured target; print status and latency",
        description=describe(
            "Send one tiny request to each configured target and print its status and latency.",
            "Exit status: 0 when every target answered, 1 when any failed (so scripts and CI "
            "can use it as a check), 2 on a configuration mistake.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        help="a gateway TOML config (default: the offline simulated fleet)",
    )
    parser.add_argument(
        "--targets",
        help="comma-separated provider/model targets (default: every model the config lists)",
    )
    parser.add_argument(
        "--timeout",
        type=finite_float(),
        default=20.0,
        help="seconds to wait for each probe (default: %(default)s)",
    )
    parser.add_argument("--db", default=None, help="log the probes to this DuckDB file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigw_lab.errors import ConfigError
    from aigw_lab.gateway import Gateway

    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout} must be positive", hint="e.g. --timeout 20")
    log = args.db if args.db else None
    if args.config:
        gateway = Gateway.from_config(args.config, log=log)
    else:
        gateway = Gateway.simulated_fleet(log=log)
    with gateway:
        if args.targets:
            targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        else:
            targets = [f"{p}/{m}" for p, models in gateway.list_models().items() for m in models]
        if not targets:
            raise ConfigError(
                "no targets to probe",
                hint='list models = ["..."] in each provider table, or pass --targets p/m,...',
            )
        results = asyncio.run(_probe_all(gateway, targets, args.timeout))
    width = max(len(t) for t in targets)
    print(f"{'target':<{width}}  {'status':<7}  {'latency_ms':>10}  detail")
    for target, ok, latency_ms, detail in results:
        status = "ok" if ok else "FAILED"
        shown = "-" if latency_ms is None else f"{latency_ms:,.1f}"
        print(f"{target:<{width}}  {status:<7}  {shown:>10}  {detail}")
    if gateway.simulated:
        print("(simulated fleet: these probes reached no real provider)")
    return 0 if all(ok for _, ok, _, _ in results) else 1


async def _probe_all(
    gateway: Any, targets: list[str], timeout: float
) -> list[tuple[str, bool, float | None, str]]:
    async def probe(target: str) -> tuple[str, bool, float | None, str]:
        try:
            response = await gateway.achat(
                target, PROBE_PROMPT, max_tokens=5, timeout=timeout, tags={"probe": "health"}
            )
        except AigwError as exc:  # reported per target: one bad target must not hide the rest
            return target, False, None, f"{exc.error_type}: {exc.message}"[:160]
        return target, True, response.latency.total_ms, f"model {response.model}"

    try:
        return list(await asyncio.gather(*(probe(t) for t in targets)))
    finally:
        await gateway.aclose()
