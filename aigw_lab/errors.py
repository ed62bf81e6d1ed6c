"""One error tree for everything aigw_lab raises.

Provider failures are mapped into this tree exactly once, at the provider boundary
(`aigw_lab.providers.transport`), and always with ``raise ... from exc`` so the original
cause stays visible. Callers catch these types, never httpx or SDK exceptions.

Every error carries a human message that names what went wrong and how to fix it; the CLI
prints that message (never a traceback) for the user's own mistakes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AigwError",
    "ConfigError",
    "UnknownProviderError",
    "UnknownModelError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "StoreError",
    "ProviderError",
    "RateLimitedError",
    "QuotaExceededError",
    "InvalidRequestError",
    "ContextLengthExceededError",
    "AuthenticationError",
    "ContentFilteredError",
    "ProviderServerError",
    "OverloadedError",
    "NetworkError",
    "ProviderTimeoutError",
    "MalformedResponseError",
    "StreamInterruptedError",
    "BudgetExceededError",
    "AllAttemptsFailedError",
    "SharedStateUnavailableError",
    "TeamLogFullError",
]


class AigwError(Exception):
    """Base of every error raised by aigw_lab."""

    #: Short, stable name used in the ``error_type`` column of the call log.
    error_type: str = "aigw_error"
    #: Whether sending the same request again may succeed.
    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} (fix: {hint})")


# --- the user's own set-up ------------------------------------------------------------------


class ConfigError(AigwError):
    """The configuration (TOML file or constructor arguments) is invalid."""

    error_type = "config_error"


class UnknownProviderError(ConfigError):
    """A model address names a provider that is not configured."""

    error_type = "unknown_provider"


class UnknownModelError(ConfigError):
    """A model is not known to the provider it was addressed to."""

    error_type = "unknown_model"


class MissingAPIKeyError(ConfigError):
    """The environment variable that should hold a provider's API key is unset or empty."""

    error_type = "missing_api_key"


class MissingExtraError(ConfigError):
    """A feature needs an optional dependency group (an extra such as ``aigw-lab[semantic]``)
    that is not installed; the hint is the install command."""

    error_type = "missing_extra"


class StoreError(AigwError):
    """The DuckDB call log cannot be opened or written."""

    error_type = "store_error"


# --- provider failures ----------------------------------------------------------------------


class ProviderError(AigwError):
    """A call to a provider failed.

    ``provider`` and ``model`` say where, ``status`` is the HTTP status when there was one,
    ``body`` is the (truncated) error body the provider sent, for debugging.
    """

    error_type = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        body: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.body = body
        if retryable is not None:
            self.retryable = retryable
        where = "/".join(p for p in (provider, model) if p)
        prefix = f"{where}: " if where else ""
        suffix = f" [HTTP {status}]" if status is not None else ""
        super().__init__(f"{prefix}{message}{suffix}", hint=hint)

    def __reduce__(self) -> tuple[Any, ...]:  # keep errors picklable across processes
        return (_rebuild_error, (type(self), self.__dict__.copy()))


def _rebuild_error(cls: type[ProviderError], state: dict[str, Any]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class RateLimitedError(ProviderError):
    """HTTP 429 or equivalent: too many requests; ``retry_after`` seconds if the provider said."""

    error_type = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class QuotaExceededError(ProviderError):
    """The account is out of credit or over its hard quota; retrying the same target won't help."""

    error_type = "quota_exceeded"
    retryable = False


class InvalidRequestError(ProviderError):
    """The request itself is wrong (bad parameter, malformed messages); never retried."""

    error_type = "invalid_request"
    retryable = False


class ContextLengthExceededError(InvalidRequestError):
    """The prompt plus requested output does not fit the model's context window."""

    error_type = "context_length_exceeded"


class AuthenticationError(ProviderError):
    """The API key is missing, wrong or lacks permission (HTTP 401/403)."""

    error_type = "authentication"
    retryable = False


class ContentFilteredError(ProviderError):
    """The provider refused the request or the answer on content-policy grounds."""

    error_type = "content_filtered"
    retryable = False


class ProviderServerError(ProviderError):
    """The provider failed on its side (HTTP 5xx)."""

    error_type = "server_error"
    retryable = True


class OverloadedError(ProviderServerError):
    """The provider is overloaded (Anthropic 529, HTTP 503)."""

    error_type = "overloaded"


class NetworkError(ProviderError):
    """The connection could not be made or broke before a response arrived."""

    error_type = "network_error"
    retryable = True


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within the configured timeout."""

    error_type = "timeout"
    retryable = True


class MalformedResponseError(ProviderError):
    """The provider answered with a body that does not follow its own API format."""

    error_type = "malformed_response"
    retryable = True


class StreamInterruptedError(MalformedResponseError):
    """A stream ended before its final event, so the answer may be cut short.

    ``partial_text`` holds what arrived; ``text_delivered`` says whether any of it reached the
    caller already (then a retry or fallback can no longer be transparent).
    """

    error_type = "stream_interrupted"

    def __init__(
        self, message: str, *, partial_text: str = "", text_delivered: bool = False, **kw: Any
    ) -> None:
        self.partial_text = partial_text
        self.text_delivered = text_delivered
        super().__init__(message, **kw)


# --- gateway policies -----------------------------------------------------------------------


class BudgetExceededError(AigwError):
    """A spending limit would be exceeded; the request was not sent."""

    error_type = "budget_exceeded"


class SharedStateUnavailableError(AigwError):
    """The shared state (Redis, ``[state]``) did not answer and a primitive set to fail
    closed refused the call without sending it. ``retry_after``: seconds until the gateway
    tries the shared state again."""

    error_type = "state_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class TeamLogFullError(SharedStateUnavailableError):
    """The team log's spool reached its bound (``[log] team_spool_max_bytes``) while
    PostgreSQL was not taking rows: new calls are refused before they are sent (and paid
    for) until it catches up, so no paid call goes missing from the team log. Served as 503
    with Retry-After, as any unavailable shared state."""

    error_type = "team_log_full"


class AllAttemptsFailedError(AigwError):
    """Every attempt (retries and fallbacks) failed; ``errors`` lists them in order."""

    error_type = "all_attempts_failed"

    def __init__(self, message: str, *, errors: list[AigwError], hint: str | None = None) -> None:
        self.errors = errors
        super().__init__(message, hint=hint)
