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

__all__ = ["LOG_JSON", "REQUEST_JSON", "encode_labels", "plain_request_json"]

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
    text = '{"model":' + encode(request.model) + ',"messages":[' + ",".join(messages) + "]"
    value = request.temperature
    if value is not None:
        if (number := _json_number(value)) is None:
            return None
        text += ',"temperature":' + number
    value = request.top_p
    if value is not None:
        if (number := _json_number(value)) is None:
            return None
        text += ',"top_p":' + number
    value = request.max_tokens
    if value is not None:
        if (number := _json_number(value)) is None:
            return None
        text += ',"max_tokens":' + number
    value = request.seed
    if value is not None:
        if (number := _json_number(value)) is None:
            return None
        text += ',"seed":' + number
    stop = request.stop
    if stop:
        if type(stop) is not tuple or any(type(s) is not str for s in stop):
            return None
        text += ',"stop":[' + ",".join(map(encode, stop)) + "]"
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
