"""The Anthropic Messages API, served: request bodies in, messages and stream events out.

The inverse of `aigw_lab.providers.anthropic.AnthropicCodec`, which maps the neutral
(OpenAI-shaped) request to Anthropic's: here Anthropic's top-level ``system`` becomes a
system message, ``tool_use`` blocks become an assistant's ``tool_calls``, ``tool_result``
blocks become ``tool`` messages, ``image`` blocks become ``image_url`` parts, tools declared
with ``input_schema`` become functions, and ``stop_sequences`` becomes ``stop``; so one
request can go to a target of any format. ``max_tokens`` is required, as Anthropic requires.

Only documented fields are accepted (`ACCEPTED_FIELDS`; docs/serving.md, "What clients can
and cannot change"): any other is a 400 naming it. ``metadata`` may only hold ``user_id``,
``service_tier`` may only name the standard tier, and the fields with no neutral place that
pass through in ``extra`` are ``top_k`` and ``thinking`` (whose budget counts within
``max_tokens``, which the budget's estimate assumes is used).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import EXTRA_FIELDS
from aigw_lab.errors import InvalidRequestError
from aigw_lab.server import fields
from aigw_lab.server.errors import HttpError, anthropic_error
from aigw_lab.server.openai_api import answered_by
from aigw_lab.types import ChatRequest, ChatResponse, ContentPart, FinishReason, Message

__all__ = [
    "AnthropicCall",
    "parse_messages_request",
    "render_message",
    "AnthropicEvents",
    "models_list",
]

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

#: Body fields the gateway reads itself; none is passed upstream as sent.
_CONSUMED = frozenset(
    (
        "model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences",
        "stream", "metadata", "tools", "tool_choice", "service_tier",
    )
)  # fmt: skip
#: Body fields passed through in ``extra`` (to the target's codec, which checks its own list).
PASSTHROUGH_FIELDS: frozenset[str] = EXTRA_FIELDS["anthropic"]
#: Every field a Messages body may have here; any other is a 400 naming it.
ACCEPTED_FIELDS: frozenset[str] = _CONSUMED | PASSTHROUGH_FIELDS
_METADATA_FIELDS = frozenset(("user_id",))
#: ``service_tier`` values that do not change the price (the standard tier).
_STANDARD_TIERS = frozenset(("auto", "standard_only"))

_STOP_REASON: Mapping[FinishReason, str] = MappingProxyType(
    {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
        "error": "end_turn",
        "unknown": "end_turn",
    }
)

_TOOL_CHOICE = MappingProxyType({"auto": "auto", "any": "required", "none": "none"})


@dataclass(frozen=True, slots=True)
class AnthropicCall:
    """A parsed request: the neutral request, and whether to stream the answer."""

    request: ChatRequest
    stream: bool


def parse_messages_request(body: Mapping[str, Any]) -> AnthropicCall:
    """A `ChatRequest` from a Messages API body; `InvalidRequestError` names a bad field."""
    fields.only(body, ACCEPTED_FIELDS, api="the Messages API")
    model = fields.required(body, "model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("model: expected a non-empty string")
    max_tokens = fields.integer(body, "max_tokens")
    if max_tokens is None:
        raise InvalidRequestError(
            "max_tokens: field required", hint="the Messages API needs max_tokens on every call"
        )
    raw_messages = fields.required(body, "messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequestError("messages: expected a non-empty list of messages")
    messages: list[Message] = []
    for index, message in enumerate(raw_messages):
        messages.extend(_message(message, index))
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRequestError("metadata: expected an object")
    if metadata:
        fields.only(metadata, _METADATA_FIELDS, api="metadata")
    user = fields.short_string(metadata or {}, "user_id")
    tier = fields.string(body, "service_tier")
    if tier is not None and tier not in _STANDARD_TIERS:
        raise InvalidRequestError(
            f"service_tier: {tier[:40]!r} is not accepted",
            hint="this gateway prices and sends every call at the standard tier: send "
            "'auto' or 'standard_only', or leave service_tier out",
        )
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)
    ):
        raise InvalidRequestError("tools: expected a list of tool objects")
    params: dict[str, Any] = {"max_tokens": max_tokens}
    for key, value in (
        ("temperature", fields.number(body, "temperature")),
        ("top_p", fields.number(body, "top_p")),
        ("user", user),
        ("tool_choice", _tool_choice(body.get("tool_choice"))),
    ):
        if value is not None:
            params[key] = value
    request = ChatRequest.create(
        model,
        messages,
        system=_system(body.get("system")),
        stop=fields.string_list(body, "stop_sequences"),
        tools=[_tool(t) for t in tools] if tools else None,
        extra={k: v for k, v in body.items() if k in PASSTHROUGH_FIELDS},
        **params,
    )
    return AnthropicCall(request, fields.boolean(body, "stream"))


def _system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system or None
    if isinstance(system, list) and all(
        isinstance(b, Mapping) and b.get("type") == "text" for b in system
    ):
        return "\n\n".join(str(b.get("text", "")) for b in system) or None
    raise InvalidRequestError("system: expected a string or a list of text blocks")


def _message(message: Any, index: int) -> list[Message]:
    if not isinstance(message, Mapping):
        raise InvalidRequestError(f"messages.{index}: expected an object")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequestError(
            f"messages.{index}.role: {role!r} is not 'user' or 'assistant'",
            hint="put the system prompt in the top-level 'system' field",
        )
    content = message.get("content")
    if isinstance(content, str):
        return [Message(role, content)]
    if not isinstance(content, list) or not all(isinstance(b, Mapping) for b in content):
        raise InvalidRequestError(f"messages.{index}.content: expected a string or blocks")
    out: list[Message] = []
    parts: list[ContentPart] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append(ContentPart("text", str(block.get("text", ""))))
        elif kind == "image":
            parts.append(_image_part(block.get("source"), index))
        elif kind == "tool_use" and role == "assistant":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            tool_calls.append(
                {"id": block.get("id"), "type": "function",
                 "function": {"name": block.get("name"), "arguments": arguments}}
            )  # fmt: skip
        elif kind == "tool_result" and role == "user":
            # Tool results answer the previous assistant turn, before any new user text.
            out.append(
                Message("tool", _result_text(block.get("content")),
                        tool_call_id=block.get("tool_use_id"))
            )  # fmt: skip
        else:  # documents, thinking blocks...: passed on as the provider's own parts
            data = MappingProxyType({k: v for k, v in block.items() if k != "type"})
            parts.append(ContentPart(str(kind), None, data))
    if parts or tool_calls or not out:
        if all(p.type == "text" for p in parts):
            text: str | tuple[ContentPart, ...] = "".join(p.text or "" for p in parts)
        else:
            text = tuple(parts)
        out.append(Message(role, text, tool_calls=tuple(tool_calls) or None))
    return out


def _image_part(source: Any, index: int) -> ContentPart:
    if isinstance(source, Mapping) and source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif isinstance(source, Mapping) and source.get("type") == "url":
        url = str(source.get("url"))
    else:
        raise InvalidRequestError(f"messages.{index}: an image block has no usable source")
    return ContentPart("image_url", None, MappingProxyType({"image_url": {"url": url}}))


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", "")) for b in content if isinstance(b, Mapping)
            and b.get("type") == "text"
        )  # fmt: skip
    return ""


def _tool(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    if "input_schema" not in tool:
        # A server tool (web search, code execution...) is billed per use, outside the
        # token usage the gateway prices: a client cannot switch one on.
        raise InvalidRequestError(
            f"tools: {str(tool.get('type') or tool.get('name'))[:60]!r} is not a custom tool",
            hint="only custom tools (name, description, input_schema) are accepted here",
        )
    function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice is None:
        return None
    if not isinstance(choice, Mapping):
        raise InvalidRequestError('tool_choice: expected an object like {"type": "auto"}')
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind in _TOOL_CHOICE:
        return _TOOL_CHOICE[kind]
    raise InvalidRequestError(f"tool_choice.type: {kind!r} is not auto, any, tool or none")


def _usage(response: ChatResponse) -> dict[str, int]:
    usage = response.usage
    # Anthropic's input_tokens excludes cache reads and writes; ours includes them.
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    return {
        "input_tokens": max(0, uncached),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def _tool_use_block(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = {}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": arguments}  # fmt: skip


def render_message(response: ChatResponse) -> dict[str, Any]:
    """A ``message`` body; ``id`` carries the call's trace id from the log."""
    content: list[dict[str, Any]] = []
    if response.text or not response.tool_calls:
        content.append({"type": "text", "text": response.text})
    content.extend(_tool_use_block(call) for call in response.tool_calls or ())
    return {
        "id": f"msg_{response.trace_id or response.call_id}",
        "type": "message",
        "role": "assistant",
        "model": answered_by(response),
        "content": content,
        "stop_reason": _STOP_REASON[response.finish_reason],
        "stop_sequence": None,
        "usage": _usage(response),
    }


class AnthropicEvents:
    """The SSE events of one streamed message, as bytes: `start` (``message_start``),
    `text` per delta (the text block opens at the first), `end` (closes the text block,
    adds tool_use blocks, ``message_delta`` with the stop reason and the whole usage,
    ``message_stop``), or `error` (``event: error``) instead of `end`. ``message_start``
    names the model the client asked for (the answering target is known only at the end)."""

    __slots__ = ("_id", "_model", "_text_open", "_blocks")

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._text_open = False
        self._blocks = 0

    def start(self) -> bytes:
        message = {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            # The gateway knows the usage only at the end: message_delta carries all of it.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return _event("message_start", {"type": "message_start", "message": message})

    def text(self, text: str) -> bytes:
        out = b""
        if not self._text_open:
            out = self._open({"type": "text", "text": ""})
            self._text_open = True
        delta = {"type": "text_delta", "text": text}
        block = {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        return out + _event("content_block_delta", block)

    def _open(self, block: Mapping[str, Any]) -> bytes:
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        return _event("content_block_start", start)

    def _close(self) -> bytes:
        stop = {"type": "content_block_stop", "index": self._blocks - 1}
        return _event("content_block_stop", stop)

    def end(self, response: ChatResponse) -> bytes:
        out: list[bytes] = []
        if not self._text_open and not response.tool_calls:
            out.append(self._open({"type": "text", "text": ""}))  # a message has content
            self._text_open = True
        if self._text_open:
            out.append(self._close())
        for call in response.tool_calls or ():
            block = _tool_use_block(call)
            arguments = json.dumps(block["input"], ensure_ascii=False)
            out.append(self._open({**block, "input": {}}))
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta},
                )
            )
            out.append(self._close())
        delta = {"stop_reason": _STOP_REASON[response.finish_reason], "stop_sequence": None}
        out.append(
            _event("message_delta",
                   {"type": "message_delta", "delta": delta, "usage": _usage(response)})
        )  # fmt: skip
        out.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    @staticmethod
    def error(error: HttpError) -> bytes:
        """An error after the stream began: ``event: error`` with Anthropic's error body
        (the Anthropic SDK raises it as an `anthropic.APIStatusError`)."""
        return _event("error", anthropic_error(error)[1])


def models_list(models: list[tuple[str, str]]) -> dict[str, Any]:
    """``GET /v1/models`` in Anthropic's shape (asked for with an ``anthropic-version``
    header, as the Anthropic SDK sends it)."""
    created = datetime.fromtimestamp(0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = [
        {"type": "model", "id": model, "display_name": model, "created_at": created}
        for model, _ in models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _event(name: str, payload: Mapping[str, Any]) -> bytes:
    # backslashreplace: a lone surrogate from an upstream answer goes out as its JSON escape
    data = _JSON.encode(payload).encode("utf-8", "backslashreplace")
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
