"""``aigw-lab warm CONFIG.toml``: fill the gateway's persistent exact cache from a dataset or
from the most frequent prompts of a call log, showing the plan and its estimated cost before
any call (`aigw_lab.experiments.warming`).

Exit codes: 0 warmed (or ``--dry-run``); 1 not confirmed; 2 a mistake in the files or
options (one message naming the fix), including a config whose exact cache is in memory
(what this command fills would be gone when it ends); 3 warmed, but some calls failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import finite_float, int_at_least
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError

__all__ = ["register", "run", "warm_at_startup"]

EXIT_NOT_CONFIRMED = 1
EXIT_SOME_FAILED = 3


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``warm`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "warm",
        help=VERBS["warm"],
        description='Fill the gateway\'s exact cache ([cache] store = "duckdb") from a '
        "dataset or from a call log's most frequent prompts. Answers the log already holds "
        "cost nothing; the rest are called through the gateway (or sent as a batch job) "
        "after the plan and its estimated cost are shown. See docs/caching.md, 'Warming'.",
    )
    parser.add_argument("config", metavar="CONFIG.toml", help="the gateway config file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-dataset",
        metavar="NAME",
        help="bundled:NAME (or a bundled name), recorded:NAME, or a .jsonl file; needs --target",
    )
    source.add_argument(
        "--from-log", metavar="DB", help="a DuckDB call log: warm its most frequent prompts"
    )
    parser.add_argument(
        "--top",
        type=int_at_least(1),
        metavar="N",
        help="how many prompts: the N most frequent (log; required) or the first N (dataset)",
    )
    parser.add_argument(
        "--target",
        metavar="PROVIDER/MODEL",
        help="the model whose answers to cache (default for a log: each call's own)",
    )
    parser.add_argument("--since", metavar="ISO", help="log: only calls from this time on")
    parser.add_argument("--until", metavar="ISO", help="log: only calls before this time")
    parser.add_argument(
        "--tenant",
        metavar="TENANT",
        help="log: only this tenant's calls; dataset: warm this tenant's namespace",
    )
    parser.add_argument(
        "--max-cost",
        type=finite_float(minimum=0.0),
        metavar="USD",
        help="refuse to spend more than this on paid calls",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send the paid calls as provider batch jobs, at the batch price (OpenAI, "
        "Anthropic kinds)",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="call without asking")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and its cost; send nothing"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Plan, ask, warm; returns the exit code. A `ConfigError` (or any `AigwError`)
    propagates to the CLI's main, which prints it as one line (exit 2)."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.config import load_config
    from aigw_lab.experiments.warming import plan_warming, warm
    from aigw_lab.gateway.gateway import Gateway

    config = load_config(args.config)
    cache = config.cache or {}
    if cache.get("store", "memory") != "duckdb":
        raise ConfigError(
            f"{args.config}: the exact cache is "
            f"{'in memory' if config.cache is not None else 'not configured'}, so what warm "
            "fills would be gone when this command ends",
            hint='set [cache] store = "duckdb" and path = "cache.duckdb" in the config',
        )
    if args.from_log is not None:
        if args.top is None:
            raise ConfigError("--from-log needs --top N", hint="e.g. --top 100")
        if not Path(args.from_log).expanduser().is_file():
            raise ConfigError(
                f"no call log at {args.from_log!r}",
                hint="pass --from-log the .duckdb file your gateway logged to",
            )
    elif args.target is None:
        raise ConfigError("--from-dataset needs --target", hint="e.g. --target openai/gpt-4o-mini")
    for flag in ("since", "until"):
        if args.from_dataset is not None and getattr(args, flag) is not None:
            raise ConfigError(f"--{flag} applies to --from-log only", hint=f"drop --{flag}")

    # shadow=None: a config's [shadow] must not shadow (and pay for) the warming calls.
    gateway = Gateway.from_config(args.config, shadow=None)
    with gateway:
        log: Any = None
        opened: Any = None
        if args.from_log is not None:
            same = config.db is not None and _same_file(args.from_log, config.db)
            log = True if same and gateway.log is not None else args.from_log
            encryption = config.log_options.get("encryption")
            if log is not True and encryption is not None:  # the config's key reads it
                # lazy: duckdb and the store load only to read an encrypted log
                from aigw_lab.store import CallLog

                log = opened = CallLog.snapshot(args.from_log, encryption=encryption)
        try:
            plan = _plan(plan_warming, gateway, args, log)
        finally:
            if opened is not None:
                opened.close()
        print(plan.describe())
        if gateway.simulated:
            print("  every provider is SIMULATED: costs are the simulated fleet's prices")
        if config.semantic_cache is not None:
            print(
                "  the [semantic_cache] lives in the server's memory: this command does not "
                "warm it (Python: plan_warming/warm on the gateway you serve)"
            )
        if args.dry_run:
            print("dry run: nothing was sent")
            return 0
        to_call = plan.count("call")
        if to_call and not args.yes and not gateway.simulated:
            if not _confirm(f"  send {to_call} paid calls? [y/N] "):
                print(
                    f"aigw-lab: not started: pass --yes to send the {to_call} paid calls",
                    file=sys.stderr,
                )
                return EXIT_NOT_CONFIRMED
        report = warm(plan, gateway, max_cost_usd=args.max_cost)
        print(report.describe())
    return EXIT_SOME_FAILED if report.failed else 0


def _plan(plan_warming: Any, gateway: Any, args: argparse.Namespace, log: Any) -> Any:
    return plan_warming(
        gateway,
        dataset=args.from_dataset,
        log=log,
        top=args.top,
        target=args.target,
        since=args.since,
        until=args.until,
        tenant=args.tenant,
        caches=("exact",),
        method="batch" if args.batch else "call",
    )


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _confirm(question: str) -> bool:
    # Unlike `run`, a script must say --yes: warming exists to spend money ahead of need.
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def warm_at_startup(config: Any, gateway: Any) -> str | None:
    """Warm ``gateway``'s caches as ``[cache] warm_from`` asks (``aigw-lab serve`` calls this
    before it listens), returning a line saying what was filled (None: nothing asked).

    ``warm_from = "log"`` reads the gateway's own call log (``warm_top`` prompts, each to its
    own target unless ``warm_target``); anything else names a dataset (``warm_target``
    needed; a relative ``.jsonl`` path is relative to the config file). Only answers that
    cost nothing are used unless ``warm_max_usd`` allows paid calls: a server must not
    spend at start-up what no one saw estimated.
    """
    settings = config.cache or {}
    source = settings.get("warm_from")
    if source is None:
        for key in ("warm_top", "warm_target", "warm_max_usd"):
            if key in settings:
                raise ConfigError(
                    f"{config.source}: [cache] {key} is set without warm_from",
                    hint='add warm_from = "log" (or a dataset), or drop the warm_* keys',
                )
        return None
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.experiments.warming import plan_warming, warm

    top, target = settings.get("warm_top"), settings.get("warm_target")
    budget = float(settings.get("warm_max_usd", 0))
    if source == "log":
        if top is None:
            raise ConfigError(
                f'{config.source}: [cache] warm_from = "log" needs warm_top',
                hint="add warm_top = 100 (the most frequent prompts to warm)",
            )
        where = {"log": True}
    else:
        if target is None:
            raise ConfigError(
                f"{config.source}: [cache] warm_from = {source!r} needs warm_target",
                hint='add warm_target = "provider/model" (whose answers to cache)',
            )
        if source.endswith(".jsonl") and config.base_dir is not None:
            path = Path(source).expanduser()
            source = str(path if path.is_absolute() else Path(config.base_dir) / path)
        where = {"dataset": source}
    try:
        plan = plan_warming(gateway, top=top, target=target, **where)
        report = warm(plan, gateway, max_cost_usd=budget, free_only=budget == 0)
    except ConfigError as exc:
        raise ConfigError(
            f"{config.source}: [cache] warm_from: {exc.message}", hint=exc.hint
        ) from exc
    return f"cache warmed at start-up from {plan.source}: {report.describe()}"
