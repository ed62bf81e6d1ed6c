"""The OpenAI Chat Completions API, served: request bodies in, completions and chunks out.

This is the inverse of `aigw_lab.providers.openai.OpenAICodec`: the codec turns a neutral
`ChatRequest` into an OpenAI body and OpenAI answers back into `ChatResponse` fields; here an
OpenAI body becomes a `ChatRequest` (whose messages already use the OpenAI shape, so
`ChatRequest.create` validates them) and a `ChatResponse` becomes a ``chat.completion`` or a
run of ``chat.completion.chunk`` events.

Only documented fields are accepted (`ACCEPTED_FIELDS`; docs/serving.md, "What clients can
and cannot change"): a body with any other field is a 400 naming it. Fields that decide what
a call costs or how it is counted are read by the gateway, never passed on as sent: the
largest of ``max_tokens`` and ``max_completion_tokens`` is the call's output limit (and
what its budget estimate assumes), ``n`` must be 1, ``stream_options`` only says whether
the client sees the usage chunk (the gateway always asks the upstream for it), and
``service_tier`` may only name the standard tier. Fields the neutral request has no place
for (``response_format``, ``frequency_penalty``, ``logprobs``...) pass through in ``extra``
when they are in `aigw_lab.addressing.EXTRA_FIELDS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import EXTRA_FIELDS
from aigw_lab.errors import InvalidRequestError
from aigw_lab.server import fields
from aigw_lab.server.errors import HttpError, openai_error
from aigw_lab.types import ChatRequest, ChatResponse, FinishReason

__all__ = [
    "OpenAICall",
    "parse_chat_request",
    "render_completion",
    "OpenAIChunks",
    "models_list",
]

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

#: Body fields the gateway reads itself (into the neutral request, or to decide how to
#: answer); none is passed upstream as sent.
_CONSUMED = frozenset(
    (
        "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens",
        "stop", "seed", "tools", "tool_choice", "user", "stream", "stream_options", "n",
        "service_tier",
    )
)  # fmt: skip
#: Body fields passed through in ``extra`` (to the target's codec, which checks its own list).
PASSTHROUGH_FIELDS: frozenset[str] = EXTRA_FIELDS["openai-compatible"]
#: Every field a Chat Completions body may have here; any other is a 400 naming it.
ACCEPTED_FIELDS: frozenset[str] = _CONSUMED | PASSTHROUGH_FIELDS
#: ``service_tier`` values that do not change the price (the standard tier).
_STANDARD_TIERS = frozenset(("auto", "default"))

_STREAM_OPTIONS = frozenset(("include_usage", "include_obfuscation"))

_FINISH: Mapping[FinishReason, str] = MappingProxyType(
    {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
        "content_filter": "content_filter",
        "error": "stop",
        "unknown": "stop",
    }
)


@dataclass(frozen=True, slots=True)
class OpenAICall:
    """A parsed request: the neutral request plus how the answer should come back."""

    request: ChatRequest
    stream: bool
    include_usage: bool


def parse_chat_request(body: Mapping[str, Any]) -> OpenAICall:
    """A `ChatRequest` (``model`` is the gateway address or policy name the client sent)
    from a Chat Completions body; `InvalidRequestError` names a malformed field."""
    fields.only(body, ACCEPTED_FIELDS, api="the Chat Completions API")
    model = fields.required(body, "model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("model: expected a non-empty string")
    messages = fields.required(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages: expected a non-empty list of messages")
    n = fields.integer(body, "n")
    if n is not None and n != 1:
        raise InvalidRequestError(f"n={n} is not supported", hint="ask for one choice (n=1)")
    stream = fields.boolean(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise InvalidRequestError("stream_options: expected an object")
    if options:
        fields.only(options, _STREAM_OPTIONS, api="stream_options")
    # Whether the *client* gets the usage chunk; the upstream is always asked for it.
    include_usage = bool(options) and fields.boolean(options, "include_usage")
    tier = fields.string(body, "service_tier")
    if tier is not None and tier not in _STANDARD_TIERS:
        raise InvalidRequestError(
            f"service_tier: {tier[:40]!r} is not accepted",
            hint="this gateway prices and sends every call at the standard tier: send "
            "'auto' or 'default', or leave service_tier out",
        )
    # Both limits may be sent; the larger is the one the call may use, so it is the one
    # sent upstream and the one the budget's estimate assumes.
    limits = [
        value
        for value in (
            fields.integer(body, "max_completion_tokens"),
            fields.integer(body, "max_tokens"),
        )
        if value is not None
    ]
    max_tokens = max(limits) if limits else None
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)
    ):
        raise InvalidRequestError("tools: expected a list of tool objects")
    for index, tool in enumerate(tools or ()):
        if tool.get("type") != "function":
            # Built-in provider tools (web search...) are billed outside the token usage
            # the gateway prices, so a client cannot switch them on.
            raise InvalidRequestError(
                f"tools.{index}.type: only function tools are accepted",
                hint='declare tools as {"type": "function", "function": {...}}',
            )
    params: dict[str, Any] = {}
    for key, value in (
        ("temperature", fields.number(body, "temperature")),
        ("top_p", fields.number(body, "top_p")),
        ("max_tokens", max_tokens),
        ("seed", fields.integer(body, "seed")),
        ("user", fields.short_string(body, "user")),
        ("tool_choice", body.get("tool_choice")),
    ):
        if value is not None:
            params[key] = value
    extra = {k: v for k, v in body.items() if k in PASSTHROUGH_FIELDS}
    request = ChatRequest.create(
        model,
        [_neutral_role(m) for m in messages],
        stop=fields.string_list(body, "stop"),
        tools=tools,
        extra=extra,
        **params,
    )
    return OpenAICall(request, stream, include_usage)


def _neutral_role(message: Any) -> Any:
    # OpenAI's newer "developer" role is what every other API calls the system prompt.
    if isinstance(message, Mapping) and message.get("role") == "developer":
        return {**message, "role": "system"}
    return message


def _usage(response: ChatResponse) -> dict[str, Any]:
    usage = response.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def answered_by(response: ChatResponse) -> str:
    """The gateway address that answered (after fallbacks and routing)."""
    return f"{response.provider}/{response.model}"


def render_completion(response: ChatResponse, *, created: int | None = None) -> dict[str, Any]:
    """A ``chat.completion`` body; ``id`` carries the call's trace id from the log."""
    message: dict[str, Any] = {"role": "assistant", "content": response.text, "refusal": None}
    if response.tool_calls:
        message["tool_calls"] = [dict(call) for call in response.tool_calls]
        message["content"] = response.text or None
    return {
        "id": f"chatcmpl-{response.trace_id or response.call_id}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": answered_by(response),
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH[response.finish_reason],
            }
        ],
        "usage": _usage(response),
    }


class OpenAIChunks:
    """The SSE events of one streamed completion, as bytes: `start`, `text` per delta,
    `end` with the final response (finish reason, tool calls, the usage chunk when the
    client asked for it, then ``data: [DONE]``), or `error` instead of `end`.

    Every chunk names the model the client asked for: the target that answers (after a
    policy's choice or a fallback) is known only once the stream has ended."""

    __slots__ = ("_head", "_include_usage")

    def __init__(self, response_id: str, model: str, *, include_usage: bool) -> None:
        self._head = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self._include_usage = include_usage
        if include_usage:
            self._head["usage"] = None  # as OpenAI: null on every chunk but the last

    def _chunk(self, delta: Mapping[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**self._head, "choices": [choice]})

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None}, None)

    def text(self, text: str) -> bytes:
        return self._chunk({"content": text}, None)

    def end(self, response: ChatResponse) -> bytes:
        out = []
        if response.tool_calls:
            calls = [{"index": i, **dict(call)} for i, call in enumerate(response.tool_calls)]
            out.append(self._chunk({"tool_calls": calls}, None))
        out.append(self._chunk({}, _FINISH[response.finish_reason]))
        if self._include_usage:
            out.append(_sse({**self._head, "choices": [], "usage": _usage(response)}))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    @staticmethod
    def error(error: HttpError) -> bytes:
        """An error after the stream began: a ``data: {"error": {...}}`` event (the OpenAI
        SDK raises `openai.APIError` on it); no ``[DONE]`` follows."""
        return _sse(openai_error(error)[1])


def models_list(models: list[tuple[str, str]]) -> dict[str, Any]:
    """The ``GET /v1/models`` list: ``(id, owned_by)`` pairs in OpenAI's shape."""
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": owner}
            for model, owner in models
        ],
    }


def _sse(payload: Mapping[str, Any]) -> bytes:
    # backslashreplace: a lone surrogate from an upstream answer goes out as its JSON escape
    return b"data: " + _JSON.encode(payload).encode("utf-8", "backslashreplace") + b"\n\n"
