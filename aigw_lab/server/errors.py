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

A client sees only what concerns its own request: `http_error` scrubs upstream URLs, file
and database paths and call or trace ids out of the message (the gateway's failures may
name them); the full message goes to the ``aigw_lab.server`` logger (stderr when logging is
not configured), with control characters escaped so no client text can forge a log line.
"""

from __future__ import annotations

import logging
import math
import re
import traceback
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
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
    SharedStateUnavailableError,
    UnknownModelError,
    UnknownProviderError,
)

__all__ = [
    "HttpError",
    "http_error",
    "openai_error",
    "anthropic_error",
    "error_headers",
    "scrub",
    "printable",
]

_log = logging.getLogger("aigw_lab.server")


@dataclass(frozen=True, slots=True)
class HttpError:
    """A failure to report: ``kind`` is a key of the format tables below."""

    kind: str
    message: str
    _: KW_ONLY  # the optional fields by name (retry_after, param)
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
        "request_timeout": (408, "invalid_request_error", "request_timeout", 408,
                            "invalid_request_error"),
        "request_too_large": (413, "invalid_request_error", None, 413, "request_too_large"),
        "rate_limited": (429, "requests", "rate_limit_exceeded", 429, "rate_limit_error"),
        "budget_exceeded": (429, "insufficient_quota", "insufficient_quota", 402,
                            "billing_error"),
        "internal": (500, "server_error", None, 500, "api_error"),
        "upstream": (502, "server_error", "upstream_error", 502, "api_error"),
        "overloaded": (503, "server_error", "service_unavailable", 529, "overloaded_error"),
        "timeout": (504, "server_error", "timeout", 504, "timeout_error"),
        "busy": (503, "server_error", "service_unavailable", 503, "overloaded_error"),
    }
)  # fmt: skip

# Kinds a client must not retry as they are: the SDKs honour x-should-retry.
_NO_RETRY = frozenset(("budget_exceeded",))


def http_error(exc: BaseException) -> HttpError:
    """The `HttpError` for an exception raised while serving a call: its message scrubbed
    for the client (see `scrub`); the whole story goes to the log when the error is the
    gateway's or its upstream's (5xx), or when scrubbing removed something."""
    error = _classify(exc)
    if error.kind == "internal" and not isinstance(exc, AigwError):
        return error  # already logged with its traceback
    message = scrub(error.message)
    if isinstance(exc, SharedStateUnavailableError) and message == error.message:
        # The shared state logs its outage once; a line per refused call would flood the log.
        return HttpError(error.kind, message, retry_after=error.retry_after, param=error.param)
    if message != error.message or _FORMATS[error.kind][0] >= 500:
        _log.warning(
            "call failed (%s, %s): %s", error.kind, type(exc).__name__, printable(error.message)
        )
    return HttpError(error.kind, message, retry_after=error.retry_after, param=error.param)


def _classify(exc: BaseException) -> HttpError:
    if isinstance(exc, AllAttemptsFailedError) and exc.errors:
        # The last attempt's failure decides the status; the message tells the whole story.
        last = _classify(exc.errors[-1])
        return HttpError(last.kind, str(exc), retry_after=last.retry_after, param=last.param)
    if not isinstance(exc, AigwError):
        log_unexpected(exc)
        return HttpError(
            "internal", f"internal error in the gateway ({type(exc).__name__}); see its log"
        )
    message = str(exc)
    if isinstance(exc, RateLimitedError):
        return HttpError("rate_limited", message, retry_after=exc.retry_after)
    if isinstance(exc, BudgetExceededError):
        return HttpError("budget_exceeded", message)
    if isinstance(exc, SharedStateUnavailableError):  # [state] down, the primitive fails closed
        return HttpError("busy", message, retry_after=exc.retry_after)
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
        # The operator's mistake; its detail (file names, variables) is for the log only.
        _log.error("gateway configuration error while serving a call: %s", printable(message))
        return HttpError("internal", "the gateway is misconfigured; its operator has the detail")
    if hasattr(exc, "provider"):  # any other ProviderError: server, network, malformed
        return HttpError("upstream", message)
    return HttpError("internal", message)


def log_unexpected(exc: BaseException) -> None:
    """Log an exception that is a bug: its type, escaped message and stack (the stack's
    lines are the gateway's source, never client text)."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    _log.error(
        "unexpected error while serving a call: %s: %s\n%s",
        type(exc).__name__,
        printable(str(exc)),
        stack.rstrip(),
    )


# What a client must not see in a message: URLs (upstream base URLs carry hosts, account
# ids, gateway names), absolute file paths (config, call log, policies), DuckDB files, and
# ids (another caller's call or trace id; 32 hex digits or a UUID).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{},;]+")
_PATH = re.compile(
    r"(?<![\w/.:~-])~?(?:/[\w.\-@+]+){2,}/?"  # /var/lib/x, ~/x/y (one level is an API path)
    r"|\b[A-Za-z]:\\[\w.\-@+\\]+"  # C:\dir\file
    r"|\b[\w.\-]+\.(?:duckdb|db|wal|toml|json|jsonl|parquet)\b"  # calls.duckdb
)
_ID = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b|\b[0-9a-f]{24,}\b",
    re.IGNORECASE,
)


def scrub(message: str) -> str:
    """``message`` without URLs, file paths and call ids, for a client to read."""
    message = _URL.sub("<upstream URL>", message)
    message = _PATH.sub("<path>", message)
    return _ID.sub("<id>", message)


# C0 and C1 controls, DEL, the Unicode line/paragraph separators and lone surrogates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MAX_LOGGED = 4000


def printable(text: str) -> str:
    """``text`` safe for one log line: controls escaped (``\\n``, ``\\x00``), at most
    4,000 characters."""
    if len(text) > _MAX_LOGGED:
        text = text[:_MAX_LOGGED] + "..."
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
