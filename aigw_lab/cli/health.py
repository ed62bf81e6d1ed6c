"""``aigw-lab health``: send one tiny request to each configured target and print its status
and latency. Exits 0 when every target answered, 1 when any failed (so scripts and CI can
use it as a check), 2 on a configuration mistake.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aigw_lab.cli._args import describe, finite_float
from aigw_lab.cli._verbs import VERBS
from aigw_lab.cli.demo import REAL_PROVIDER_DEFAULTS
from aigw_lab.errors import AigwError, ConfigError

__all__ = ["register", "run"]

PROBE_PROMPT = "Reply with the single word: ok"

#: The model probed for a provider that lists no ``models`` (it accepts any name): the cheap
#: default of its kind, as `aigw-lab demo --providers` uses.
PROBE_MODELS: dict[str, str] = {
    **{d["kind"]: d["model"] for d in REAL_PROVIDER_DEFAULTS.values()},
    "workers-ai-openai": REAL_PROVIDER_DEFAULTS["workers-ai"]["model"],
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health",
        help=VERBS["health"],
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
        help="comma-separated provider/model targets (default: every model the config lists; "
        "a provider listing none gets its kind's cheap default model)",
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
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.gateway import Gateway

    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout} must be positive", hint="e.g. --timeout 20")
    log = args.db if args.db else None
    kinds: dict[str, str] = {}
    if args.config:
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.config import load_config

        kinds = {spec.name: spec.kind for spec in load_config(args.config).providers}
        # shadow=None: a config's [shadow] must not shadow (and pay for) the probes.
        gateway = Gateway.from_config(args.config, log=log, shadow=None)
    else:
        gateway = Gateway.simulated_fleet(log=log)
    with gateway:
        if args.targets:
            targets = [t.strip() for t in args.targets.split(",") if t.strip()]
            if not targets:
                raise ConfigError(
                    f"--targets {args.targets!r} names no target",
                    hint="pass --targets provider/model,... (e.g. sim-openai/sim-nano)",
                )
        else:
            targets = default_targets(gateway, args.config, kinds)
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


def default_targets(gateway: Any, config: str | None, kinds: dict[str, str]) -> list[str]:
    """One target per model each provider lists; for a provider that lists none (it accepts
    any model name), its kind's (``kinds``: provider name -> kind) cheap default model
    (`PROBE_MODELS`). A provider of a kind
    without a default is a `ConfigError` naming what to add, raised before any probe."""
    targets: list[str] = []
    unprobeable: list[str] = []
    for provider, models in gateway.list_models().items():
        if provider == "policy":
            continue  # a policy routes to the providers' models, which are probed themselves
        if models:
            targets += [f"{provider}/{m}" for m in models]
            continue
        model = PROBE_MODELS.get(kinds.get(provider, ""))
        if model is None:
            unprobeable.append(provider)
        else:
            targets.append(f"{provider}/{model}")
    if unprobeable:
        names = ", ".join(repr(p) for p in unprobeable)
        where = f" in {config}" if config else ""
        first = unprobeable[0]
        raise ConfigError(
            f"no model to probe for provider{'s' if len(unprobeable) > 1 else ''} {names}: "
            "it lists no models and its kind has no default one",
            hint=f'add models = ["MODEL"] to [providers.{first}]{where}, or pass '
            f"--targets {first}/MODEL,...",
        )
    if not targets:
        raise ConfigError(
            "no targets to probe: the config has no providers",
            hint="add a [providers.NAME] table (docs/config.md), or pass --targets p/m,...",
        )
    return targets


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
