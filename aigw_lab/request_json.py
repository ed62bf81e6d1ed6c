"""The JSON text of a request as the call log stores it: `ChatRequest.to_json`'s fast path
for the common request (written out directly, byte for byte what the encoder gives), and
the encoder of a call's labels (``tags``, ``metadata``). Kept apart from `aigw_lab.types`,
whose values they encode, because this is on every logged call's calling thread and is
measured and tested on its own (tests/gateway/test_row_building.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aigw_lab.errors import InvalidRequestError

__all__ = [
    "LOG_JSON",
    "REQUEST_JSON",
    "encode_labels",
    "plain_fields_json",
    "plain_request_json",
]

#: One encoder for every request's JSON: json.dumps with options builds a new encoder each
#: time.
REQUEST_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
# The function that encoder quotes strings with (C when available).
_encode_string = json.encoder.encode_basestring
#: The one encoder the call log writes JSON labels with (gateway/records.py uses it too), so
#: `ChatRequest.create` refuses exactly what a row could not hold. Made once: json.dumps with
#: options builds a new encoder per call.
LOG_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json_number(value: Any) -> str | None:
    """``value`` as the encoder writes it, for an int (not a bool) or a finite float; None
    for anything else (the caller falls back to the encoder)."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite: inf - inf and nan are nan
        return float.__repr__(value)
    return None


def plain_request_json(request: Any) -> str | None:
    """``request.to_json()`` written out for the common shape of request, byte for byte what
    the encoder gives (``ensure_ascii=False``, compact, keys in `to_dict` order); None for
    any other shape (a message with parts, a name or tool calls; tools; a tool choice;
    extras; a parameter that is not a plain number)."""
    if (
        request.tools
        or request.extra
        or request.tool_choice is not None
        or type(request.model) is not str
    ):
        return None
    encode = _encode_string
    messages = []
    for message in request.messages:
        content, role = message.content, message.role
        if (
            type(content) is not str
            or type(role) is not str
            or message.tool_calls is not None
            or message.name is not None
            or message.tool_call_id is not None
        ):
            return None
        messages.append('{"role":' + encode(role) + ',"content":' + encode(content) + "}")
    return _with_parameters(
        '{"model":' + encode(request.model) + ',"messages":[' + ",".join(messages) + "]",
        request.temperature,
        request.top_p,
        request.max_tokens,
        request.seed,
        request.stop,
    )


def plain_fields_json(plain: Any) -> str | None:
    """`plain_request_json` of a request held as its plain fields (``(model, messages as
    (role, content, name, tool_call_id), temperature, top_p, max_tokens, stop, seed)``, the
    form a spooled row carries it in: `aigw_lab.store.spool_rows`): the same text, or None
    for a shape it does not write (the caller rebuilds the request and asks its encoder)."""
    model, messages, temperature, top_p, max_tokens, stop, seed = plain
    if type(model) is not str:
        return None
    encode = _encode_string
    parts = []
    for role, content, name, tool_call_id in messages:
        if (
            type(content) is not str
            or type(role) is not str
            or name is not None
            or tool_call_id is not None
        ):
            return None
        parts.append('{"role":' + encode(role) + ',"content":' + encode(content) + "}")
    return _with_parameters(
        '{"model":' + encode(model) + ',"messages":[' + ",".join(parts) + "]",
        temperature,
        top_p,
        max_tokens,
        seed,
        stop,
    )


def _with_parameters(
    text: str, temperature: Any, top_p: Any, max_tokens: Any, seed: Any, stop: Any
) -> str | None:
    # The parameters after the messages, in `to_dict` order; None for one the encoder must
    # write (not a plain number, or stop words that are not a tuple of texts). Written out,
    # not looped: `to_json` runs this on the calling thread of logged calls.
    if temperature is not None:
        if (number := _json_number(temperature)) is None:
            return None
        text += ',"temperature":' + number
    if top_p is not None:
        if (number := _json_number(top_p)) is None:
            return None
        text += ',"top_p":' + number
    if max_tokens is not None:
        if (number := _json_number(max_tokens)) is None:
            return None
        text += ',"max_tokens":' + number
    if seed is not None:
        if (number := _json_number(seed)) is None:
            return None
        text += ',"seed":' + number
    if stop:
        if type(stop) is not tuple or any(type(s) is not str for s in stop):
            return None
        text += ',"stop":[' + ",".join(map(_encode_string, stop)) + "]"
    return text + "}"


def encode_labels(name: str, labels: Mapping[str, Any]) -> str:
    """``tags``/``metadata`` as the call log's JSON text; refused (`InvalidRequestError`) when
    the log could not store them."""
    try:
        return LOG_JSON.encode(dict(labels))
    except (ValueError, RecursionError, TypeError) as exc:
        raise InvalidRequestError(
            f"{name} cannot be written to the call log as JSON ({exc})",
            hint=f"pass {name} as plain values (str, numbers, lists, dicts) without cycles",
        ) from None
