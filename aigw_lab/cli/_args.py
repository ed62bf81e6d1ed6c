"""argparse ``type=`` checkers shared by the subcommands: a value on the command line that
is not what the option takes is argparse's one-line usage error (exit 2), never a NaN or an
infinity that fails later with a traceback (``int(nan)``) or runs forever."""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable

__all__ = ["describe", "finite_float", "int_at_least", "port"]

#: Columns of a subcommand's description (argparse's own help wraps to the terminal).
DESCRIPTION_WIDTH = 78


def describe(*paragraphs: str) -> str:
    """A subcommand's ``description`` of several paragraphs, each wrapped to
    `DESCRIPTION_WIDTH` columns, for ``formatter_class=argparse.RawDescriptionHelpFormatter``
    (the default formatter would run the paragraphs together)."""
    return "\n\n".join(
        textwrap.fill(" ".join(text.split()), DESCRIPTION_WIDTH) for text in paragraphs
    )


def finite_float(*, minimum: float | None = None, positive: bool = False) -> Callable[[str], float]:
    """A checker for a finite float, at least ``minimum`` (or above 0 when ``positive``)."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be at least {minimum:g}")
        return value

    return check


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A checker for an integer of at least ``minimum``."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return check


def port(text: str) -> int:
    """A TCP port number, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (use 0 to 65535)")
    return value


def help_without_subcommand(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a verb that needs a subcommand: given none, it prints the verb's help
    and exits 2 (a usage mistake, as argparse's own)."""

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return usage
