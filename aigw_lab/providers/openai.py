"""The OpenAI Chat Completions wire format (``POST /chat/completions``).

One codec serves OpenAI itself, Workers AI's OpenAI-compatible endpoint and every
OpenAI-compatible server (vLLM, Ollama, Groq, Together, OpenRouter, Mistral...). Those
servers differ in small ways this codec tolerates: usage chunks with ``"choices": null``,
errors shaped ``{"error": "text"}`` or as a Cloudflare envelope, unknown finish reasons.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import EXTRA_FIELDS, check_extra
from aigw_lab.errors import (
    ContentFilteredError,
    ContextLengthExceededError,
    QuotaExceededError,
)
from aigw_lab.providers.cloudflare import envelope_error, envelope_error_class
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
from aigw_lab.types import UNKNOWN_USAGE, ChatRequest, FinishReason, Usage

__all__ = ["OpenAICodec", "openai_usage", "openai_finish_reason", "error_fields"]

_EMPTY: Mapping[str, str] = MappingProxyType({})

_FINISH: Mapping[str, FinishReason] = MappingProxyType(
    {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
        "function_call": "tool_calls",
        "content_filter": "content_filter",
        # Seen from OpenAI-compatible servers:
        "eos": "stop",
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "model_length": "length",
        "error": "error",
    }
)

_CONTENT_FILTER_CODES = frozenset(("content_filter", "content_policy_violation"))
_QUOTA_CODES = frozenset(("insufficient_quota", "billing_hard_limit_reached"))


class OpenAICodec:
    """Chat Completions. ``max_tokens_field`` names the body field for the output limit
    (OpenAI's own API prefers ``max_completion_tokens``, compatible servers read
    ``max_tokens``); ``stream_usage`` asks for the final usage chunk with
    ``stream_options.include_usage`` on every stream, whatever the caller wants to see
    (only the operator turns it off, for servers that reject the option; such streams are
    logged with an unknown usage). ``extra_fields``: the fields of a request's ``extra``
    passed through (`aigw_lab.addressing.EXTRA_FIELDS`); any other is refused."""

    __slots__ = ("max_tokens_field", "stream_usage", "extra_fields")

    api_format = "openai"
    headers: Mapping[str, str] = _EMPTY

    def __init__(
        self,
        *,
        max_tokens_field: str = "max_tokens",
        stream_usage: bool = True,
        extra_fields: frozenset[str] = EXTRA_FIELDS["openai-compatible"],
    ):
        self.max_tokens_field = max_tokens_field
        self.stream_usage = stream_usage
        self.extra_fields = extra_fields

    def encode(self, request: ChatRequest, *, stream: bool) -> EncodedRequest:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [m.to_dict() for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        if request.extra:
            # Only allowlisted fields: none of them can replace a field set above.
            check_extra(request.extra, self.extra_fields, where="OpenAI-format APIs")
            body.update(request.extra)
        return EncodedRequest("/chat/completions", body)

    def decode(self, payload: Any, request: ChatRequest) -> Decoded:
        # `type(...) is dict` first: JSON gives plain dicts, and the ABC check costs more.
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise WireFormatError("expected a JSON object")
        if _is_error_payload(payload):
            raise UpstreamErrorEvent(_error_status(payload), payload)
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices:
            raise WireFormatError("no 'choices' in the completion")
        choice = choices[0]
        message = choice["message"]
        content = message.get("content")
        text = content if type(content) is str else _content_text(content)
        finish = openai_finish_reason(choice.get("finish_reason"))
        refusal = message.get("refusal")
        if not text and refusal:
            text, finish = str(refusal), "content_filter"
        tool_calls = message.get("tool_calls")
        return Decoded(
            text=text,
            finish_reason=finish,
            usage=openai_usage(payload.get("usage")),
            response_id=payload.get("id"),  # response_id
            model=payload.get("model"),
            tool_calls=tuple(tool_calls) if tool_calls else None,
            raw=payload,  # raw
        )

    def stream_decoder(self, request: ChatRequest) -> _OpenAIStream:
        return _OpenAIStream()

    def parse_error(self, status: int, payload: Any) -> ErrorDetail:
        message, code, kind = error_fields(payload)
        labels = {code, kind}
        # Workers AI's compatible endpoint fails with Cloudflare envelope codes.
        error_class = envelope_error_class(envelope_error(payload)[1])
        if error_class is None:
            if labels & _QUOTA_CODES:
                error_class = QuotaExceededError
            elif labels & _CONTENT_FILTER_CODES:
                error_class = ContentFilteredError
            elif "context_length_exceeded" in labels or (
                status in (400, 413, 422) and is_context_overflow(message)
            ):
                error_class = ContextLengthExceededError
        return ErrorDetail(message=message, error_class=error_class, code=code)


class _OpenAIStream:
    """Chat completion chunks: ``choices[0].delta`` text and tool-call pieces, the usage-only
    chunk that ``include_usage`` adds, then ``data: [DONE]``."""

    __slots__ = ("finished", "_parts", "_finish", "_usage", "_id", "_model", "_tools", "_raw")

    def __init__(self) -> None:
        self.finished = False
        self._parts: list[str] = []
        self._finish: FinishReason = "unknown"
        self._usage = UNKNOWN_USAGE  # until a usage chunk says otherwise
        self._id: str | None = None
        self._model: str | None = None
        self._tools: dict[int, dict[str, Any]] = {}
        self._raw: list[Any] = []

    def feed(self, event: SSEEvent) -> str:
        data = event.data
        if data == "[DONE]":
            self.finished = True
            return ""
        chunk = json.loads(data)
        if not isinstance(chunk, Mapping):
            raise WireFormatError("a stream chunk is not a JSON object")
        if _is_error_payload(chunk):
            raise UpstreamErrorEvent(_error_status(chunk), chunk)
        self._raw.append(chunk)
        if self._id is None:
            self._id = chunk.get("id")
            self._model = chunk.get("model")
        usage = chunk.get("usage")
        if usage:
            self._usage = openai_usage(usage)
        text = ""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not supported: only the first answer is kept
            delta = choice.get("delta") or {}
            text = _content_text(delta.get("content"))
            for piece in delta.get("tool_calls") or ():
                self._add_tool_piece(piece)
            reason = choice.get("finish_reason")
            if reason:
                self._finish = openai_finish_reason(reason)
        if text:
            self._parts.append(text)
        return text

    def _add_tool_piece(self, piece: Mapping[str, Any]) -> None:
        call = self._tools.setdefault(
            piece.get("index", len(self._tools)),
            {"id": None, "type": "function", "name": "", "arguments": []},
        )
        if piece.get("id"):
            call["id"] = piece["id"]
        function = piece.get("function") or {}
        if function.get("name"):
            call["name"] += function["name"]
        if function.get("arguments"):
            call["arguments"].append(function["arguments"])

    def result(self) -> Decoded:
        tool_calls = tuple(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
            }
            for _, call in sorted(self._tools.items())
        )
        return Decoded(
            text="".join(self._parts),
            finish_reason=self._finish,
            usage=self._usage,
            response_id=self._id,
            model=self._model,
            tool_calls=tool_calls or None,
            raw=self._raw,
        )


def openai_usage(usage: Any) -> Usage:
    """`Usage` from an OpenAI ``usage`` object (``prompt_tokens`` already counts cached
    tokens, ``completion_tokens`` counts reasoning tokens)."""
    if type(usage) is not dict and not isinstance(usage, Mapping):
        return UNKNOWN_USAGE  # not reported: priced as unknown, never as 0 tokens
    prompt_details = usage.get("prompt_tokens_details") or _EMPTY
    completion_details = usage.get("completion_tokens_details") or _EMPTY
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    cached = prompt_details.get("cached_tokens")
    reasoning = completion_details.get("reasoning_tokens")
    # A plain int (the usual case) is taken as it is; anything else goes through
    # `usage_int` (missing, null, float, bool), as every field did: four calls fewer per answer.
    return Usage(
        input_tokens=prompt if type(prompt) is int else usage_int(prompt),
        output_tokens=completion if type(completion) is int else usage_int(completion),
        cache_read_tokens=cached if type(cached) is int else usage_int(cached),
        cache_write_tokens=0,  # OpenAI reports none
        reasoning_tokens=reasoning if type(reasoning) is int else usage_int(reasoning),
    )


def openai_finish_reason(value: Any) -> FinishReason:
    """A normalised finish reason from an OpenAI-style ``finish_reason``."""
    return _FINISH.get(value, "unknown") if isinstance(value, str) else "unknown"


def error_fields(payload: Any) -> tuple[str | None, str | None, str | None]:
    """``(message, code, type)`` from the error bodies OpenAI-style servers send:
    ``{"error": {...}}`` (OpenAI, Groq, Together...), ``{"error": "text"}`` (Ollama),
    ``{"object": "error", "message": ...}`` (vLLM), ``{"detail": ...}``, and the Cloudflare
    v4 envelope (Workers AI's compatible endpoint, AI Gateway)."""
    if not isinstance(payload, Mapping):
        return None, None, None
    error = payload.get("error")
    if isinstance(error, Mapping):
        source: Mapping[str, Any] = error
    elif isinstance(error, str):
        return error, None, None
    else:
        message, number = envelope_error(payload)
        if message is not None:
            return message, str(number) if number is not None else None, None
        source = payload
    message = source.get("message")
    if message is None and isinstance(source.get("detail"), str):
        message = source["detail"]
    code = source.get("code")
    kind = source.get("type")
    return (
        str(message) if message is not None else None,
        str(code) if code is not None else None,
        str(kind) if kind is not None else None,
    )


def _is_error_payload(payload: Mapping[str, Any]) -> bool:
    return (payload.get("error") is not None or payload.get("object") == "error") and not (
        payload.get("choices")
    )


def _error_status(payload: Mapping[str, Any]) -> int:
    # An error delivered inside a 200 (mid-stream or from a lenient server): take the status
    # it states, if any, else treat it as the server's failure.
    error = payload.get("error")
    code = error.get("code") if isinstance(error, Mapping) else payload.get("code")
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    return 500


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        parts = (p for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        return "".join(p.get("text") or "" for p in parts)
    return ""
