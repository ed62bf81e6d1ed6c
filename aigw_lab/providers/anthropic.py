"""The Anthropic Messages wire format (``POST /v1/messages``, ``anthropic-version:
2023-06-01``).

Differences from the neutral (OpenAI-shaped) request that this codec bridges: the system
prompt is a top-level ``system`` field, ``max_tokens`` is required (``default_max_tokens``,
1024 unless configured, fills in), stop sequences are ``stop_sequences``, there is no
``seed`` (dropped), tool results travel as ``tool_result`` blocks in a user turn and tool
calls as ``tool_use`` blocks, and tools declare ``input_schema``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import EXTRA_FIELDS, check_extra
from aigw_lab.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ProviderError,
    QuotaExceededError,
)
from aigw_lab.providers.codec import (
    Decoded,
    EncodedRequest,
    ErrorDetail,
    UpstreamErrorEvent,
    WireFormatError,
    is_context_overflow,
    usage_int,
)
from aigw_lab.providers.sse import SSEEvent
from aigw_lab.types import UNKNOWN_USAGE, ChatRequest, FinishReason, Message, Usage

__all__ = ["AnthropicCodec", "ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "anthropic_usage"]

ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` sent when a request sets none (the Messages API requires one).
DEFAULT_MAX_TOKENS = 1024

_FINISH: Mapping[str, FinishReason] = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
)

# Anthropic's error types and the HTTP status each comes with: an ``error`` event inside a
# stream is mapped as if it had arrived with that status.
_ERROR_STATUS: Mapping[str, int] = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "billing_error": 402,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
    }
)

_TOOL_CHOICES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
)


class AnthropicCodec:
    """Messages API. ``default_max_tokens`` is sent when a request sets no ``max_tokens``."""

    __slots__ = ("default_max_tokens", "headers")

    api_format = "anthropic"

    def __init__(
        self, *, default_max_tokens: int = DEFAULT_MAX_TOKENS, version: str = ANTHROPIC_VERSION
    ) -> None:
        self.default_max_tokens = default_max_tokens
        self.headers: Mapping[str, str] = MappingProxyType({"anthropic-version": version})

    def encode(self, request: ChatRequest, *, stream: bool) -> EncodedRequest:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": _messages(request.messages),
        }
        system = request.system_text
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if stream:
            body["stream"] = True
        if request.extra:
            # Only allowlisted fields: none of them can replace a field set above.
            check_extra(request.extra, EXTRA_FIELDS["anthropic"], where="the Anthropic API")
            body.update(request.extra)
        return EncodedRequest("/v1/messages", body)

    def decode(self, payload: Any, request: ChatRequest) -> Decoded:
        # `type(...) is dict` first: JSON gives plain dicts, and the ABC check costs more.
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise WireFormatError("expected a JSON object")
        if payload.get("type") == "error":
            raise UpstreamErrorEvent(_error_status(payload), payload)
        content = payload["content"]
        if not isinstance(content, list):
            raise WireFormatError("'content' is not a list of blocks")
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in content:
            kind = block.get("type")
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_use":
                tool_calls.append(
                    _tool_call(block["id"], block["name"], json.dumps(block.get("input") or {}))
                )
        return Decoded(
            text="".join(texts),
            finish_reason=_finish(payload.get("stop_reason")),
            usage=anthropic_usage(payload.get("usage")),
            response_id=payload.get("id"),  # response_id
            model=payload.get("model"),
            tool_calls=tuple(tool_calls) or None,
            raw=payload,  # raw
        )

    def stream_decoder(self, request: ChatRequest) -> _AnthropicStream:
        return _AnthropicStream()

    def parse_error(self, status: int, payload: Any) -> ErrorDetail:
        error = payload.get("error") if isinstance(payload, Mapping) else None
        if not isinstance(error, Mapping):
            return ErrorDetail()
        kind = error.get("type")
        message = error.get("message")
        message = str(message) if message is not None else None
        # The status already says what the type says; the message refines two cases.
        error_class: type[ProviderError] | None = None
        if status in (400, 413) and is_context_overflow(message):
            error_class = ContextLengthExceededError
        elif message and "credit balance" in message.lower():
            error_class = QuotaExceededError
        return ErrorDetail(
            message=message, error_class=error_class, code=str(kind) if kind is not None else None
        )


class _AnthropicStream:
    """Messages streaming events: ``message_start`` (id, model, input usage), content
    blocks with ``text_delta``/``input_json_delta`` pieces, ``message_delta`` (stop reason,
    cumulative usage), ``message_stop``; ``ping`` and unknown events are skipped and an
    ``error`` event fails the stream."""

    __slots__ = ("finished", "_parts", "_finish", "_usage", "_id", "_model", "_tools", "_raw")

    def __init__(self) -> None:
        self.finished = False
        self._parts: list[str] = []
        self._finish: FinishReason = "unknown"
        self._usage: dict[str, Any] = {}
        self._id: str | None = None
        self._model: str | None = None
        self._tools: dict[int, dict[str, Any]] = {}
        self._raw: list[Any] = []

    def feed(self, event: SSEEvent) -> str:
        data = json.loads(event.data)
        if not isinstance(data, Mapping):
            raise WireFormatError("a stream event is not a JSON object")
        self._raw.append(data)
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                text = delta["text"]
                self._parts.append(text)
                return text
            if delta.get("type") == "input_json_delta":
                self._tools[data["index"]]["arguments"].append(delta.get("partial_json", ""))
        elif kind == "content_block_start":
            block = data["content_block"]
            if block.get("type") == "tool_use":
                self._tools[data["index"]] = {"id": block["id"], "name": block["name"],
                                              "arguments": []}  # fmt: skip
            elif block.get("type") == "text" and block.get("text"):
                self._parts.append(block["text"])
                return block["text"]
        elif kind == "message_start":
            message = data["message"]
            self._id = message.get("id")
            self._model = message.get("model")
            self._usage.update(message.get("usage") or {})
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish = _finish(reason)
            # message_delta counts are cumulative: they replace, never add to, the start's.
            usage = data.get("usage") or {}
            self._usage.update((k, v) for k, v in usage.items() if v is not None)
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            raise UpstreamErrorEvent(_error_status(data), data)
        return ""

    def result(self) -> Decoded:
        tool_calls = tuple(
            _tool_call(call["id"], call["name"], "".join(call["arguments"]) or "{}")
            for _, call in sorted(self._tools.items())
        )
        return Decoded(
            text="".join(self._parts),
            finish_reason=self._finish,
            usage=anthropic_usage(self._usage),
            response_id=self._id,
            model=self._model,
            tool_calls=tool_calls or None,
            raw=self._raw,
        )


def anthropic_usage(usage: Any) -> Usage:
    """`Usage` from Anthropic's ``usage``: its ``input_tokens`` excludes cache reads and
    writes, so the three are summed into the OpenTelemetry-style total."""
    if (type(usage) is not dict and not isinstance(usage, Mapping)) or not usage:
        return UNKNOWN_USAGE  # not reported: priced as unknown, never as 0 tokens
    uncached = usage_int(usage.get("input_tokens"))
    cache_read = usage_int(usage.get("cache_read_input_tokens"))
    cache_write = usage_int(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=uncached + cache_read + cache_write,  # input_tokens
        output_tokens=usage_int(usage.get("output_tokens")),  # output_tokens
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=0,  # reasoning_tokens: counted inside output_tokens, not reported apart
    )


def _finish(value: Any) -> FinishReason:
    return _FINISH.get(value, "unknown") if isinstance(value, str) else "unknown"


def _error_status(payload: Mapping[str, Any]) -> int:
    error = payload.get("error")
    kind = error.get("type") if isinstance(error, Mapping) else None
    return _ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue  # sent as the top-level "system" field
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.text,
            }
            last = out[-1] if out else None
            # Results of parallel tool calls belong in one user turn.
            if last is not None and last["role"] == "user" and _is_tool_results(last["content"]):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        content: Any = _content(message)
        if message.role == "assistant" and message.tool_calls:
            blocks = [{"type": "text", "text": message.text}] if message.text else []
            blocks.extend(_tool_use_block(call) for call in message.tool_calls)
            content = blocks
        out.append({"role": message.role, "content": content})
    return out


def _is_tool_results(content: Any) -> bool:
    return isinstance(content, list) and bool(content) and content[0].get("type") == "tool_result"


def _content(message: Message) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if part.type == "text":
            blocks.append({"type": "text", "text": part.text or ""})
        elif part.type == "image_url":
            blocks.append(_image_block(part.data.get("image_url")))
        else:
            blocks.append(part.to_dict())
    return blocks


def _image_block(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(
            "an image_url part has no url",
            hint='write {"type": "image_url", "image_url": {"url": "https://..."}}',
        )
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use_block(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    except ValueError as exc:
        raise InvalidRequestError(
            f"tool call {call.get('id')!r} has arguments that are not JSON",
            hint="pass the assistant's tool_calls back unchanged",
        ) from exc
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": tool_input}  # fmt: skip


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, Mapping):
        return dict(tool)  # already in Anthropic's shape (or a server tool): pass it on
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return dict(_TOOL_CHOICES.get(choice, {"type": choice}))
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return choice
