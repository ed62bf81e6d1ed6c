"""What every provider is: the `Provider` protocol, the `ProviderSpec` that configures one,
and the shared HTTP clients (one connection pool per gateway).

A provider receives a `ChatRequest` whose ``model`` is the provider's own model name (the
gateway strips the ``provider/`` prefix) and returns a `ChatResponse`, or raises an error
from `aigw_lab.errors`. Nothing else crosses this boundary: no httpx or SDK exception, no
provider-specific dict.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import httpx

from aigw_lab.types import ChatRequest, ChatResponse, StreamEvent

__all__ = ["Provider", "ProviderSpec", "HttpClients", "PROVIDER_KINDS", "Price"]

#: Provider kinds a `ProviderSpec` may name.
#: ``openai``: OpenAI Chat Completions; ``anthropic``: Anthropic Messages; ``workers-ai``:
#: Cloudflare Workers AI native ``/ai/run/{model}``; ``workers-ai-openai``: Workers AI's
#: OpenAI-compatible endpoint; ``openai-compatible``: any server speaking Chat Completions
#: (vLLM, Ollama, Groq, Together, OpenRouter, Mistral, ...); ``simulated``: the offline fleet.
PROVIDER_KINDS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "workers-ai",
    "workers-ai-openai",
    "openai-compatible",
    "simulated",
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in USD per million tokens (cache prices default to the input price)."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How to reach one provider: its API format (``kind``) kept apart from where it lives
    (``base_url``) and how to authenticate (``api_key_env``).

    ``cf_gateway`` routes the calls through a Cloudflare AI Gateway named so (the account is
    ``account_id``): the provider's own format is sent to
    ``https://gateway.ai.cloudflare.com/v1/{account_id}/{cf_gateway}/{provider}``.
    ``cf_gateway_token_env`` names the variable with the gateway's own token (authenticated
    gateways); ``cf_headers`` adds ``cf-aig-*`` headers (cache TTL, skip cache, metadata).
    ``options`` holds kind-specific settings (the simulated fleet's seed, faults, format).
    """

    name: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    account_id: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 10.0
    headers: Mapping[str, str] = _EMPTY
    cf_gateway: str | None = None
    cf_gateway_token_env: str | None = None
    cf_headers: Mapping[str, str] = _EMPTY
    models: tuple[str, ...] = ()
    prices: Mapping[str, Price] = _EMPTY
    options: Mapping[str, Any] = _EMPTY
    price_provider_id: str | None = None


@runtime_checkable
class Provider(Protocol):
    """Anything that answers chat requests: an HTTP adapter, the simulated fleet, a replay
    of a log, a test double, or a `Gateway` itself."""

    name: str
    simulated: bool

    def chat(self, request: ChatRequest) -> ChatResponse: ...

    async def achat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Yield `TextDelta` events, then exactly one `StreamEnd` with the full response."""
        ...

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    def close(self) -> None:
        """Close the sync client this object created (async ones need `aclose`)."""
        for c in [c for c in self._owned if isinstance(c, httpx.Client)]:
            c.close()
            self._owned.remove(c)

    async def aclose(self) -> None:
        """Close every client this object created."""
        for c in [c for c in self._owned if isinstance(c, httpx.AsyncClient)]:
            await c.aclose()
            self._owned.remove(c)
        self.close()
