"""`aigw-lab report`: write an experiment of a call log as a self-contained HTML report.

    aigw-lab report --db calls.duckdb --out report.html [--experiment ID] [--scorer NAME]
    aigw-lab report --config gateway.toml ...   # the config's log, encrypted or not

The log is read from a snapshot, so a gateway may keep writing it meanwhile.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import StoreError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help=VERBS["report"],
        description="Write one experiment of a call log (the latest unless --experiment "
        "names one) as a single HTML file that works offline: what was run, the targets' "
        "summary, quality per category, every pair of targets, cost and latency, and a "
        "searchable browser of the items' prompts and answers.",
    )
    parser.add_argument(
        "--db",
        type=Path,
        help="the call log (.duckdb file) (default: the --config file's [gateway] db)",
    )
    parser.add_argument(
        "--config",
        metavar="GATEWAY.toml",
        help="the gateway config the log was written with: its [log] encryption key opens an "
        "encrypted log",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("report.html"),
        help="HTML file to write (default: %(default)s)",
    )
    parser.add_argument("--experiment", help="experiment id (default: the latest)")
    parser.add_argument(
        "--scorer",
        help="scorer whose scores are the quality (default: the one with the most scores)",
    )
    parser.add_argument("--title", help="the report's title")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.cli._checks import check_output_file, check_scorer_in_log, log_to_read
    from aigw_lab.report import write_report

    check_output_file(args.out, "--out")
    db, encryption = log_to_read(args.db, args.config)
    if not db.expanduser().is_file():
        raise StoreError(
            f"no call log at {db}",
            hint="pass --db the .duckdb file your gateway or experiment logged to",
        )
    if args.scorer is not None:  # before the report's work; a misspelt name was ignored
        check_scorer_in_log(db, args.scorer, args.experiment, encryption=encryption)
    source: Any = db
    if encryption is not None:
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.store import CallLog

        source = CallLog.snapshot(db, encryption=encryption)
    try:
        path = write_report(
            source, args.out, experiment_id=args.experiment, scorer=args.scorer, title=args.title
        )
    finally:
        if source is not db:
            source.close()
    print(f"wrote {path}")
    return 0
