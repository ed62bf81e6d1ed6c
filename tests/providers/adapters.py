"""The adapter matrix of the provider conformance suite.

Every adapter runs against `FakeUpstream`, a real HTTP server on loopback, twice: at its own
API's address and routed through a Cloudflare AI Gateway URL (pointed at the same fake).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import pytest

from aigw_lab.providers.base import HttpClients, ProviderSpec
from aigw_lab.providers.registry import build_provider
from aigw_lab.providers.transport import HttpProvider
from aigw_lab.types import ChatRequest, Usage

from .wire_formats import (
    ANTHROPIC_MESSAGE,
    ANTHROPIC_STREAM,
    OPENAI_COMPLETION,
    OPENAI_STREAM,
    WORKERS_AI_OPENAI_COMPLETION,
    WORKERS_AI_OPENAI_STREAM,
    WORKERS_AI_RESULT,
    WORKERS_AI_STREAM,
)

API_KEY = "sk-test-Zq8Vx3Lp0Rm7Yt2W"
GATEWAY_TOKEN = "cfaig-test-Hn4Jd8Ks1Pq5"
ACCOUNT = "acct123"
GATEWAY = "gw-lab"
ENV = MappingProxyType({"TEST_API_KEY": API_KEY, "CF_AIG_TOKEN": GATEWAY_TOKEN})

WORKERS_MODEL = "@cf/meta/llama-3.1-8b-instruct"


@dataclass(frozen=True)
class Expected:
    """What the fixtures of one wire format decode to."""

    body: dict[str, Any]
    stream: str
    usage: Usage
    response_id: str | None
    stream_response_id: str | None
    model: str | None  # None: the format does not name the model; the request's is used


EXPECTED = {
    "openai": Expected(
        OPENAI_COMPLETION,
        OPENAI_STREAM,
        Usage(input_tokens=1340, output_tokens=12, cache_read_tokens=1024, reasoning_tokens=4),
        "chatcmpl-AqX7uTn2Lw9Ke4",
        "chatcmpl-AqX8sPq3Mz1Rb7",
        "gpt-4o-mini-2024-07-18",
    ),
    "anthropic": Expected(
        ANTHROPIC_MESSAGE,
        ANTHROPIC_STREAM,
        # 40 uncached + 1000 read from the cache + 300 written to it.
        Usage(input_tokens=1340, output_tokens=15, cache_read_tokens=1000, cache_write_tokens=300),
        "msg_01HqT5sVd8yKf3Lr9Pn2Wm4B",
        "msg_01J2kXw7Gz5Vb8Nc3Qr6Tp1D",
        "claude-3-5-haiku-20241022",
    ),
    "workers-ai": Expected(
        WORKERS_AI_RESULT,
        WORKERS_AI_STREAM,
        Usage(input_tokens=31, output_tokens=14),
        None,
        None,
        None,
    ),
    "workers-ai-openai": Expected(
        WORKERS_AI_OPENAI_COMPLETION,
        WORKERS_AI_OPENAI_STREAM,
        Usage(input_tokens=31, output_tokens=14),
        "id-1736942400123",
        "id-1736942460456",
        WORKERS_MODEL,
    ),
}


@dataclass(frozen=True)
class Adapter:
    """One row of the matrix: a provider kind, direct or through an AI Gateway."""

    id: str
    kind: str
    model: str
    path: str  # where the fake must receive the call
    gateway: bool = False

    @property
    def wire(self) -> str:
        """Which payload fixtures this adapter answers with (and its error body shape): its
        kind's, except that an OpenAI-compatible server answers like OpenAI."""
        return "openai" if self.kind == "openai-compatible" else self.kind

    @property
    def expected(self) -> Expected:
        return EXPECTED[self.wire]

    @property
    def auth_header(self) -> tuple[str, str]:
        if self.kind == "anthropic":
            return "x-api-key", API_KEY
        return "authorization", f"Bearer {API_KEY}"

    def spec(self, url: str, **changes: Any) -> ProviderSpec:
        base = {
            "openai": f"{url}/v1",
            "anthropic": url,
            "workers-ai": f"{url}/client/v4",
            "workers-ai-openai": f"{url}/client/v4",
            "openai-compatible": f"{url}/v1",
        }[self.kind]
        spec = ProviderSpec(
            name=f"{self.id}-provider",
            kind=self.kind,
            base_url=None if self.gateway else base,
            api_key_env="TEST_API_KEY",
            account_id=ACCOUNT if self.kind.startswith("workers-ai") or self.gateway else None,
            timeout=5.0,
            connect_timeout=2.0,
        )
        if self.gateway:
            spec = replace(
                spec,
                cf_gateway=GATEWAY,
                cf_gateway_token_env="CF_AIG_TOKEN",
                cf_headers=MappingProxyType({"cache-ttl": "3600"}),
                options=MappingProxyType({"cf_gateway_url": f"{url}/v1"}),
            )
        return replace(spec, **changes)

    def request(self, **params: Any) -> ChatRequest:
        return ChatRequest.create(
            self.model,
            [{"role": "user", "content": "What is the capital of France?"}],
            system="Answer in one sentence.",
            **params,
        )


_GW = f"/v1/{ACCOUNT}/{GATEWAY}"

ADAPTERS: tuple[Adapter, ...] = (
    Adapter("openai", "openai", "gpt-4o-mini", "/v1/chat/completions"),
    Adapter("anthropic", "anthropic", "claude-3-5-haiku-latest", "/v1/messages"),
    Adapter(
        "workers-ai",
        "workers-ai",
        WORKERS_MODEL,
        f"/client/v4/accounts/{ACCOUNT}/ai/run/{WORKERS_MODEL}",
    ),
    Adapter(
        "workers-ai-openai",
        "workers-ai-openai",
        WORKERS_MODEL,
        f"/client/v4/accounts/{ACCOUNT}/ai/v1/chat/completions",
    ),
    Adapter(
        "openai-compatible", "openai-compatible", "llama-3.1-8b-instant", "/v1/chat/completions"
    ),  # fmt: skip
    Adapter("cf-gw-openai", "openai", "gpt-4o-mini", f"{_GW}/openai/chat/completions", True),
    Adapter(
        "cf-gw-anthropic",
        "anthropic",
        "claude-3-5-haiku-latest",
        f"{_GW}/anthropic/v1/messages",
        True,
    ),  # fmt: skip
    Adapter(
        "cf-gw-workers-ai", "workers-ai", WORKERS_MODEL, f"{_GW}/workers-ai/{WORKERS_MODEL}", True
    ),  # fmt: skip
    Adapter(
        "cf-gw-workers-ai-openai",
        "workers-ai-openai",
        WORKERS_MODEL,
        f"{_GW}/workers-ai/v1/chat/completions",
        True,
    ),  # fmt: skip
    Adapter(
        "cf-gw-compat",
        "openai-compatible",
        "groq/llama-3.1-8b-instant",
        f"{_GW}/compat/chat/completions",
        True,
    ),  # fmt: skip
)


def adapters(*, wire: str | None = None, gateway: bool | None = None) -> list[Any]:
    """The matrix as pytest params, optionally narrowed to one wire format or routing."""
    return [
        pytest.param(a, id=a.id)
        for a in ADAPTERS
        if (wire is None or a.wire == wire) and (gateway is None or a.gateway == gateway)
    ]


def make_provider(adapter: Adapter, url: str, clients: HttpClients, **changes: Any) -> HttpProvider:
    provider = build_provider(adapter.spec(url, **changes), clients, env=ENV)
    assert isinstance(provider, HttpProvider)
    return provider
