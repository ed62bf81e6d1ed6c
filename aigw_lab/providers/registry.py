"""Build a `Provider` from its `ProviderSpec`: pick the codec for its kind, work out where it
lives (its own API, a custom base URL, or a Cloudflare AI Gateway) and how it
authenticates, and put them together in an `HttpProvider`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aigw_lab.addressing import EXTRA_FIELDS, check_path_segment
from aigw_lab.errors import ConfigError, MissingAPIKeyError
from aigw_lab.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicCodec
from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec
from aigw_lab.providers.cloudflare import GatewayCodec, gateway_base_url, gateway_headers
from aigw_lab.providers.openai import OpenAICodec
from aigw_lab.providers.transport import Codec, HttpProvider
from aigw_lab.providers.workers_ai import API_URL, WorkersAICodec

__all__ = ["build_provider", "HTTP_KINDS", "DEFAULT_BASE_URLS", "DEFAULT_API_KEY_ENVS"]

#: Provider kinds served by `HttpProvider`.
HTTP_KINDS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "workers-ai",
    "workers-ai-openai",
    "openai-compatible",
)

DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        # Workers AI: the Cloudflare API root; the account's path is added to it.
        "workers-ai": API_URL,
        "workers-ai-openai": API_URL,
    }
)

#: The variable read when a spec names none (an OpenAI-compatible server needs no key).
DEFAULT_API_KEY_ENVS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY",
        "workers-ai": "CLOUDFLARE_API_TOKEN",
        "workers-ai-openai": "CLOUDFLARE_API_TOKEN",
    }
)


def build_provider(
    spec: ProviderSpec, clients: HttpClients, *, env: Mapping[str, str] | None = None
) -> Provider:
    """The provider ``spec`` describes, sharing ``clients``' connection pools.

    API keys are read from ``env`` (default: ``os.environ``) under ``spec.api_key_env``;
    a missing key is a `MissingAPIKeyError` now, not a 401 at the first call. A provider
    routed through an AI Gateway (``spec.cf_gateway``) may leave its key unset when the
    gateway supplies it (BYOK, unified billing).
    """
    if spec.kind == "simulated":
        from aigw_lab.sim.fleet import build_simulated_provider

        return build_simulated_provider(spec, clients)
    if spec.kind == "replay":
        from aigw_lab.sim.replay import build_replay_provider

        return build_replay_provider(spec)
    if spec.kind not in HTTP_KINDS:
        raise ConfigError(
            f"provider {spec.name!r}: kind {spec.kind!r} is not a provider kind",
            hint=f"use one of {[*HTTP_KINDS, 'simulated', 'replay']}",
        )
    env = os.environ if env is None else env
    codec = _codec(spec)
    headers: dict[str, str] = {}
    api_key = _api_key(spec, env)
    if api_key:
        if spec.kind == "anthropic":
            headers["x-api-key"] = api_key
        else:
            headers["authorization"] = f"Bearer {api_key}"
    if spec.cf_gateway:
        base_url = gateway_base_url(spec)
        headers.update(gateway_headers(spec, env))
        codec = GatewayCodec(codec)
    else:
        base_url = _direct_base_url(spec)
    headers.update(spec.headers)  # explicit headers from the config win
    return HttpProvider(
        spec.name,
        codec,
        base_url,
        clients=clients,
        headers=MappingProxyType(headers),
        timeout=spec.timeout,
        connect_timeout=spec.connect_timeout,
    )


def _codec(spec: ProviderSpec) -> Codec:
    options = spec.options
    if spec.kind == "anthropic":
        default_max_tokens = options.get("default_max_tokens", DEFAULT_MAX_TOKENS)
        if (
            isinstance(default_max_tokens, bool)
            or not isinstance(default_max_tokens, int)
            or (default_max_tokens < 1)
        ):
            raise ConfigError(
                f"provider {spec.name!r}: options.default_max_tokens = {default_max_tokens!r}",
                hint="use a positive integer (the Messages API requires max_tokens)",
            )
        return AnthropicCodec(default_max_tokens=default_max_tokens)
    if spec.kind == "workers-ai":
        # Through a gateway the model follows the provider slug: .../workers-ai/{model}.
        return WorkersAICodec(path_prefix="" if spec.cf_gateway else "/run")
    # OpenAI's own API has moved the output limit to max_completion_tokens; compatible
    # servers (and Workers AI) read max_tokens.
    default_field = "max_completion_tokens" if spec.kind == "openai" else "max_tokens"
    return OpenAICodec(
        max_tokens_field=str(options.get("max_tokens_field", default_field)),
        stream_usage=bool(options.get("stream_usage", True)),
        extra_fields=EXTRA_FIELDS["openai" if spec.kind == "openai" else "openai-compatible"],
    )


def _direct_base_url(spec: ProviderSpec) -> str:
    base = spec.base_url or DEFAULT_BASE_URLS.get(spec.kind)
    if not base:
        raise ConfigError(
            f"provider {spec.name!r} (kind {spec.kind!r}) has no base_url",
            hint='set base_url to the server\'s API root, e.g. "http://localhost:11434/v1" '
            'for Ollama or "http://localhost:8000/v1" for vLLM',
        )
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"provider {spec.name!r}: base_url {base!r} is not an http(s) URL",
            hint="write the full URL, e.g. https://api.example.com/v1",
        )
    base = base.rstrip("/")
    if spec.kind in ("workers-ai", "workers-ai-openai"):
        if not spec.account_id:
            raise ConfigError(
                f"provider {spec.name!r} (kind {spec.kind!r}) has no Cloudflare account id",
                hint="set account_id, or account_id_env naming a variable that holds it "
                "(find it in the Cloudflare dashboard under Workers AI)",
            )
        suffix = "/ai" if spec.kind == "workers-ai" else "/ai/v1"
        account = check_path_segment(spec.account_id, what=f"provider {spec.name!r}: account_id")
        return f"{base}/accounts/{account}{suffix}"
    return base


def _api_key(spec: ProviderSpec, env: Mapping[str, Any]) -> str | None:
    variable = spec.api_key_env or DEFAULT_API_KEY_ENVS.get(spec.kind)
    if variable is None:
        return None  # an OpenAI-compatible server without authentication
    key = str(env.get(variable) or "").strip()
    if key:
        return key
    if spec.cf_gateway and spec.api_key_env is None:
        return None  # the gateway may hold the key (BYOK) or bill for it
    raise MissingAPIKeyError(
        f"provider {spec.name!r} reads its API key from the environment variable "
        f"{variable}, which is unset or empty",
        hint=f"export {variable}=<your key> in the shell (or the notebook's environment) "
        "before starting; the config names the variable and never holds the key",
    )
