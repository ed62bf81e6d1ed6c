"""``aigw-lab shadow report``: score the shadow traffic a gateway logged (live call vs the
candidate's answer to the same request) and print win / tie / loss with 95% intervals, and
the cost and latency deltas (`aigw_lab.experiments.shadow_report`).

    aigw-lab shadow report --db calls.duckdb --scorer auto --dataset mixed_v1
    aigw-lab shadow report --db calls.duckdb --judge sim-openai/sim-large
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import describe, finite_float, help_without_subcommand
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError

__all__ = ["register", "run_report"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "shadow",
        help=VERBS["shadow"],
        description="Shadow traffic: a gateway with [shadow] (or Shadow(...)) also sends a "
        "sampled share of live calls to a candidate and logs each shadow call linked to its "
        "live call. See docs/routing.md, 'Shadow traffic'.",
    )
    commands = parser.add_subparsers(dest="shadow_command", metavar="ACTION")
    report = commands.add_parser(
        "report",
        help="score the logged live/shadow pairs; print win/tie/loss with intervals",
        description=describe(
            "Read every (live call, shadow call) pair of the call log, score both answers "
            "with --scorer (against the references of --dataset when given) or judge the "
            "candidate's answer against the live one with --judge, write the scores to the "
            "log's scores table, and print the candidate's win, tie and loss shares with 95% "
            "Wilson intervals, its net win rate, and the cost and latency deltas per call "
            "with bootstrap intervals over pairs.",
            "Scores already in the log for a call and scorer are reused (--rescore scores "
            "again). A judge is called through --config's gateway, or the offline simulated "
            "fleet when --config is not given; its calls are logged too.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("--db", type=Path, help="the call log (default: --config's db)")
    report.add_argument("--config", help="a gateway TOML config (its db, its judge providers)")
    how = report.add_mutually_exclusive_group()
    how.add_argument("--scorer", help="a scorer name, e.g. auto, exact, numeric, contains")
    how.add_argument("--judge", metavar="PROVIDER/MODEL", help="a pairwise LLM judge")
    report.add_argument(
        "--dataset",
        help="a bundled dataset name or a .jsonl file: the references, matched to the live "
        "calls by item id or prompt text",
    )
    report.add_argument("--candidate", help="only pairs whose candidate is this provider/model")
    report.add_argument("--live", help="only pairs whose live answer came from this target")
    report.add_argument(
        "--tie-tolerance",
        type=finite_float(minimum=0.0),
        default=0.0,
        help="scores closer than this are a tie (default: %(default)s)",
    )
    report.add_argument("--rescore", action="store_true", help="ignore scores in the log")
    report.add_argument("--no-write", action="store_true", help="do not write the scores")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    report.add_argument("--json", action="store_true", help="print the summary as JSON")
    report.set_defaults(func=run_report)
    parser.set_defaults(func=help_without_subcommand(parser))


def run_report(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.cli._checks import log_to_read
    from aigw_lab.experiments.shadow_report import shadow_report
    from aigw_lab.store import CallLog

    if args.scorer is None and args.judge is None:
        args.scorer = "auto"
    db, encryption = log_to_read(args.db, args.config)
    if not Path(db).is_file():
        raise ConfigError(
            f"call log {str(db)!r} does not exist",
            hint="pass --db the .duckdb file your gateway logged to",
        )
    dataset = _dataset(args.dataset) if args.dataset else None
    with CallLog(db, encryption=encryption) as log:
        gateway = _judge_gateway(args, log) if args.judge else None
        try:
            report = shadow_report(
                log,
                scorer=args.scorer,
                judge=args.judge,
                gateway=gateway,
                dataset=dataset,
                shadow_target=args.candidate,
                live_target=args.live,
                tie_tolerance=args.tie_tolerance,
                write=not args.no_write,
                reuse=not args.rescore,
                seed=args.seed,
            )
        finally:
            if gateway is not None:
                gateway.close()
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        print(report.summary())
    return 0


def _judge_gateway(args: argparse.Namespace, log: Any) -> Any:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.gateway import Gateway

    if args.config:
        # shadow=None: a config's [shadow] must not shadow the judge's own calls.
        gateway = Gateway.from_config(args.config, log=log, shadow=None)
    else:
        gateway = Gateway.simulated_fleet(log=log, time_scale=0.0)
    try:
        gateway.resolve(args.judge)
    except Exception as exc:
        gateway.close()
        raise ConfigError(
            f"--judge {args.judge!r} is not a model the gateway serves",
            hint="name a provider/model of --config (without --config: the simulated fleet, "
            "e.g. sim-openai/sim-large)",
        ) from exc
    return gateway


def _dataset(spec: str) -> Any:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.datasets import Dataset, bundled_dataset, list_bundled

    if spec in list_bundled():
        return bundled_dataset(spec)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"--dataset {spec!r} is neither a bundled dataset nor a file",
            hint=f"use one of {', '.join(list_bundled())}, or a .jsonl file of items",
        )
    return Dataset.from_jsonl(path)


def _as_json(report: Any) -> dict[str, Any]:
    def share(s: Any) -> dict[str, Any]:
        return {"count": s.count, "n": s.n, "share": s.share, "low": s.low, "high": s.high}

    def mean(m: Any) -> dict[str, Any]:
        return {"mean": m.mean, "low": m.low, "high": m.high, "n": m.n}

    return {
        "scorer": report.scorer,
        "simulated": report.simulated,
        "live_targets": list(report.live_targets),
        "shadow_targets": list(report.shadow_targets),
        "pairs": report.n_pairs,
        "scored": report.n_scored,
        "unscored": report.unscored,
        "win": share(report.win),
        "tie": share(report.tie),
        "loss": share(report.loss),
        "net_win_rate": mean(report.net),
        "cost_delta_usd": mean(report.cost_delta_usd),
        "latency_delta_ms": mean(report.latency_delta_ms),
        "live_cost_usd": report.live_cost_usd,
        "shadow_cost_usd": report.shadow_cost_usd,
        "confidence": report.confidence,
    }
