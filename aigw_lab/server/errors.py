"""Errors as HTTP answers, in the caller's API format.

Every failure the server reports goes through `http_error`, which turns an exception (an
`aigw_lab.errors` type, or anything unexpected) into an `HttpError`: a neutral kind, a
message, and for rate limits the seconds to wait. The format modules then render it:
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` or Anthropic's
``{"type": "error", "error": {"type", "message"}}``, with the status each API uses.

Two choices the providers' own conventions decide (see docs/serving.md):

- a gateway budget refusal is OpenAI's quota answer (429, ``insufficient_quota``) and
  Anthropic's billing answer (402, ``billing_error``), both with ``x-should-retry: false`` so
  the SDKs do not retry a request that cannot succeed until the budget resets;
- a failure that is the gateway operator's, not the caller's (the upstream provider refused
  the gateway's own API key, or its account is out of credit) is a 502, never a 401 or 402
  that would blame the caller's key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aigw_lab.errors import (
    AigwError,
    AllAttemptsFailedError,
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    MissingAPIKeyError,
    OverloadedError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    UnknownModelError,
    UnknownProviderError,
)

__all__ = ["HttpError", "http_error", "openai_error", "anthropic_error", "error_headers"]

_log = logging.getLogger("aigw_lab.server")


@dataclass(frozen=True, slots=True)
class HttpError:
    """A failure to report: ``kind`` is a key of the format tables below."""

    kind: str
    message: str
    retry_after: float | None = None
    param: str | None = None


# kind -> (OpenAI status, type, code; Anthropic status, type)
_FORMATS: Mapping[str, tuple[int, str, str | None, int, str]] = MappingProxyType(
    {
        "invalid_request": (400, "invalid_request_error", None, 400, "invalid_request_error"),
        "context_length": (
            400, "invalid_request_error", "context_length_exceeded", 400, "invalid_request_error"
        ),
        "content_filtered": (
            400, "invalid_request_error", "content_policy_violation", 400, "invalid_request_error"
        ),
        "authentication": (401, "invalid_request_error", "invalid_api_key", 401,
                           "authentication_error"),
        "not_found": (404, "invalid_request_error", None, 404, "not_found_error"),
        "model_not_found": (404, "invalid_request_error", "model_not_found", 404,
                            "not_found_error"),
        "method_not_allowed": (405, "invalid_request_error", None, 405, "invalid_request_error"),
        "request_too_large": (413, "invalid_request_error", None, 413, "request_too_large"),
        "rate_limited": (429, "requests", "rate_limit_exceeded", 429, "rate_limit_error"),
        "budget_exceeded": (429, "insufficient_quota", "insufficient_quota", 402,
                            "billing_error"),
        "internal": (500, "server_error", None, 500, "api_error"),
        "upstream": (502, "server_error", "upstream_error", 502, "api_error"),
        "overloaded": (503, "server_error", "service_unavailable", 529, "overloaded_error"),
        "timeout": (504, "server_error", "timeout", 504, "timeout_error"),
    }
)  # fmt: skip

# Kinds a client must not retry as they are: the SDKs honour x-should-retry.
_NO_RETRY = frozenset(("budget_exceeded",))


def http_error(exc: BaseException) -> HttpError:
    """The `HttpError` for an exception raised while serving a call."""
    if isinstance(exc, AllAttemptsFailedError) and exc.errors:
        # The last attempt's failure decides the status; the message tells the whole story.
        last = http_error(exc.errors[-1])
        return HttpError(last.kind, str(exc), last.retry_after, last.param)
    if not isinstance(exc, AigwError):
        _log.error("unexpected error while serving a call", exc_info=exc)
        return HttpError(
            "internal", f"internal error in the gateway ({type(exc).__name__}); see its log"
        )
    message = str(exc)
    if isinstance(exc, RateLimitedError):
        return HttpError("rate_limited", message, exc.retry_after)
    if isinstance(exc, BudgetExceededError):
        return HttpError("budget_exceeded", message)
    if isinstance(exc, ContextLengthExceededError):
        return HttpError("context_length", message, param="messages")
    if isinstance(exc, ContentFilteredError):
        return HttpError("content_filtered", message)
    if isinstance(exc, InvalidRequestError):
        return HttpError("invalid_request", message)
    if isinstance(exc, (UnknownModelError, UnknownProviderError)):
        return HttpError("model_not_found", message, param="model")
    if isinstance(exc, (AuthenticationError, QuotaExceededError, MissingAPIKeyError)):
        # The gateway's own upstream credentials or account: the caller's key is fine.
        return HttpError("upstream", f"the gateway's upstream provider refused it: {message}")
    if isinstance(exc, OverloadedError):
        return HttpError("overloaded", message)
    if isinstance(exc, ProviderTimeoutError):
        return HttpError("timeout", message)
    if isinstance(exc, ConfigError):
        _log.error("gateway configuration error while serving a call: %s", message)
        return HttpError("internal", message)
    if hasattr(exc, "provider"):  # any other ProviderError: server, network, malformed
        return HttpError("upstream", message)
    return HttpError("internal", message)


def openai_error(error: HttpError) -> tuple[int, dict[str, Any]]:
    """Status and body of ``error`` in the OpenAI format."""
    status, kind, code, _, _ = _FORMATS[error.kind]
    body = {"message": error.message, "type": kind, "param": error.param, "code": code}
    return status, {"error": body}


def anthropic_error(error: HttpError) -> tuple[int, dict[str, Any]]:
    """Status and body of ``error`` in the Anthropic format."""
    _, _, _, status, kind = _FORMATS[error.kind]
    return status, {"type": "error", "error": {"type": kind, "message": error.message}}


def error_headers(error: HttpError) -> list[tuple[bytes, bytes]]:
    """``retry-after`` (whole seconds, rounded up, as the header requires) and
    ``retry-after-ms`` for rate limits; ``x-should-retry: false`` where retrying is futile."""
    headers: list[tuple[bytes, bytes]] = []
    if error.retry_after is not None and math.isfinite(error.retry_after):
        wait = max(0.0, error.retry_after)
        headers.append((b"retry-after", str(math.ceil(wait)).encode()))
        headers.append((b"retry-after-ms", str(math.ceil(wait * 1000)).encode()))
    if error.kind in _NO_RETRY:
        headers.append((b"x-should-retry", b"false"))
    return headers
