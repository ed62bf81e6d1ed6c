"""``aigw-lab log sync``: copy the team log's new rows (PostgreSQL) into a local DuckDB
mirror, which every reader of a call log reads unchanged (``aigw-lab report --db``, the
notebook, `Gateway.query`). See docs/deployment.md, "One call log for a team".

    aigw-lab log sync --config gateway.toml --mirror team.duckdb   # the config's url_env
    aigw-lab log sync --url-env AIGW_TEAM_LOG_URL --mirror team.duckdb
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import describe, help_without_subcommand
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError

__all__ = ["register", "run_sync"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "log",
        help=VERBS["log"],
        description="The team log: every process writes its rows to PostgreSQL "
        '([log] backend = "postgres"); readers keep a local mirror. See docs/deployment.md.',
    )
    commands = parser.add_subparsers(dest="log_command", metavar="ACTION")
    sync = commands.add_parser(
        "sync",
        help="copy the team log's new rows into a local DuckDB mirror",
        description=describe(
            "Copy the rows written to the team log since the mirror's last sync (past its "
            "watermark) into the DuckDB file --mirror, created on first use. The mirror is an "
            "ordinary call log: give it to aigw-lab report --db, Gateway(log=...) or the "
            "analysis functions.",
            "The URL is read from the environment variable --url-env names, or from the "
            "[log] url_env of --config; it is never given on the command line.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync.add_argument("--mirror", type=Path, required=True, help="the local DuckDB mirror")
    where = sync.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help='a gateway config with [log] backend = "postgres"')
    where.add_argument("--url-env", help="the environment variable holding the URL")
    sync.set_defaults(func=run_sync)
    parser.set_defaults(func=help_without_subcommand(parser))


def run_sync(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.store.team_mirror import TeamLogMirror

    url = _url(args)
    with TeamLogMirror(url, args.mirror) as mirror:
        result = mirror.sync()
    copied = ", ".join(f"{table} {n}" for table, n in result.rows.items() if n)
    print(
        f"synced {result.total} rows into {args.mirror}"
        + (f" ({copied})" if copied else "")
        + f"; calls up to _seq {result.watermarks.get('calls', 0)}"
    )
    return 0


def _url(args: argparse.Namespace) -> str:
    if args.config:
        # lazy: the config module builds on most of the package
        from aigw_lab.config import load_config

        config = load_config(args.config)
        if config.team_log is None:
            raise ConfigError(
                f'{args.config} has no [log] backend = "postgres"',
                hint='add backend = "postgres" and url_env to its [log] table, or use --url-env',
            )
        return str(config.team_log.url)
    name = args.url_env
    if not re.fullmatch(r"\w+", name):
        raise ConfigError(
            f"--url-env {name[:60]!r} is not an environment variable name",
            hint="give the variable's name (letters, digits, _), e.g. AIGW_TEAM_LOG_URL",
        )
    url = os.environ.get(name, "")
    if not re.match(r"postgres(ql)?://\S+\Z", url):
        raise ConfigError(
            f"{name} is unset or does not hold a postgresql:// URL",
            hint=f"export {name}=postgresql://user@host:5432/db",
        )
    return url
