"""`aigw-lab report`: being built (issue 4)."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="(being built)")
    parser.set_defaults(func=lambda args: 2)
