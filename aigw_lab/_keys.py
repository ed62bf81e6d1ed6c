"""The one check every config table goes through: no key it does not know."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["reject_unknown_keys"]


def reject_unknown_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Raise a `ConfigError` naming the first key of ``table`` not in ``known``, at
    ``where`` (``"[budgets]"``, ``"gateway.toml: [providers.x]"``), with the closest known
    key as the suggested fix and the full list."""
    known = sorted(known)
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            fix = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}", hint=f"{fix}known keys: {', '.join(known)}"
            )
