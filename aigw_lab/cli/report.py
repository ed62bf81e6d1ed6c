"""`aigw-lab report`: write an experiment of a call log as a self-contained HTML report.

    aigw-lab report --db calls.duckdb --out report.html [--experiment ID] [--scorer NAME]

The log is read from a snapshot, so a gateway may keep writing it meanwhile.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aigw_lab.errors import StoreError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an experiment's HTML report (summary, paired comparison, charts)",
        description="Write one experiment of a call log (the latest unless --experiment "
        "names one) as a single HTML file that works offline.",
    )
    parser.add_argument("--db", required=True, type=Path, help="the call log (.duckdb file)")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")
    parser.add_argument("--experiment", help="experiment id (default: the latest)")
    parser.add_argument(
        "--scorer",
        help="scorer whose scores are the quality (default: the one with the most scores)",
    )
    parser.add_argument("--title", help="the report's title")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigw_lab.report import write_report

    if not args.db.expanduser().is_file():
        raise StoreError(
            f"no call log at {args.db}",
            hint="pass --db the .duckdb file your gateway or experiment logged to",
        )
    if args.scorer is not None:  # before the report's work; a misspelt name was ignored
        from aigw_lab.cli._checks import check_scorer_in_log

        check_scorer_in_log(args.db, args.scorer, args.experiment)
    path = write_report(
        args.db, args.out, experiment_id=args.experiment, scorer=args.scorer, title=args.title
    )
    print(f"wrote {path}")
    return 0
