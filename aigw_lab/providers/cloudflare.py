"""Cloudflare specifics that are not a wire format of their own: AI Gateway routing (URLs,
``cf-aig-*`` headers, per-request overrides) and the Cloudflare API v4 error envelope.

A provider routed through an AI Gateway keeps its own format; only where it is sent changes::

    https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway}/openai/chat/completions
    https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway}/anthropic/v1/messages
    https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway}/workers-ai/{model}
    https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway}/workers-ai/v1/chat/completions
    https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway}/compat/chat/completions
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import check_cf_aig_header, check_model_name, check_path_segment
from aigw_lab.errors import (
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    MissingAPIKeyError,
    ProviderError,
    QuotaExceededError,
)
from aigw_lab.providers.base import ProviderSpec
from aigw_lab.providers.codec import (
    Codec,
    Decoded,
    EncodedRequest,
    ErrorDetail,
    StreamDecoder,
)
from aigw_lab.types import ChatRequest

__all__ = [
    "GATEWAY_URL",
    "GatewayCodec",
    "METADATA_KEY",
    "gateway_base_url",
    "gateway_headers",
    "cf_aig_headers",
    "envelope_error",
    "envelope_status",
    "envelope_error_class",
]

#: Where AI Gateways live; ``options["cf_gateway_url"]`` overrides it (tests, proxies).
GATEWAY_URL = "https://gateway.ai.cloudflare.com/v1"

_HEADER_PREFIX = "cf-aig-"
#: Request metadata key holding per-call gateway headers: ``{"cache-ttl": 60, ...}``.
METADATA_KEY = "cf_aig"


def gateway_base_url(spec: ProviderSpec, slug: str | None) -> str:
    """The base URL of ``spec``'s provider behind its AI Gateway (no trailing slash).

    ``slug`` is the gateway's path segment for the spec's kind (`ProviderKind.gateway_slug`:
    ``"openai"``, ``"workers-ai/v1"``, ``"compat"``...; None when the kind has none);
    ``options["cf_gateway_provider"]`` overrides it (an OpenAI-compatible provider Cloudflare
    knows by name: ``"groq"``, ``"mistral/v1"``, ``"openrouter"``...)."""
    if not spec.account_id:
        raise ConfigError(
            f"provider {spec.name!r} routes through AI Gateway {spec.cf_gateway!r} but has no "
            "Cloudflare account id",
            hint="set account_id, or account_id_env naming a variable that holds it",
        )
    slug = spec.options.get("cf_gateway_provider") or slug
    if not slug:
        raise ConfigError(
            f"provider {spec.name!r}: kind {spec.kind!r} cannot be routed through an AI Gateway",
            hint="set options.cf_gateway_provider to the gateway's provider path (e.g. "
            '"groq"), or use a kind with a gateway_slug (openai, anthropic, workers-ai, '
            "workers-ai-openai, openai-compatible)",
        )
    root = str(spec.options.get("cf_gateway_url") or GATEWAY_URL).rstrip("/")
    if not root.startswith(("http://", "https://")) or any(c in root for c in "?#% \\"):
        raise ConfigError(
            f"provider {spec.name!r}: options.cf_gateway_url {root[:80]!r} is not a plain "
            "http(s) URL",
            hint=f"write the gateway root without a query, e.g. {GATEWAY_URL}",
        )
    # Config values, but they go into the URL the provider's token is sent to.
    account = check_path_segment(spec.account_id, what=f"provider {spec.name!r}: account_id")
    gateway = check_path_segment(spec.cf_gateway, what=f"provider {spec.name!r}: cf_gateway")
    slug = str(slug).strip("/")
    try:
        check_model_name(slug, what="cf_gateway_provider")
    except InvalidRequestError as exc:
        raise ConfigError(f"provider {spec.name!r}: {exc.message}", hint=exc.hint) from None
    return f"{root}/{account}/{gateway}/{slug}"


def gateway_headers(spec: ProviderSpec, env: Mapping[str, str]) -> dict[str, str]:
    """The gateway's own headers: ``cf-aig-authorization`` for an authenticated gateway, and
    the ``cf-aig-*`` settings from ``spec.cf_headers``."""
    headers = cf_aig_headers(spec.cf_headers)
    token_env = spec.cf_gateway_token_env
    if token_env:
        token = (env.get(token_env) or "").strip()
        if not token:
            raise MissingAPIKeyError(
                f"provider {spec.name!r} uses an authenticated AI Gateway whose token should "
                f"be in the environment variable {token_env}, which is unset or empty",
                hint=f"export {token_env}=<AI Gateway token> before starting, or remove "
                "cf_gateway_token_env if the gateway is not authenticated",
            )
        headers["cf-aig-authorization"] = f"Bearer {token}"
    return headers


def cf_aig_headers(values: Mapping[str, Any], *, per_request: bool = False) -> dict[str, str]:
    """``cf-aig-*`` headers from settings keyed by the header's name with or without its
    ``cf-aig-`` prefix (``{"cache-ttl": 3600, "skip-cache": True, "metadata": {...}}``);
    dicts become JSON and booleans ``true``/``false``. Names and values are checked
    (`aigw_lab.addressing.check_cf_aig_header`); ``per_request`` settings (a request's
    ``metadata["cf_aig"]``) may only use `CF_AIG_REQUEST_HEADERS`."""
    headers: dict[str, str] = {}
    for key, value in values.items():
        name = str(key).lower()
        if not name.startswith(_HEADER_PREFIX):
            name = _HEADER_PREFIX + name
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mapping | list):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = str(value)
        check_cf_aig_header(name, text, per_request=per_request)
        headers[name] = text
    return headers


class GatewayCodec:
    """Wraps a provider's codec for calls through an AI Gateway: the format is unchanged,
    and a request's ``metadata["cf_aig"]`` adds or overrides ``cf-aig-*`` headers."""

    __slots__ = ("inner", "api_format", "headers")

    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.api_format = inner.api_format
        self.headers = inner.headers

    def encode(self, request: ChatRequest, *, stream: bool) -> EncodedRequest:
        encoded = self.inner.encode(request, stream=stream)
        overrides = request.metadata.get(METADATA_KEY) if request.metadata else None
        if not overrides:
            return encoded
        if not isinstance(overrides, Mapping):
            raise InvalidRequestError(
                f'metadata["{METADATA_KEY}"] is a {type(overrides).__name__}',
                hint='pass a dict of gateway settings, e.g. {"cache-ttl": 60}',
            )
        headers = {**encoded.headers, **cf_aig_headers(overrides, per_request=True)}
        return EncodedRequest(encoded.path, encoded.body, headers)

    def decode(self, payload: Any, request: ChatRequest) -> Decoded:
        return self.inner.decode(payload, request)

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return self.inner.stream_decoder(request)

    def parse_error(self, status: int, payload: Any) -> ErrorDetail:
        return self.inner.parse_error(status, payload)


# --- the Cloudflare API v4 envelope ---------------------------------------------------------

# Workers AI's internal error codes and the HTTP status each comes with (Cloudflare's
# "Workers AI errors" table), used when an envelope arrives with a 200 or inside a stream.
_CODE_STATUS: Mapping[int, int] = MappingProxyType(
    {
        3003: 400, 3039: 400, 5004: 400, 5007: 400, 5021: 400,
        10000: 401,
        3023: 403, 3041: 403, 5016: 403, 5018: 403,
        3042: 404,
        5005: 405, 5019: 405,
        3007: 408, 3008: 408,
        3006: 413,
        3036: 429, 3040: 429,
    }
)  # fmt: skip


def envelope_error(payload: Any) -> tuple[str | None, int | None]:
    """The first ``(message, code)`` of a v4 envelope's ``errors`` (AI Gateway itself
    answers with ``error``), or ``(None, None)`` if ``payload`` is not such an envelope."""
    if not isinstance(payload, Mapping):
        return None, None
    errors = payload.get("errors")
    if not isinstance(errors, list):
        errors = payload.get("error")
    if not isinstance(errors, list) or not errors:
        return None, None
    first = errors[0]
    if isinstance(first, Mapping):
        code = first.get("code")
        message = first.get("message")
        return (
            str(message) if message is not None else None,
            code if isinstance(code, int) else None,
        )
    return str(first), None


# Workers AI codes that say more than their HTTP status.
_CODE_ERRORS: Mapping[int, type[ProviderError]] = MappingProxyType(
    {
        3036: QuotaExceededError,  # "used up your daily free allocation of 10,000 neurons"
        5021: ContextLengthExceededError,  # "exceeded this model context window limit"
    }
)


def envelope_error_class(code: int | None) -> type[ProviderError] | None:
    """The error a Workers AI code means when its HTTP status alone would mislead."""
    return _CODE_ERRORS.get(code) if code is not None else None


def envelope_status(payload: Any, default: int = 500) -> int:
    """The HTTP status Workers AI uses for an envelope's error code."""
    _, code = envelope_error(payload)
    return _CODE_STATUS.get(code, default) if code is not None else default
