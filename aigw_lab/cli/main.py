"""The ``aigw-lab`` command line.

Each subcommand lives in its own module under `aigw_lab.cli` with a ``register(subparsers)``
function that adds its parser and sets ``func``. A command imports and builds the parser of
its own verb only; the others are listed by name and one-line help (`aigw_lab.cli._verbs`),
so ``--help`` and argparse's errors read as before. Errors that are the user's own (a bad
config, a missing key, an unwritable path) are printed as one clear message, never a
traceback, and the command exits 2 (argparse's usage errors too). Ctrl-C exits 130.

Anything else is a bug, or an input not checked yet: it is printed on one line as an
unexpected error, exit status 70 (EX_SOFTWARE); ``AIGW_LAB_DEBUG=1`` shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Sequence

from aigw_lab import __version__
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import AigwError

__all__ = ["main", "build_parser", "verb_of", "SUBCOMMANDS"]

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = tuple(VERBS)

EXIT_USER_ERROR = 2
EXIT_UNEXPECTED = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed writer
#: Set (to anything non-empty) to see the traceback of an unexpected error.
DEBUG_ENV_VAR = "AIGW_LAB_DEBUG"


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The ``aigw-lab`` parser. Without ``verb``, every subcommand's whole parser (the tree
    that tests and tools walk); with one, only that verb's parser is built and the others
    are placeholders carrying their name and one-line help, which is all ``aigw-lab --help``
    and an invalid-choice error show. A ``verb`` that is not a subcommand builds none."""
    parser = argparse.ArgumentParser(
        prog="aigw-lab",
        description="AI gateway lab: a gateway over LLM providers (or an offline simulated "
        "fleet) with caching, routing, budgets and a DuckDB call log, and experiments, "
        "reports and learned routing policies on top. Run aigw-lab COMMAND --help for a "
        "command's options.",
    )
    parser.add_argument("--version", action="version", version=f"aigw-lab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in VERBS.items():
        if verb is None or name == verb:
            importlib.import_module(f"aigw_lab.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def verb_of(argv: Sequence[str]) -> str:
    """The subcommand ``argv`` runs: its first word that is not an option (the top-level
    options take no values), or "" when there is none (``aigw-lab --help``)."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(verb_of(argv))
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except AigwError as exc:
        print(f"aigw-lab: error: {_one_line(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {_one_line(exc.hint)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aigw-lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as exc:
        if exc.filename is None:  # a full disk, a network failure: not a path of theirs
            return _unexpected(exc)
        # A path the user gave that the system refuses (too long, no permission, read-only):
        # theirs to fix, like any other mistake in the options.
        name = str(exc.filename)
        name = name if len(name) <= 120 else name[:117] + "..."
        print(f"aigw-lab: error: cannot use {name!r}: {exc.strerror or exc}", file=sys.stderr)
        print("  fix: check the path given on the command line or in the file", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        return _unexpected(exc)


def _broken_pipe() -> int:
    """The reader of our output went away (`aigw-lab ... | head`): nothing left to say, and
    the interpreter's final flush of stdout must not complain either."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    return EXIT_BROKEN_PIPE


def _unexpected(exc: BaseException) -> int:
    """One line for an error nobody anticipated; its traceback with ``AIGW_LAB_DEBUG=1``."""
    if os.environ.get(DEBUG_ENV_VAR):
        raise exc
    text = _one_line(str(exc))
    text = text if len(text) <= 500 else text[:497] + "..."
    print(f"aigw-lab: unexpected error: {type(exc).__name__}: {text}", file=sys.stderr)
    print(
        f"  this is a bug in aigw-lab or an input it does not check yet; run again with "
        f"{DEBUG_ENV_VAR}=1 for the traceback, and please report it",
        file=sys.stderr,
    )
    return EXIT_UNEXPECTED


def _one_line(text: str) -> str:
    """``text`` on one line: a message quoting a parser's or a database's multi-line error
    must still read as one line of stderr."""
    return " ".join(str(text).split())


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
