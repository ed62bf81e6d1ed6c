"""Typed reads of request-body fields, each failing with an `InvalidRequestError` that names
the field: shared by the OpenAI and Anthropic request parsers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aigw_lab.errors import InvalidRequestError

__all__ = [
    "number",
    "integer",
    "string",
    "short_string",
    "boolean",
    "string_list",
    "required",
    "only",
]


def only(body: Mapping[str, Any], accepted: frozenset[str], *, api: str) -> None:
    """Refuse a body with a field outside ``accepted``, naming the field (sorted, so the
    same body always gets the same answer)."""
    if body.keys() <= accepted:
        return
    unknown = sorted((str(k) for k in body if k not in accepted), key=lambda k: (len(k), k))
    if unknown:
        name = unknown[0] if len(unknown[0]) <= 60 else unknown[0][:57] + "..."
        raise InvalidRequestError(
            f"{name!r}: this gateway does not accept the field in {api}",
            hint="remove it; accepted fields: "
            + ", ".join(sorted(accepted))
            + " (docs/serving.md, 'What clients can and cannot change')",
        )


def required(body: Mapping[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise InvalidRequestError(f"{key}: field required", hint=f"add {key!r} to the request")
    return body[key]


def number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{key}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise InvalidRequestError(f"{key}: the number is out of range") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidRequestError(f"{key}: expected a finite number")
    return number


def integer(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{key}: expected an integer, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise InvalidRequestError(f"{key}: the integer is out of range")
    return value


def string(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def short_string(body: Mapping[str, Any], key: str, *, limit: int = 256) -> str | None:
    """A string of printable characters of at most ``limit`` characters (an identity that
    ends up in the log and in budget keys), or None."""
    value = string(body, key)
    if value is not None and (len(value) > limit or not value.isprintable()):
        raise InvalidRequestError(
            f"{key}: expected at most {limit} printable characters",
            hint="send a short identifier, e.g. a user id",
        )
    return value


def boolean(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{key}: expected true or false, got {value!r}")
    return value


def string_list(body: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    """A string or a list of strings (OpenAI's ``stop``), as a tuple."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidRequestError(f"{key}: expected a string or a list of strings")
