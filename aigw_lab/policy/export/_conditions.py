"""A rule's condition as a MongoDB-style query on request metadata, the form both Portkey's
conditional strategy and Cloudflare's conditional element take (``{"metadata.k": {"$eq":
v}}``, ``$in`` for a list, ``$and`` for several keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["metadata_query"]


def metadata_query(when: Mapping[str, Any], number: int, target: str) -> dict[str, Any]:
    """The query for rule ``number``; ``category``, ``tags`` and ``metadata`` keys all
    become ``metadata.<key>`` (clients send them as the gateway's request metadata)."""
    clauses: list[dict[str, Any]] = []
    for key, value in when.items():
        if key == "category":
            clauses.append(_clause("category", value))
        elif key in ("tags", "metadata"):
            for field_name, expected in value.items():
                if "." in field_name or not isinstance(expected, str | int | float | bool):
                    raise ConfigError(
                        f"rule {number}: {target} matches flat metadata keys with primitive "
                        f"values only, not {field_name!r}={expected!r}"
                    )
                clauses.append(_clause(field_name, expected))
        else:
            raise ConfigError(
                f"{target} cannot test {key!r} (rule {number})",
                hint="export with aigw_lab.policy.export.export(...), which drops such rules "
                "and reports it",
            )
    if not clauses:
        raise ConfigError(f"rule {number} has no condition", hint="give it a 'when' condition")
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _clause(field_name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list | tuple):
        return {f"metadata.{field_name}": {"$in": list(value)}}
    return {f"metadata.{field_name}": {"$eq": value}}
