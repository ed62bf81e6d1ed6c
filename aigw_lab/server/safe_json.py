"""Request bodies parsed as JSON a client cannot use against the server: `parse_body`.

`json.loads` alone accepts things that fail later, deep inside the gateway, as 500s or worse:
nesting deep enough to exhaust the recursion limit, lone UTF-16 surrogates (``"\\ud800"``)
that no encoder can write to a log or an upstream, integers of hundreds of digits that
overflow budget arithmetic, ``1e400`` (infinity) and ``NaN``. Here each is refused up front
with an `InvalidRequestError` naming the problem, which the server answers as a 400 in the
caller's API format.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aigw_lab.errors import InvalidRequestError

__all__ = ["parse_body", "MAX_JSON_INTEGER", "DEFAULT_MAX_DEPTH"]

#: Largest magnitude of a number in a request body: 2**53, the largest integer every JSON
#: implementation (and a float) holds exactly. Far above any real token count or seed.
MAX_JSON_INTEGER = 2**53
#: Deepest nesting of arrays/objects accepted by default (tool schemas rarely pass 10).
DEFAULT_MAX_DEPTH = 64
# Longest integer literal worth converting: 2**53 has 16 digits; a sign and leading zeros
# are not JSON. Checking the length first keeps int() off a 4,000-digit string.
_MAX_DIGITS = 17


class _Rejected(ValueError):
    """A number out of bounds, raised from inside the JSON decoder's hooks."""


def _parse_int(text: str) -> int:
    if len(text) > _MAX_DIGITS:
        raise _Rejected(f"the integer {text[:20]}... is too large")
    value = int(text)
    if abs(value) > MAX_JSON_INTEGER:
        raise _Rejected(f"the integer {text} is too large")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_JSON_INTEGER:
        raise _Rejected(f"the number {text[:40]} is too large")
    return value


def _parse_constant(text: str) -> Any:
    raise _Rejected(f"{text} is not a JSON number")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def parse_body(body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The JSON value of a request body, or an `InvalidRequestError` saying why not.

    The body must be UTF-8 (an optional BOM aside), nest arrays and objects at most
    ``max_depth`` deep, hold no number beyond ``MAX_JSON_INTEGER`` in magnitude (nor
    ``NaN``/``Infinity``), and no string with a lone surrogate, in a key or a value.
    """
    hint = "send the body as a UTF-8 JSON object, as the API's reference shows"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"the request body is not valid UTF-8 (byte {exc.start})", hint=hint
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = _DECODER.decode(text)
    except _Rejected as exc:
        raise InvalidRequestError(
            f"the request body is refused: {exc}",
            hint=f"numbers must lie within +/-{MAX_JSON_INTEGER} (2**53)",
        ) from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as exc:  # json.JSONDecodeError: its message names line and column
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}", hint=hint) from None
    if _may_need_check(body, max_depth):
        _check(value, max_depth)
    return value


def _may_need_check(body: bytes, max_depth: int) -> bool:
    """False when the raw bytes alone prove `_check` would pass, so the walk over the value
    is skipped (most chat bodies): a lone surrogate can only come from a ``\\u`` escape
    (strict UTF-8 decoding refuses encoded surrogates), and a container at depth d needs
    d + 1 opening brackets, so fewer than ``max_depth`` of them in all cannot nest too deep.
    Brackets and backslashes inside strings count too: that only sends a body to the walk."""
    if b"\\u" in body:
        return True
    return body.count(b"[") + body.count(b"{") >= max_depth


def _too_deep(max_depth: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"the request body nests arrays and objects more than {max_depth} levels deep",
        hint="flatten the request; no API field needs that depth",
    )


def _check(value: Any, max_depth: int) -> None:
    """Depth and strings, iteratively (the value may be as deep as the decoder allowed)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            if depth >= max_depth:
                raise _too_deep(max_depth)
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth >= max_depth:
                raise _too_deep(max_depth)
            stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"the request body holds a lone UTF-16 surrogate escape "
            f"(\\u{ord(text[exc.start]):04x}), which is not text",
            hint="escape characters outside the BMP as a surrogate pair, or send them as UTF-8",
        ) from None
