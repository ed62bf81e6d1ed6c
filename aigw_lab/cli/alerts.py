"""``aigw-lab alerts``: evaluate the alert rules of `aigw_lab.alerts` over a call log, print
a table, post what fired to a webhook, and exit non-zero when a rule fires.

    aigw-lab alerts --db calls.duckdb
    aigw-lab alerts --config gw.toml            # its db, its [alerts] and webhook

Exit codes: 0 nothing fired; 1 a rule fired (and the webhook, if any, took it); 2 a
mistake in the command or the config (one line, no traceback); 3 a rule fired and the
webhook could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import describe
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError

__all__ = ["register", "run"]


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date and time, e.g. 2026-12-06T21:00:00+00:00"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "alerts",
        help=VERBS["alerts"],
        description=describe(
            "Compare the latest window of the call log (default: the last 60 minutes) with "
            "the median of the windows before it (default: 24) on four rules: cost per hour, "
            "error rate, cache hit rate and p95 latency; print a table; post the rules that "
            "fire to the [alerts] webhook; exit 1 when one fires.",
            "Exit codes: 0 nothing fired; 1 a rule fired; 2 a mistake in the command or the "
            "config; 3 a rule fired and the webhook was not reached. Thresholds: [alerts] "
            "in --config (docs/deployment.md, 'Observability').",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", type=Path, help="the call log (default: --config's db)")
    parser.add_argument("--config", help="a gateway TOML config: its db, [alerts], [log] key")
    parser.add_argument(
        "--now",
        type=_instant,
        help="evaluate as of this ISO time (default: now); the latest window ends here",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--no-webhook", action="store_true", help="do not post to the webhook, even if set"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.alerts import (
        EXIT_FIRED,
        EXIT_QUIET,
        EXIT_WEBHOOK_FAILED,
        AlertSettings,
        evaluate,
        format_table,
    )
    from aigw_lab.alerts_log import read_windows
    from aigw_lab.alerts_webhook import Webhook, WebhookError
    from aigw_lab.cli._checks import log_to_read
    from aigw_lab.config import load_config
    from aigw_lab.store import CallLog

    table = load_config(args.config).alerts if args.config else None
    where = f"{args.config}: [alerts]" if args.config else "[alerts]"
    settings = AlertSettings.from_config(table, where)
    webhook = None
    if settings.webhook_url_env and not args.no_webhook:
        webhook = Webhook.from_env(settings.webhook_url_env, settings.webhook_token_env, os.environ)
    db, encryption = log_to_read(args.db, args.config)
    if not Path(db).is_file():
        raise ConfigError(
            f"call log {str(db)!r} does not exist",
            hint="pass --db the .duckdb file your gateway logged to",
        )
    now = args.now or datetime.now(UTC)
    with CallLog(db, encryption=encryption) as log:
        current, baseline = read_windows(log, settings, now)
    results = evaluate(current, baseline, settings)
    firing = [r for r in results if r.firing]
    if args.json:
        print(
            json.dumps(
                {"evaluated_at": now.isoformat(), "results": [r.as_dict() for r in results]},
                indent=2,
            )
        )
    else:
        print(f"window {current.start} .. {current.end}: {current.calls} calls")
        print(format_table(results))
        for result in firing:
            print(f"FIRING: {result.message}")
    if not firing:
        return EXIT_QUIET
    if webhook is not None:
        try:
            webhook.send(results, now.isoformat())
        except WebhookError as exc:
            print(f"aigw-lab: alerts: {exc}", file=sys.stderr)
            return EXIT_WEBHOOK_FAILED
    return EXIT_FIRED
