"""The ``aigw-lab`` command line.

Each subcommand lives in its own module under `aigw_lab.cli` with a ``register(subparsers)``
function that adds its parser and sets ``func``. Errors that are the user's own (a bad
config, a missing key, an unwritable path) are printed as one clear message, never a
traceback, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aigw_lab.errors import AigwError

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "demo",
    "simulate",
    "health",
    "loadtest",
    "run",
    "report",
    "serve",
    "keys",
    "policy",
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from aigw_lab import __version__

    parser = argparse.ArgumentParser(
        prog="aigw-lab",
        description="AI gateway lab: providers, caching, routing and a DuckDB call log.",
    )
    parser.add_argument("--version", action="version", version=f"aigw-lab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"aigw_lab.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except AigwError as exc:
        print(f"aigw-lab: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {exc.hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aigw-lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
