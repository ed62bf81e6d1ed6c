"""`aigw-lab matrix`: a call log's replay matrix (prompts x targets), its empty cells, and
what filling them through batch APIs would cost; ``--fill --yes`` fills them.

    aigw-lab matrix --db calls.duckdb                        # summary, empty cells, estimate
    aigw-lab matrix --db calls.duckdb --targets sim-openai/sim-large,sim-anthropic/sim-haikuish
    aigw-lab matrix --db calls.duckdb --fill --yes --max-cost 0.50

The gateway that prices and sends the fill is ``--config``'s, else the offline simulated
fleet. Without ``--fill`` the log is read from a snapshot, so a gateway may keep writing it;
``--fill`` without ``--yes`` shows the estimate and sends nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import finite_float, int_at_least
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError, StoreError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "matrix",
        help=VERBS["matrix"],
        description="Read a call log as a replay matrix: every prompt (conversation) x every "
        "target (provider/model) with the answer, cost, latency and score of its calls (live, "
        "shadow and batch rows). Lists the empty cells and estimates, before anything is "
        "sent, what filling them through the providers' batch APIs costs at batch and at live "
        "prices; --fill --yes --max-cost USD sends them and prints the filled matrix.",
    )
    parser.add_argument("--db", type=Path, required=True, help="the call log (.duckdb file)")
    parser.add_argument(
        "--config",
        metavar="GATEWAY.toml",
        help="the gateway that prices and sends the fill (default: the simulated fleet)",
    )
    parser.add_argument(
        "--targets",
        help="comma-separated provider/model columns (default: every target in the log)",
    )
    parser.add_argument(
        "--scorer", help="scores to use as quality (default: the scorer with the most scores)"
    )
    parser.add_argument(
        "--include-experiments", action="store_true", help="count experiments' calls too"
    )
    parser.add_argument("--no-shadow", action="store_true", help="leave shadow calls out")
    parser.add_argument(
        "--fill", action="store_true", help="fill the empty cells (with --yes) through batches"
    )
    parser.add_argument("--yes", action="store_true", help="send the fill (else a dry run)")
    parser.add_argument(
        "--max-cost",
        type=finite_float(minimum=0.0),
        metavar="USD",
        help="refuse a fill estimated above this many dollars (required with --fill --yes)",
    )
    parser.add_argument(
        "--live-fallback",
        action="store_true",
        help="fill targets without a batch API by live calls, at live prices",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the simulated fleet's seed, without --config (default: %(default)s)",
    )
    parser.add_argument(
        "--poll-interval",
        type=finite_float(minimum=0.0),
        default=30.0,
        metavar="S",
        help="seconds between batch status polls (default: %(default)s)",
    )
    parser.add_argument(
        "--empty",
        type=int_at_least(0),
        default=10,
        metavar="N",
        help="empty cells to list (default: 10)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.experiments.replay_fill import fill, plan_fill
    from aigw_lab.experiments.replay_matrix import ReplayMatrix

    db = args.db.expanduser()
    if not db.is_file():
        raise StoreError(
            f"no call log at {db}",
            hint="pass --db the .duckdb file your gateway or experiment logged to",
        )
    if args.fill and args.yes and args.max_cost is None:
        raise ConfigError(
            "--fill --yes needs --max-cost",
            hint="add --max-cost USD: the fill is refused when its estimate is higher",
        )
    options: dict[str, Any] = {
        "targets": args.targets,
        "scorer": args.scorer,
        "include_shadow": not args.no_shadow,
        "include_experiments": args.include_experiments,
    }
    sending = args.fill and args.yes
    gateway = _gateway(args, db if sending else None)
    try:
        # A fill writes through the gateway's log; a look reads a snapshot of the file.
        source: Any = gateway.log if sending else db
        matrix = ReplayMatrix.from_log(source, **options)
        print(matrix.describe())
        _print_empty(matrix, args.empty)
        plan = _plan(matrix, gateway, args, plan_fill)
        if plan is None:
            return 0
        print(plan.describe())
        if not args.fill:
            return 0
        if not args.yes:
            print("dry run: nothing sent; add --yes --max-cost USD to submit")
            return 0
        result = fill(plan, gateway, max_cost_usd=args.max_cost, poll_interval=args.poll_interval)
        print(
            f"filled {result.filled} cells ({result.failed} failed) for ${result.cost_usd:.4f} "
            f"in {len(result.jobs)} batch job(s)"
            + (f"; skipped for the budget: {', '.join(result.skipped)}" if result.skipped else "")
        )
        print(result.matrix.describe())
        return 0
    finally:
        gateway.close()


def _gateway(args: argparse.Namespace, log: Path | None) -> Any:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.gateway import Gateway

    if args.config is not None:
        return Gateway.from_config(args.config, log=log)
    return Gateway.simulated_fleet(seed=args.seed, time_scale=0.0, log=log)


def _print_empty(matrix: Any, limit: int) -> None:
    empty = matrix.empty_cells()
    if not empty or not limit:
        return
    prompts = {item.id: item.prompt for item in matrix.prompts.items}
    print(f"empty cells ({len(empty)}; first {min(limit, len(empty))}):")
    for prompt_id, target in empty[:limit]:
        text = " ".join(prompts[prompt_id].split())
        text = text if len(text) <= 60 else text[:57] + "..."
        print(f"  {target:<34} {prompt_id}  {text}")


def _plan(matrix: Any, gateway: Any, args: argparse.Namespace, plan_fill: Any) -> Any:
    """The fill plan, or None (with a line saying why) when no estimate can be made."""
    if not matrix.empty_cells():
        print("no empty cells: nothing to fill")
        return None
    foreign = sorted({t.split("/", 1)[0] for t in matrix.targets} - set(gateway.provider_names))
    if foreign:
        where = "--config's gateway" if args.config else "the simulated fleet (no --config)"
        message = f"providers {', '.join(foreign)} are not in {where}"
        if args.fill:
            raise ConfigError(
                f"cannot fill: {message}",
                hint="pass --config the gateway those targets are configured in, or --targets",
            )
        print(f"no estimate: {message}; pass --config to price them")
        return None
    return plan_fill(matrix, gateway, live_fallback=args.live_fallback)
