"""Cloudflare Workers AI's native wire format (``POST .../ai/run/{model}``).

Answers come in the Cloudflare API v4 envelope::

    {"result": {"response": "...", "usage": {...}}, "success": true, "errors": [], ...}

and errors as ``success: false`` with ``errors: [{code, message}]``, sometimes with a 200
status, which is still an error. Streams send ``data: {"response": "..."}`` pieces, a last
piece carrying ``usage``, then ``data: [DONE]``. The native API has no finish reason on most
models: ``length`` is inferred when the output used all of ``max_tokens``.

(Workers AI's OpenAI-compatible endpoint is served by `aigw_lab.providers.openai`.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import EXTRA_FIELDS, check_extra, model_path
from aigw_lab.errors import ContextLengthExceededError, InvalidRequestError
from aigw_lab.providers.cloudflare import envelope_error, envelope_error_class, envelope_status
from aigw_lab.providers.codec import (
    Decoded,
    EncodedRequest,
    ErrorDetail,
    UpstreamErrorEvent,
    WireFormatError,
    is_context_overflow,
)
from aigw_lab.providers.openai import error_fields, openai_finish_reason, openai_usage
from aigw_lab.providers.sse import SSEEvent
from aigw_lab.types import UNKNOWN_USAGE, ChatRequest, FinishReason, Message, Usage

__all__ = ["WorkersAICodec", "API_URL"]

#: The Cloudflare API root; a provider's base URL is ``{API_URL}/accounts/{account_id}/ai``.
API_URL = "https://api.cloudflare.com/client/v4"

_EMPTY: Mapping[str, str] = MappingProxyType({})


class WorkersAICodec:
    """Workers AI ``/ai/run``. ``path_prefix`` is ``"/run"`` against the Cloudflare API and
    ``""`` through an AI Gateway (``.../workers-ai/{model}``)."""

    __slots__ = ("path_prefix",)

    api_format = "workers-ai"
    headers: Mapping[str, str] = _EMPTY

    def __init__(self, *, path_prefix: str = "/run") -> None:
        self.path_prefix = path_prefix

    def encode(self, request: ChatRequest, *, stream: bool) -> EncodedRequest:
        if request.stop:
            raise InvalidRequestError(
                "Workers AI's native API has no stop sequences",
                hint="drop stop, or use kind 'workers-ai-openai' (its OpenAI-compatible endpoint)",
            )
        body: dict[str, Any] = {"messages": [_message(m) for m in request.messages]}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.seed is not None:
            body["seed"] = request.seed
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
        if stream:
            body["stream"] = True
        if request.extra:
            # Only allowlisted fields: none of them can replace a field set above.
            check_extra(request.extra, EXTRA_FIELDS["workers-ai"], where="Workers AI's API")
            body.update(request.extra)
        # The model is part of the URL: checked (no '..', '?', '#', '%'...) and encoded.
        return EncodedRequest(f"{self.path_prefix}/{model_path(request.model)}", body)

    def decode(self, payload: Any, request: ChatRequest) -> Decoded:
        # `type(...) is dict` first: JSON gives plain dicts, and the ABC check costs more.
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise WireFormatError("expected a JSON object")
        if payload.get("success") is False:
            raise UpstreamErrorEvent(envelope_status(payload), payload)
        result = payload.get("result")
        if type(result) is not dict and not isinstance(result, Mapping):
            raise WireFormatError("no 'result' object in the envelope")
        tool_calls = _tool_calls(result.get("tool_calls"))
        if "response" not in result and tool_calls is None:
            raise WireFormatError("the result has neither 'response' nor 'tool_calls'")
        usage = openai_usage(result.get("usage"))
        return Decoded(
            text=_response_text(result.get("response")),
            finish_reason=_finish(result.get("finish_reason"), tool_calls, usage, request),
            usage=usage,
            response_id=None,  # response_id: the native API has none
            model=None,  # model: nor does it echo the model
            tool_calls=tool_calls,
            raw=payload,  # raw
        )

    def stream_decoder(self, request: ChatRequest) -> _WorkersAIStream:
        return _WorkersAIStream(request)

    def parse_error(self, status: int, payload: Any) -> ErrorDetail:
        message, code = envelope_error(payload)
        if message is None:
            message, _, _ = error_fields(payload)  # an AI Gateway or proxy error body
        error_class = envelope_error_class(code)
        if error_class is None and status in (400, 413) and is_context_overflow(message):
            error_class = ContextLengthExceededError
        return ErrorDetail(
            message=message, error_class=error_class, code=str(code) if code is not None else None
        )


class _WorkersAIStream:
    __slots__ = ("finished", "_request", "_parts", "_usage", "_reason", "_tools", "_raw")

    def __init__(self, request: ChatRequest) -> None:
        self.finished = False
        self._request = request
        self._parts: list[str] = []
        self._usage = UNKNOWN_USAGE  # until a chunk reports usage
        self._reason: Any = None
        self._tools: list[dict[str, Any]] = []
        self._raw: list[Any] = []

    def feed(self, event: SSEEvent) -> str:
        data = event.data
        if data == "[DONE]":
            self.finished = True
            return ""
        chunk = json.loads(data)
        if not isinstance(chunk, Mapping):
            raise WireFormatError("a stream chunk is not a JSON object")
        if chunk.get("success") is False or chunk.get("errors"):
            raise UpstreamErrorEvent(envelope_status(chunk), chunk)
        self._raw.append(chunk)
        if chunk.get("usage"):
            self._usage = openai_usage(chunk["usage"])
        if chunk.get("finish_reason"):
            self._reason = chunk["finish_reason"]
        self._tools.extend(_tool_calls(chunk.get("tool_calls")) or ())
        text = chunk.get("response")
        if isinstance(text, str) and text:
            self._parts.append(text)
            return text
        return ""

    def result(self) -> Decoded:
        tool_calls = tuple(self._tools) or None
        return Decoded(
            text="".join(self._parts),
            finish_reason=_finish(self._reason, tool_calls, self._usage, self._request),
            usage=self._usage,
            tool_calls=tool_calls,
            raw=self._raw,
        )


def _message(message: Message) -> dict[str, Any]:
    out = message.to_dict()
    if not isinstance(message.content, str) and all(p.type == "text" for p in message.content):
        out["content"] = message.text  # most Workers AI models take only string content
    return out


def _response_text(response: Any) -> str:
    if response is None:
        return ""
    if isinstance(response, str):
        return response
    # JSON mode answers with an object rather than a string.
    return json.dumps(response, ensure_ascii=False)


def _tool_calls(calls: Any) -> tuple[dict[str, Any], ...] | None:
    """Workers AI's ``[{"name", "arguments"}]`` tool calls in the OpenAI shape."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for index, call in enumerate(calls):
        if "function" in call:  # already OpenAI-shaped (newer models)
            out.append(dict(call))
            continue
        arguments = call.get("arguments")
        out.append(
            {
                "id": call.get("id") or f"call_{index}",
                "type": "function",
                "function": {
                    "name": call.get("name"),
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments or {}),
                },
            }
        )
    return tuple(out)


def _finish(reason: Any, tool_calls: Any, usage: Usage, request: ChatRequest) -> FinishReason:
    if reason:
        return openai_finish_reason(reason)
    if tool_calls:
        return "tool_calls"
    if request.max_tokens is not None and usage.output_tokens >= request.max_tokens:
        return "length"
    return "stop"
