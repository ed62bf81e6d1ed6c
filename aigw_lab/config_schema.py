"""Typed schemas of config tables, and the one validator that checks a table against one.

A component declares the keys of its TOML table beside the code that reads them: a `Key`
names the types its value may have and the words that say so in an error (``what``), and
optionally choices, a range, the type of a list's items or a table's values, a nested
`Table`, or an array of tables. `Table.validate` then writes every error a user sees in one
way, at the table's path (``gateway.toml: [cache]``, ``[rate_limits.rule] #2``), as a
`ConfigError`:

- an unknown key, with the closest known key as "did you mean" and the full list;
- a missing required key, with what it must be;
- a wrong value as ``key = VALUE must be WHAT`` (booleans never pass for numbers), or
  ``key = VALUE is not WHAT`` for a value outside the key's choices (the hint lists them),
  with the key's hint.

Checks that relate several keys (a key that applies only to one store kind, a secret that
must be set in the environment) stay with the component; a schema holds what one key alone
must satisfy. `Table.rows` lists every key for docs. This module sits in the lowest layer so
that every component, from the providers up to the server, can declare its own table.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["Key", "Table", "NUMBER", "TABLE", "reject_unknown_keys", "nested"]

#: The types of a number in TOML (booleans are refused separately).
NUMBER: tuple[type, ...] = (int, float)
#: The type of a table.
TABLE: tuple[type, ...] = (Mapping,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """One key of a config table and what its value must be.

    - ``types``: the types the value may have (empty: any); ``bool`` passes only when listed,
      although it is an ``int`` in Python.
    - ``what``: the words naming a valid value in an error (``"a positive number of
      seconds"``); ``hint``: the fix shown beside it.
    - ``choices``: the only values allowed; ``low`` / ``high``: an inclusive range of a
      number (``low_open``: ``low`` itself is refused); ``nonempty``: an empty string, list or
      table is refused; ``pattern``: a regular expression a string must match in full.
    - ``items``: the types of a list's items or of a table's values (``"a table of
      strings"``).
    - ``table``: the schema of the value, a table; with ``array``, of each table in a list
      (a single table is taken as a list of one when ``types`` lists `Mapping`).
    - ``required``: the table must hold the key; ``doc``: one line for the list of keys.
    """

    name: str
    types: tuple[type, ...] = ()
    what: str = "valid"
    hint: str | None = None
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    nonempty: bool = False
    pattern: str | None = None
    items: tuple[type, ...] = ()
    table: Table | None = None
    array: bool = False
    required: bool = False
    doc: str = ""

    def check(self, value: Any, where: str) -> None:
        """A `ConfigError` at ``where`` when ``value`` (not None) is not what this key takes;
        a nested table or array of tables is validated too."""
        if value is None:
            return
        if self.choices and not self._chosen(value):
            choices = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(
                f"{where}: {self.name} = {value!r:.60} is not {self.what}",
                hint=self.hint or f"use one of {choices}",
            )
        if not self.accepts(value):
            raise ConfigError(
                f"{where}: {self.name} = {value!r:.60} must be {self.what}", hint=self.hint
            )
        if self.table is None:
            return
        at = nested(where, self.name)
        if isinstance(value, Mapping):  # a nested table, or an array given as one table
            self.table.validate(value, at)
        elif self.array:
            for i, item in enumerate(value):
                self.table.validate(item, f"{at} #{i + 1}")

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has one of the types and passes choices, range and items (a
        nested table is not looked into)."""
        if self.types and (
            not isinstance(value, self.types)
            or (isinstance(value, bool) and bool not in self.types)
        ):
            return False
        if self.choices and not self._chosen(value):
            return False
        if self.pattern is not None and isinstance(value, str):
            if re.fullmatch(self.pattern, value) is None:
                return False
        if self.nonempty and isinstance(value, str | list | Mapping) and not value:
            return False
        if (self.low is not None or self.high is not None) and isinstance(value, int | float):
            if math.isnan(value):
                return False
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                return False
            if self.high is not None and value > self.high:
                return False
        if self.items:
            values = value.values() if isinstance(value, Mapping) else value
            if isinstance(values, str) or not all(_is(v, self.items) for v in values):
                return False
        return True

    def _chosen(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


@dataclass(frozen=True, slots=True)
class Table:
    """The schema of one config table: its `Key`s, in the order a listing shows them.
    ``other``, when given, is the schema of every key the table does not name (the
    ``"provider/model"`` entries of ``[prices]``): then no key is unknown."""

    keys: tuple[Key, ...]
    other: Key | None = None
    hint: str | None = None

    def validate(self, value: Any, where: str) -> None:
        """Check ``value``, found at ``where``, against this schema: a table, no unknown
        key (the clearest error, so first), every required key, each value; a `ConfigError`
        naming the first problem."""
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where} must be a table, not {value!r:.60}",
                hint=self.hint or "write it as a [table] or { key = value, ... }",
            )
        keys = self.by_name()
        if self.other is None:
            reject_unknown_keys(value, keys, where)
        for key in self.keys:
            if key.required and key.name not in value:
                raise ConfigError(
                    f"{where} has no {key.name!r}; it needs {key.name} = {key.what}",
                    hint=key.hint,
                )
        for name, item in value.items():
            key = keys.get(name)
            if key is not None:
                key.check(item, where)
            elif self.other is not None:
                replace(self.other, name=name).check(item, where)

    def by_name(self) -> dict[str, Key]:
        """``{name: Key}``."""
        return {key.name: key for key in self.keys}

    def names(self) -> frozenset[str]:
        """The names of the keys."""
        return frozenset(key.name for key in self.keys)

    def with_keys(self, extra: Iterable[Key]) -> Table:
        """This schema with ``extra`` keys added (a provider kind's own keys)."""
        return replace(self, keys=(*self.keys, *extra))

    def rows(self, path: str = "") -> Iterator[tuple[str, str, str]]:
        """``(table path, key, what it must be)`` for every key, nested tables included,
        for docs: ``("[cache]", "ttl", "a number of seconds")``; keys the table does not
        name (`other`) are listed as ``NAME``."""
        keys = self.keys if self.other is None else (*self.keys, replace(self.other, name="NAME"))
        for key in keys:
            if path:
                yield path, key.name, key.doc or key.what
            if key.table is not None:
                inner = nested(path, key.name)
                yield from key.table.rows(f"[{inner}]" if key.array else inner)


def nested(where: str, name: str) -> str:
    """The path of table ``name`` inside the table at ``where``: ``"[budgets]"`` ->
    ``"[budgets.limit]"``; a file (``"gateway.toml"``) -> ``"gateway.toml: [gateway]"``;
    ``""`` -> ``"[gateway]"``. A name that is not a bare TOML key is quoted
    (``[prices."openai/gpt-4o"]``)."""
    if _BARE_KEY.fullmatch(name) is None:
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not where:
        return f"[{name}]"
    if where.endswith("]") and "[" in where:
        start = where.rindex("[")
        if where[start + 1 : start + 2] != "[":
            return f"{where[:-1]}.{name}]"
    return f"{where}: [{name}]"


def reject_unknown_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Raise a `ConfigError` naming the first key of ``table`` not in ``known``, at
    ``where`` (``"[budgets]"``, ``"gateway.toml: [providers.x]"``), with the closest known
    key as the suggested fix and the full list."""
    known = sorted(known)
    known_set = set(known)
    for key in table:
        if key not in known_set:
            close = difflib.get_close_matches(str(key), known, n=1)
            fix = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}", hint=f"{fix}known keys: {', '.join(known)}"
            )


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _is(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))
