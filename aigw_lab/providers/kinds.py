"""Provider kinds as objects: everything aigw_lab knows about one kind of provider in one place.

A `ProviderKind` holds a kind's facts (its wire format, default base URL, how it
authenticates and from which environment variable, its genai-prices provider id, its path
segment behind a Cloudflare AI Gateway, the config keys it accepts) and knows how to build a
`Provider` from a `ProviderSpec`. `config.py` asks the kind which keys a provider table may
hold, `build_provider` asks it to build, the gateway asks it for price ids and whether it runs
in-process. `HttpKind` is a kind served by `HttpProvider` (a codec over the shared transport);
the five HTTP kinds shipped are defined here, the in-process ones (``simulated``, ``replay``)
in `aigw_lab.sim.kinds`, and third-party ones come from packages through the
``aigw_lab.provider_kinds`` entry-point group (`aigw_lab.providers.registry`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.addressing import EXTRA_FIELDS, check_path_segment
from aigw_lab.config_schema import Key
from aigw_lab.errors import ConfigError, MissingAPIKeyError
from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec

if TYPE_CHECKING:
    from aigw_lab.providers.codec import Codec

# The codecs, the transport and the AI Gateway helpers are imported when a provider is built,
# not here: config.py imports this module to check tables, and a config naming only the
# simulated fleet never needs them.

__all__ = [
    "ConfigKey",
    "ProviderKind",
    "HttpKind",
    "OPENAI",
    "ANTHROPIC",
    "WORKERS_AI",
    "WORKERS_AI_OPENAI",
    "OPENAI_COMPATIBLE",
    "HTTP_KINDS",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

#: What builds a provider: ``factory(spec, clients, env)``.
Factory = Callable[[ProviderSpec, HttpClients, Mapping[str, str]], Provider]


#: A key a kind accepts at the top of its ``[providers.NAME]`` table (kept in
#: ``ProviderSpec.options``): a config schema `Key` (``name``, ``types``, ``what``: the words
#: naming its type in an error, ``"an integer"``), checked by the one config validator.
ConfigKey = Key


@dataclass(frozen=True, kw_only=True)
class ProviderKind:
    """One kind of provider (``kind = "..."`` in a config) and what aigw_lab knows about it.

    - ``name``: what a config writes; ``summary``: one line for docs and listings.
    - ``api_format``: the wire format its providers speak (None: decided per provider).
    - ``default_base_url``, ``api_key_env``: used when a spec names none (``api_key_env``
      None: no key needed); ``auth_header`` and ``auth_scheme``: how the key is sent
      (``authorization: Bearer KEY``, or ``x-api-key: KEY`` with no scheme).
    - ``price_provider_id``: its genai-prices provider id (None: guess from the model).
    - ``gateway_slug``: its path segment behind a Cloudflare AI Gateway (None: cannot be
      routed through one).
    - ``config_keys``: keys of its own a provider table may hold (`ConfigKey`);
      ``misplaced_hint``: the fix shown when they appear under another kind.
    - ``local``: runs in-process and needs no key, so the gateway may build it early (to
      list its models or price a call before the first one); ``simulated``: its answers are
      simulated.
    - ``factory(spec, clients, env)``: builds the provider; subclasses may override `build`
      instead.

    A third-party kind is one instance of this class (or a subclass) exported through the
    ``aigw_lab.provider_kinds`` entry-point group (see docs/providers.md).
    """

    name: str
    summary: str = ""
    api_format: str | None = None
    default_base_url: str | None = None
    api_key_env: str | None = None
    auth_header: str = "authorization"
    auth_scheme: str | None = "Bearer"
    price_provider_id: str | None = None
    gateway_slug: str | None = None
    config_keys: tuple[ConfigKey, ...] = ()
    misplaced_hint: str | None = None
    local: bool = False
    simulated: bool = False
    factory: Factory | None = None

    def build(
        self, spec: ProviderSpec, clients: HttpClients, env: Mapping[str, str] | None = None
    ) -> Provider:
        """The provider ``spec`` describes, sharing ``clients``' pools; keys from ``env``
        (default ``os.environ``)."""
        if self.factory is None:
            raise ConfigError(
                f"provider {spec.name!r}: kind {self.name!r} cannot build providers",
                hint="the package defining this kind must give it a factory",
            )
        return self.factory(spec, clients, os.environ if env is None else env)

    def known_models(self, spec: ProviderSpec) -> tuple[str, ...] | None:
        """The models a provider of this kind serves, known from its spec alone, or None when
        it takes any model name (or learns its models later)."""
        return spec.models or None

    def default_options(self) -> Mapping[str, Any]:
        """Options a spec of this kind gets when its table does not set them."""
        return _EMPTY

    def preset_specs(self, **settings: Any) -> list[ProviderSpec]:
        """Ready-made specs of this kind (the simulated kind: the whole fleet), built from
        ``settings``; a kind without presets has none to give."""
        raise ConfigError(
            f"kind {self.name!r} has no preset providers",
            hint="configure its providers with ProviderSpec or a [providers.NAME] table",
        )

    def key_names(self) -> tuple[str, ...]:
        """The names of `config_keys`."""
        return tuple(key.name for key in self.config_keys)

    def misplaced_fix(self) -> str:
        """The fix shown when this kind's keys appear in another kind's table."""
        return self.misplaced_hint or f'remove them, or set kind = "{self.name}"'


@dataclass(frozen=True, kw_only=True)
class HttpKind(ProviderKind):
    """A kind served by `HttpProvider`: ``codec(spec)`` builds its codec; the base URL is the
    spec's, else ``default_base_url``; ``account_path`` (Workers AI: ``"/ai"``) puts the
    Cloudflare account in it; or, with ``cf_gateway``, an AI Gateway URL ending in
    ``gateway_slug``."""

    codec: Callable[[ProviderSpec], Codec]
    account_path: str | None = None

    def build(
        self, spec: ProviderSpec, clients: HttpClients, env: Mapping[str, str] | None = None
    ) -> Provider:
        """An `HttpProvider` for ``spec``. A missing API key is a `MissingAPIKeyError` now,
        not a 401 at the first call; a provider routed through an AI Gateway
        (``spec.cf_gateway``) may leave its key unset when the gateway supplies it (BYOK,
        unified billing)."""
        # lazy: the codecs, the transport (httpx) and the AI Gateway helpers load only when a
        # provider is built (see the note at the top of the module)
        from aigw_lab.providers.cloudflare import GatewayCodec, gateway_base_url, gateway_headers
        from aigw_lab.providers.transport import HttpProvider

        env = os.environ if env is None else env
        codec = self.codec(spec)
        headers: dict[str, str] = {}
        api_key = self._api_key(spec, env)
        if api_key:
            scheme = f"{self.auth_scheme} " if self.auth_scheme else ""
            headers[self.auth_header] = scheme + api_key
        if spec.cf_gateway:
            base_url = gateway_base_url(spec, self.gateway_slug)
            headers.update(gateway_headers(spec, env))
            codec = GatewayCodec(codec)
        else:
            base_url = self._direct_base_url(spec)
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

    def _direct_base_url(self, spec: ProviderSpec) -> str:
        base = spec.base_url or self.default_base_url
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
        if self.account_path is None:
            return base
        if not spec.account_id:
            raise ConfigError(
                f"provider {spec.name!r} (kind {spec.kind!r}) has no Cloudflare account id",
                hint="set account_id, or account_id_env naming a variable that holds it "
                "(find it in the Cloudflare dashboard under Workers AI)",
            )
        account = check_path_segment(spec.account_id, what=f"provider {spec.name!r}: account_id")
        return f"{base}/accounts/{account}{self.account_path}"

    def _api_key(self, spec: ProviderSpec, env: Mapping[str, Any]) -> str | None:
        variable = spec.api_key_env or self.api_key_env
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


# --- the codecs of the HTTP kinds -----------------------------------------------------------


def _openai_codec(spec: ProviderSpec, *, max_tokens_field: str, extra: str) -> Codec:
    # OpenAI's own API has moved the output limit to max_completion_tokens; compatible
    # servers (and Workers AI) read max_tokens.
    # lazy: codecs load only when a provider is built (see the note at the top of the module)
    from aigw_lab.providers.openai import OpenAICodec

    options = spec.options
    return OpenAICodec(
        max_tokens_field=str(options.get("max_tokens_field", max_tokens_field)),
        stream_usage=bool(options.get("stream_usage", True)),
        extra_fields=EXTRA_FIELDS[extra],
    )


def _anthropic_codec(spec: ProviderSpec) -> Codec:
    # lazy: codecs load only when a provider is built (see the note at the top of the module)
    from aigw_lab.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicCodec

    default_max_tokens = spec.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)
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


def _workers_ai_codec(spec: ProviderSpec) -> Codec:
    # lazy: codecs load only when a provider is built (see the note at the top of the module)
    from aigw_lab.providers.workers_ai import WorkersAICodec

    # Through a gateway the model follows the provider slug: .../workers-ai/{model}.
    return WorkersAICodec(path_prefix="" if spec.cf_gateway else "/run")


#: The Cloudflare API root (`aigw_lab.providers.workers_ai.API_URL`); Workers AI kinds add
#: the account's path to it.
CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"

OPENAI = HttpKind(
    name="openai",
    summary="OpenAI Chat Completions",
    api_format="openai",
    default_base_url="https://api.openai.com/v1",
    api_key_env="OPENAI_API_KEY",
    price_provider_id="openai",
    gateway_slug="openai",
    codec=partial(_openai_codec, max_tokens_field="max_completion_tokens", extra="openai"),
)
ANTHROPIC = HttpKind(
    name="anthropic",
    summary="Anthropic Messages",
    api_format="anthropic",
    default_base_url="https://api.anthropic.com",
    api_key_env="ANTHROPIC_API_KEY",
    auth_header="x-api-key",
    auth_scheme=None,
    price_provider_id="anthropic",
    gateway_slug="anthropic",
    codec=_anthropic_codec,
)
WORKERS_AI = HttpKind(
    name="workers-ai",
    summary="Cloudflare Workers AI, native /ai/run/{model}",
    api_format="workers-ai",
    default_base_url=CLOUDFLARE_API_URL,
    api_key_env="CLOUDFLARE_API_TOKEN",
    # Workers AI models are priced under "cloudflare" with their @cf/ names.
    price_provider_id="cloudflare",
    gateway_slug="workers-ai",
    codec=_workers_ai_codec,
    account_path="/ai",
)
WORKERS_AI_OPENAI = HttpKind(
    name="workers-ai-openai",
    summary="Cloudflare Workers AI, OpenAI-compatible endpoint",
    api_format="openai",
    default_base_url=CLOUDFLARE_API_URL,
    api_key_env="CLOUDFLARE_API_TOKEN",
    price_provider_id="cloudflare",
    gateway_slug="workers-ai/v1",
    codec=partial(_openai_codec, max_tokens_field="max_tokens", extra="openai-compatible"),
    account_path="/ai/v1",
)
OPENAI_COMPATIBLE = HttpKind(
    name="openai-compatible",
    summary="any server speaking Chat Completions (vLLM, Ollama, Groq, OpenRouter, ...)",
    api_format="openai",
    gateway_slug="compat",
    codec=partial(_openai_codec, max_tokens_field="max_tokens", extra="openai-compatible"),
)

#: The HTTP kinds shipped with aigw_lab, in the order they are listed.
HTTP_KINDS: tuple[HttpKind, ...] = (
    OPENAI,
    ANTHROPIC,
    WORKERS_AI,
    WORKERS_AI_OPENAI,
    OPENAI_COMPATIBLE,
)
