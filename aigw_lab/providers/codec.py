"""What a provider's wire format is to aigw_lab: the `Codec` protocol and the plain values
that cross it.

A codec is pure: it turns a `ChatRequest` into a path, a JSON body and headers, and a
provider's JSON (whole answers, stream events, error bodies) back into normalised values. It
never touches the network, so one codec serves a provider's own API and any proxy in front of
it (a Cloudflare AI Gateway, a test server); `aigw_lab.providers.transport.HttpProvider`
does the HTTP. `error_for_status` is the shared half of error mapping: the status (and
``retry-after``) picks the error type unless the codec's reading of the body says more.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Protocol

from aigw_lab._frozen import fast_init
from aigw_lab.errors import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    ProviderServerError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitedError,
)
from aigw_lab.providers.sse import SSEEvent
from aigw_lab.types import ChatRequest, FinishReason, Usage

__all__ = [
    "ERROR_EXPLANATIONS",
    "error_for_status",
    "parse_retry_after",
    "Codec",
    "StreamDecoder",
    "EncodedRequest",
    "Decoded",
    "ErrorDetail",
    "WireFormatError",
    "UpstreamErrorEvent",
    "is_context_overflow",
    "usage_int",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@fast_init
@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A request in a provider's wire format: path below the base URL, JSON body, and any
    headers that depend on this request."""

    path: str
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """The normalised fields a codec reads out of one answer."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    response_id: str | None = None
    model: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    raw: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorDetail:
    """What a codec reads out of an error body: the provider's own message, and the error
    type when the body says more than the status (context length, quota, content filter)."""

    message: str | None = None
    error_class: type[ProviderError] | None = None
    code: str | None = None


class WireFormatError(ValueError):
    """Raised by a codec when a payload does not follow the format it decodes; the transport
    turns it into `MalformedResponseError` with the provider's name and the body."""


class UpstreamErrorEvent(Exception):
    """Raised by a codec when a payload that arrived as a success is really an error (an
    Anthropic ``event: error`` mid-stream, a Workers AI ``success: false`` envelope).
    ``status`` is the HTTP status the provider uses for that error outside a stream."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload


class StreamDecoder(Protocol):
    """The state of one streamed answer: fed SSE events, returns the text each adds."""

    #: True once the stream's final event ([DONE], message_stop) arrived.
    finished: bool

    def feed(self, event: SSEEvent) -> str: ...

    def result(self) -> Decoded: ...


class Codec(Protocol):
    """A wire format: pure functions between aigw_lab types and a provider's JSON."""

    #: ``"openai"``, ``"anthropic"`` or ``"workers-ai"``: the ``api_format`` logged per call.
    api_format: str
    #: Headers every request in this format carries (``anthropic-version``).
    headers: Mapping[str, str]

    def encode(self, request: ChatRequest, *, stream: bool) -> EncodedRequest: ...

    def decode(self, payload: Any, request: ChatRequest) -> Decoded: ...

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder: ...

    def parse_error(self, status: int, payload: Any) -> ErrorDetail: ...


# How providers and OpenAI-compatible servers (vLLM, Ollama, Workers AI...) word "the prompt
# does not fit": matched only on 400/413/422 answers.
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many (input )?tokens|prompt is too long"
    r"|exceeds? (the )?(model'?s? )?(max(imum)? )?(context|token limit)",
    re.IGNORECASE,
)


def is_context_overflow(message: str | None) -> bool:
    """Whether an error message says the prompt does not fit the model's context window."""
    return bool(message) and _CONTEXT_OVERFLOW.search(message) is not None


def usage_int(value: Any) -> int:
    """A token count from a usage field that may be missing, null or a float."""
    if type(value) is int:  # the usual case, decided without the union isinstance below
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


# --- error answers -> typed errors ----------------------------------------------------------

_STATUS_ERRORS: Mapping[int, type[ProviderError]] = MappingProxyType(
    {
        400: InvalidRequestError,
        401: AuthenticationError,
        402: QuotaExceededError,
        403: AuthenticationError,
        404: InvalidRequestError,
        408: ProviderTimeoutError,
        413: InvalidRequestError,
        422: InvalidRequestError,
        429: RateLimitedError,
        500: ProviderServerError,
        502: ProviderServerError,
        503: OverloadedError,
        504: ProviderServerError,
        529: OverloadedError,
    }
)

#: For each error type: what happened, and how to fix it (None: nothing the caller can do).
ERROR_EXPLANATIONS: Mapping[type[ProviderError], tuple[str, str | None]] = MappingProxyType(
    {
        InvalidRequestError: ("the provider rejected the request", None),
        ContextLengthExceededError: ("the prompt does not fit the model's context window",
                                     "shorten the prompt or lower max_tokens"),
        ContentFilteredError: ("the provider's content filter refused the request",
                               "rephrase the request"),
        AuthenticationError: ("the provider refused the credentials",
                              "check the API key this provider reads (api_key_env) and that "
                              "it may use this model"),
        QuotaExceededError: ("the account is out of credit or quota",
                             "add credit or raise the quota in the provider's console; "
                             "retrying the same provider will not help"),
        RateLimitedError: ("rate limited by the provider",
                           "retry with backoff or lower the request rate"),
        ProviderServerError: ("the provider failed on its side",
                              "retry later or fall back to another provider"),
        OverloadedError: ("the provider is overloaded",
                          "retry later or fall back to another provider"),
        ProviderTimeoutError: ("the provider timed out",
                               "raise the provider's timeout or the request's timeout"),
        MalformedResponseError: ("the answer does not follow the provider's format",
                                 "check that base_url points to an API of this provider's "
                                 "kind"),
    }
)  # fmt: skip


def error_for_status(
    status: int,
    detail: ErrorDetail,
    *,
    provider: str,
    model: str,
    body: str | None,
    headers: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
) -> ProviderError:
    """The typed error for an error answer: the codec's reading of the body wins over the
    status; unknown 4xx are invalid requests and unknown 5xx server errors."""
    cls = detail.error_class or _STATUS_ERRORS.get(status)
    if cls is None:
        cls = ProviderServerError if status >= 500 else InvalidRequestError
    what, hint = ERROR_EXPLANATIONS.get(cls, ("the provider returned an error", None))
    if status == 404 and cls is InvalidRequestError:
        hint = f"check the model name {model!r} and the provider's base_url"
    elif status == 413 and cls is InvalidRequestError:
        hint = "the request body is too large; shorten the prompt"
    retryable = " (retryable)" if cls.retryable else ""
    message = f"{what}{retryable}: {detail.message or 'no error message in the body'}"
    if cls is RateLimitedError:
        retry_after = parse_retry_after(headers or _EMPTY, now=now)
        if retry_after is not None:
            hint = f"wait {retry_after:g}s and retry, or lower the request rate"
        return RateLimitedError(message, retry_after=retry_after, provider=provider,
                                model=model, status=status, body=body, hint=hint)  # fmt: skip
    return cls(message, provider=provider, model=model, status=status, body=body, hint=hint)


# OpenAI's x-ratelimit-reset-* durations: "1s", "6m0s", "20ms", "1h2m3.5s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0})


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait before retrying, from ``retry-after-ms``, ``retry-after`` (seconds or
    an HTTP date) or OpenAI's ``x-ratelimit-reset-requests``/``-tokens`` durations (those of
    an exhausted limit when ``x-ratelimit-remaining-*`` says which); None if none is usable."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = headers.get("retry-after")
    if value is not None:
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - now())
    resets: list[float] = []
    exhausted: list[float] = []
    for limit in ("requests", "tokens"):
        seconds = _parse_duration(headers.get(f"x-ratelimit-reset-{limit}"))
        if seconds is None:
            continue
        resets.append(seconds)
        if headers.get(f"x-ratelimit-remaining-{limit}", "").strip() == "0":
            exhausted.append(seconds)
    chosen = exhausted or resets
    return max(chosen) if chosen else None


def _seconds(value: str | None) -> float | None:
    """A plain non-negative number of seconds, or None (also for "inf" and "nan")."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def _parse_duration(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
