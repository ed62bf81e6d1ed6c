"""The server side of the simulated fleet's wire formats.

`respond` turns one HTTP request (method, path, body) into a `WireReply`: status, headers,
and either a body or a list of paced stream events, each with the (unscaled) delay before
it. `aigw_lab.sim.transport.SimulatedTransport` (in-process, for httpx) and
`aigw_lab.sim_server` (real HTTP) both play a `WireReply` out, so the bytes a client sees
are the same either way.

Formats served (bodies follow the providers' public API references):

- OpenAI Chat Completions: ``POST /v1/chat/completions``, JSON or SSE ``chat.completion.chunk``
  events (a final usage chunk when ``stream_options.include_usage``), then ``data: [DONE]``.
- Anthropic Messages: ``POST /v1/messages``, JSON or the SSE event sequence ``message_start``,
  ``content_block_start``, ``ping``, ``content_block_delta``..., ``content_block_stop``,
  ``message_delta``, ``message_stop``.
- Cloudflare Workers AI: ``POST /client/v4/accounts/{account}/ai/run/{model}`` in the
  ``{"result", "success", "errors", "messages"}`` envelope, or SSE ``data: {"response"}``
  events, a usage event and ``data: [DONE]``; and the OpenAI-compatible
  ``/client/v4/accounts/{account}/ai/v1/chat/completions``.
- ``GET /v1/models``: the fleet in the OpenAI list format.

Routing goes by the end of the path, so any base URL prefix works.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from aigw_lab.sim.fleet import SimPlan, SimulatedFleet

__all__ = ["SimCall", "WireReply", "base_urls", "respond", "route", "SIMULATED_HEADER"]

#: Header on every response of the fleet; the fleet never passes for a real provider.
SIMULATED_HEADER = ("x-aigw-simulated", "true")
#: ``system_fingerprint`` of every OpenAI-format body.
SYSTEM_FINGERPRINT = "aigw-simulated"
#: Workers AI's default ``max_tokens`` when a request sets none.
WORKERS_DEFAULT_MAX_TOKENS = 256
# Share of the time to first token spent before the response headers go out (queueing and
# connection set-up); the rest passes before the first text event.
_TTFB_SHARE = 0.3

_JSON = ("content-type", "application/json")
_SSE = ("content-type", "text/event-stream; charset=utf-8")
_OPENAI_STOP = {"stop": "stop", "stop_sequence": "stop", "length": "length"}
_ANTHROPIC_STOP = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens"}


@dataclass(frozen=True, slots=True)
class SimCall:
    """What the fleet needs from one request, whatever its wire format.

    ``messages`` are ``(role, text)`` pairs, system prompts included; ``include_usage`` is
    OpenAI's ``stream_options.include_usage``.
    """

    api_format: str
    model: str
    messages: tuple[tuple[str, str], ...]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False


@dataclass(slots=True)
class WireReply:
    """An HTTP response to play out. ``delay_s`` passes before the headers; a streamed reply
    has ``events``, each ``(delay_s, bytes)``; ``hang`` means: never answer (timeout fault).
    Delays are unscaled seconds: the player multiplies them by the fleet's ``time_scale``."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    events: list[tuple[float, bytes]] | None = None
    delay_s: float = 0.0
    hang: bool = False


class _BadRequest(Exception):
    """A request the fleet refuses with HTTP 400, in the format's own error shape."""


def base_urls(root: str) -> dict[str, str]:
    """The base URL to give each kind of client, for a simulator served at ``root`` (the
    paths `route` answers)."""
    root = root.rstrip("/")
    workers = f"{root}/client/v4/accounts/simulated/ai"
    return {
        "openai": f"{root}/v1",
        "anthropic": root,
        "workers-ai": f"{workers}/run/{{model}}",
        "workers-ai-openai": f"{workers}/v1",
    }


def route(method: str, path: str) -> tuple[str, str | None] | None:
    """``(api_format, model named in the path)`` for a request, or None if nothing serves
    it. Formats: ``openai``, ``anthropic``, ``workers-ai``, ``workers-ai-openai``, ``models``."""
    path = path.rstrip("/")
    if method == "GET" and path.endswith("/models"):
        return ("models", None)
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return ("workers-ai-openai" if "/ai/v1/" in path else "openai", None)
    if path.endswith("/messages"):
        return ("anthropic", None)
    _, sep, model = path.partition("/ai/run/")
    if sep and model:
        return ("workers-ai", unquote(model))
    return None


def respond(fleet: SimulatedFleet, method: str, path: str, body: bytes) -> WireReply:
    """The fleet's full answer to one HTTP request."""
    found = route(method, path)
    if found is None:
        return _error("openai", "not_found", f"no simulated endpoint serves {method} {path}")
    api_format, path_model = found
    if api_format == "models":
        return _models_list(fleet)
    try:
        call = _parse(api_format, body, path_model)
    except _BadRequest as exc:
        return _error(api_format, "invalid_request", str(exc))
    if fleet.model(call.model) is None:
        known = ", ".join(m.id for m in fleet.models)
        return _error(
            api_format,
            "model_not_found",
            f"The model `{call.model}` does not exist in the simulated fleet (known: {known}).",
        )
    plan = fleet.plan(call)
    if plan.fault is not None:
        return _fault_reply(call, plan)
    return _RENDER[api_format](call, plan)


# --- requests -------------------------------------------------------------------------------


def _parse(api_format: str, body: bytes, path_model: str | None) -> SimCall:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise _BadRequest(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _BadRequest("the request body must be a JSON object")
    model = path_model if api_format == "workers-ai" else data.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model: a model name is required")
    messages: list[tuple[str, str]] = []
    if api_format == "anthropic":
        system = data.get("system")
        if system:
            messages.append(("system", _text_of(system, "system")))
        max_tokens = data.get("max_tokens")
        if max_tokens is None:
            raise _BadRequest("max_tokens: Field required")
    else:
        max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
        if api_format == "workers-ai" and max_tokens is None:
            max_tokens = WORKERS_DEFAULT_MAX_TOKENS
    if api_format == "workers-ai" and "messages" not in data and "prompt" in data:
        messages.append(("user", _text_of(data["prompt"], "prompt")))
    else:
        raw = data.get("messages")
        if not isinstance(raw, list) or not raw:
            raise _BadRequest("messages: at least one message is required")
        for i, message in enumerate(raw):
            if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
                raise _BadRequest(f"messages.{i}: each message needs a role")
            messages.append((message["role"], _text_of(message.get("content"), f"messages.{i}")))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise _BadRequest(f"max_tokens: {max_tokens!r} is not a positive integer")
    stop = data.get("stop_sequences" if api_format == "anthropic" else "stop")
    if isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list):
        stop = tuple(s for s in stop if isinstance(s, str))
    else:
        stop = ()
    options = data.get("stream_options") or {}
    temperature = data.get("temperature")
    return SimCall(
        api_format=api_format,
        model=model,
        messages=tuple(messages),
        max_tokens=max_tokens,
        temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
        stop=stop,
        stream=bool(data.get("stream")),
        include_usage=bool(isinstance(options, Mapping) and options.get("include_usage")),
    )


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, Mapping) else str(part) for part in content
        )
    raise _BadRequest(f"{where}: content must be a string or a list of content parts")


# --- rendering ------------------------------------------------------------------------------


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: ".encode() + _dumps(data) + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _headers(api_format: str, plan: SimPlan | None, stream: bool) -> list[tuple[str, str]]:
    headers = [_SSE if stream else _JSON, SIMULATED_HEADER]
    if plan is not None:
        name = "request-id" if api_format == "anthropic" else "x-request-id"
        headers.append((name, f"req_{plan.response_id}"))
    return headers


# A text event of each format whose JSON breaks off inside an escape sequence.
_OPENAI_BROKEN = (
    b'data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"\\u00\n\n'
)
_BROKEN_EVENT = {
    "openai": _OPENAI_BROKEN,
    "workers-ai-openai": _OPENAI_BROKEN,
    "anthropic": b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"\\u00\n\n',
    "workers-ai": b'data: {"response":"\\u00\n\n',
}


def _paced(
    plan: SimPlan, api_format: str, preamble: list[bytes], deltas: list[bytes], closing: list[bytes]
) -> list[tuple[float, bytes]]:
    """Events with their delays: the preamble right after the headers, the first text event
    at the time to first token, the next ones at the model's speed, the closing at once."""
    events = [(0.0, chunk) for chunk in preamble]
    per_token = 1.0 / plan.tokens_per_s
    for i, chunk in enumerate(deltas):
        events.append((plan.ttft_s * (1 - _TTFB_SHARE) if i == 0 else per_token, chunk))
    if not deltas and closing:  # nothing to say: the end still waits for the first token
        closing = list(closing)
        events.append((plan.ttft_s * (1 - _TTFB_SHARE), closing.pop(0)))
    events.extend((0.0, chunk) for chunk in closing)
    if plan.fault == "truncated":
        # Cut the stream part-way through the text, before any final event.
        return events[: len(preamble) + min(plan.cut_after, len(deltas))]
    if plan.fault == "malformed":
        at = len(preamble) + min(plan.cut_after, len(deltas))
        events.insert(at, (0.0, _BROKEN_EVENT[api_format]))
    return events


def _whole(plan: SimPlan, body: dict[str, Any], headers: list[tuple[str, str]]) -> WireReply:
    """A non-streamed answer, sent once the whole text is generated."""
    encoded = _dumps(body)
    if plan.fault == "truncated":  # non-streamed: half a body
        encoded = encoded[: len(encoded) // 2]
    elif plan.fault == "malformed":
        encoded = encoded[: len(encoded) * 3 // 5] + b"<<<"
    delay = plan.ttft_s + plan.output_tokens / plan.tokens_per_s
    return WireReply(200, headers, encoded, delay_s=delay)


def _openai_usage(plan: SimPlan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _render_openai(call: SimCall, plan: SimPlan) -> WireReply:
    finish = _OPENAI_STOP[plan.finish]
    rid = f"chatcmpl-{plan.response_id}"
    head = {
        "id": rid,
        "created": plan.created,
        "model": call.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if not call.stream:
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": plan.created,
            "model": call.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": plan.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _openai_usage(plan),
        }
        return _whole(plan, body, _headers(call.api_format, plan, False))
    usage_none = {"usage": None} if call.include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**head, "object": "chat.completion.chunk", "choices": [choice], **usage_none})

    preamble = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    deltas = [chunk({"content": piece}, None) for piece in plan.pieces]
    closing = [chunk({}, finish)]
    if call.include_usage:
        closing.append(
            _sse(
                {
                    **head,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": _openai_usage(plan),
                }
            )
        )
    closing.append(_DONE)
    events = _paced(plan, call.api_format, preamble, deltas, closing)
    return WireReply(
        200, _headers(call.api_format, plan, True), events=events, delay_s=plan.ttft_s * _TTFB_SHARE
    )


def _render_anthropic(call: SimCall, plan: SimPlan) -> WireReply:
    stop_reason = _ANTHROPIC_STOP[plan.finish]
    message = {
        "id": f"msg_{plan.response_id}",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": plan.text}],
        "stop_reason": stop_reason,
        "stop_sequence": plan.stop_sequence,
        "usage": {
            "input_tokens": plan.input_tokens,
            "output_tokens": plan.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    if not call.stream:
        return _whole(plan, message, _headers("anthropic", plan, False))
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    preamble = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]
    deltas = [
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
        for piece in plan.pieces
    ]
    closing = [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": plan.stop_sequence},
                "usage": {"output_tokens": plan.output_tokens},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    events = _paced(plan, "anthropic", preamble, deltas, closing)
    return WireReply(
        200, _headers("anthropic", plan, True), events=events, delay_s=plan.ttft_s * _TTFB_SHARE
    )


def _render_workers(call: SimCall, plan: SimPlan) -> WireReply:
    usage = {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
    }
    if not call.stream:
        body = {
            "result": {"response": plan.text, "usage": usage},
            "success": True,
            "errors": [],
            "messages": [],
        }
        return _whole(plan, body, _headers("workers-ai", plan, False))
    deltas = [_sse({"response": piece}) for piece in plan.pieces]
    closing = [_sse({"response": "", "usage": usage}), _DONE]
    events = _paced(plan, "workers-ai", [], deltas, closing)
    return WireReply(
        200, _headers("workers-ai", plan, True), events=events, delay_s=plan.ttft_s * _TTFB_SHARE
    )


_RENDER = {
    "openai": _render_openai,
    "workers-ai-openai": _render_openai,
    "anthropic": _render_anthropic,
    "workers-ai": _render_workers,
}


def _models_list(fleet: SimulatedFleet) -> WireReply:
    data = [
        {"id": m.id, "object": "model", "created": 0, "owned_by": f"{m.provider} (simulated)"}
        for m in fleet.models
    ]
    return WireReply(200, _headers("openai", None, False), _dumps({"object": "list", "data": data}))


# --- errors ---------------------------------------------------------------------------------

# Neutral error kind -> (HTTP status, OpenAI type, OpenAI code, Anthropic type, Workers code).
# Workers AI codes are illustrative: Cloudflare's numeric codes are not all documented.
_ERRORS: dict[str, tuple[int, str, str | None, str, int]] = {
    "invalid_request": (400, "invalid_request_error", None, "invalid_request_error", 5006),
    "context_length": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "invalid_request_error",
        5021,
    ),
    "model_not_found": (404, "invalid_request_error", "model_not_found", "not_found_error", 5007),
    "not_found": (404, "invalid_request_error", None, "not_found_error", 7000),
    "rate_limited": (429, "requests", "rate_limit_exceeded", "rate_limit_error", 3040),
    "server_error": (500, "server_error", None, "api_error", 3043),
    "unavailable": (503, "server_error", "service_unavailable", "api_error", 3043),
    "overloaded": (503, "server_error", "service_unavailable", "overloaded_error", 3040),
}

_FAULT_MESSAGES = {
    "rate_limited": "Rate limit reached for {model} (simulated). Please try again in {retry}s.",
    "server_error": "The simulated server had an error while processing your request.",
    "unavailable": "The simulated service is temporarily unavailable. Please retry.",
    "overloaded": "The simulated model {model} is overloaded. Please retry.",
}


def _error(
    api_format: str,
    kind: str,
    message: str,
    *,
    plan: SimPlan | None = None,
    status: int | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> WireReply:
    """An error response of ``kind`` (a key of `_ERRORS`) in the format's own body shape."""
    code_status, oa_type, oa_code, an_type, cf_code = _ERRORS[kind]
    status = status or code_status
    if api_format == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": an_type, "message": message}}
        if plan is not None:
            body["request_id"] = f"req_{plan.response_id}"
    elif api_format == "workers-ai":
        body = {
            "result": None,
            "success": False,
            "errors": [{"code": cf_code, "message": f"AiError: {message}"}],
            "messages": [],
        }
    else:
        param = "messages" if kind == "context_length" else None
        body = {"error": {"message": message, "type": oa_type, "param": param, "code": oa_code}}
    headers = _headers(api_format, plan, False) + list(extra_headers)
    return WireReply(status, headers, _dumps(body))


def _fault_reply(call: SimCall, plan: SimPlan) -> WireReply:
    fault = plan.fault
    if fault in ("truncated", "malformed"):
        return _RENDER[call.api_format](call, plan)
    if fault == "timeout":
        return WireReply(0, hang=True)
    if fault == "context_length":
        message = (
            f"This model's maximum context length is {plan.model.context_window} tokens. "
            f"However, you requested {plan.input_tokens + (call.max_tokens or 0)} tokens "
            f"({plan.input_tokens} in the messages, {call.max_tokens or 0} in the completion)."
        )
        if call.api_format == "anthropic":
            message = (
                f"prompt is too long: {plan.input_tokens} tokens + {call.max_tokens} "
                f"max_tokens > {plan.model.context_window} maximum"
            )
        return _error(call.api_format, "context_length", message, plan=plan)
    assert fault is not None
    message = _FAULT_MESSAGES[fault].format(model=call.model, retry=plan.retry_after_s)
    status = 529 if fault == "overloaded" and call.api_format == "anthropic" else None
    extra: tuple[tuple[str, str], ...] = ()
    if fault == "rate_limited":
        extra = (("retry-after", str(plan.retry_after_s)),)
        if plan.retry_after_ms is not None:
            extra += (("retry-after-ms", str(plan.retry_after_ms)),)
    # Errors come back quickly: a share of the usual time to first token.
    reply = _error(call.api_format, fault, message, plan=plan, status=status, extra_headers=extra)
    reply.delay_s = plan.ttft_s * _TTFB_SHARE
    return reply
