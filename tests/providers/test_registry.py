"""`build_provider`: kinds, base URLs, keys from the environment, AI Gateway routing."""

from __future__ import annotations

import json
import sys
import types
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from aigw_lab.errors import ConfigError, InvalidRequestError, MissingAPIKeyError
from aigw_lab.providers.anthropic import AnthropicCodec
from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec
from aigw_lab.providers.cloudflare import GatewayCodec
from aigw_lab.providers.openai import OpenAICodec
from aigw_lab.providers.registry import build_provider
from aigw_lab.providers.transport import HttpProvider, get_codec
from aigw_lab.providers.workers_ai import WorkersAICodec
from aigw_lab.types import ChatRequest

ENV = {"KEY": "k-123", "CF_TOKEN": "cf-456"}


class Recorder:
    """An in-memory transport: records each request and answers 400, so nothing leaves the
    process and the provider's outgoing request can be inspected as sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(400, json={"error": {"message": "recorded"}})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clients(recorder: Recorder):
    shared = HttpClients(transport=httpx.MockTransport(recorder))
    yield shared
    shared.close()


def sent(provider: HttpProvider, recorder: Recorder, model: str = "m") -> httpx.Request:
    """The HTTP request ``provider`` sends for a one-line chat."""
    with pytest.raises(InvalidRequestError, match="recorded"):
        provider.chat(ChatRequest.create(model, "hi"))
    return recorder.requests[-1]


def build(clients: HttpClients, env: dict[str, str] = ENV, **fields: Any) -> HttpProvider:
    spec = ProviderSpec(**{"name": "p", "api_key_env": "KEY", **fields})
    provider = build_provider(spec, clients, env=env)
    assert isinstance(provider, HttpProvider) and isinstance(provider, Provider)
    return provider


@pytest.mark.parametrize(
    ("fields", "url", "codec", "auth"),
    [
        ({"kind": "openai"}, "https://api.openai.com/v1/chat/completions", OpenAICodec,
         ("authorization", "Bearer k-123")),
        ({"kind": "anthropic"}, "https://api.anthropic.com/v1/messages", AnthropicCodec,
         ("x-api-key", "k-123")),
        ({"kind": "workers-ai", "account_id": "a1"},
         "https://api.cloudflare.com/client/v4/accounts/a1/ai/run/m", WorkersAICodec,
         ("authorization", "Bearer k-123")),
        ({"kind": "workers-ai-openai", "account_id": "a1"},
         "https://api.cloudflare.com/client/v4/accounts/a1/ai/v1/chat/completions",
         OpenAICodec, ("authorization", "Bearer k-123")),
        ({"kind": "openai-compatible", "base_url": "http://localhost:11434/v1/"},
         "http://localhost:11434/v1/chat/completions", OpenAICodec,
         ("authorization", "Bearer k-123")),
        ({"kind": "openai", "cf_gateway": "gw", "account_id": "a1"},
         "https://gateway.ai.cloudflare.com/v1/a1/gw/openai/chat/completions", GatewayCodec,
         ("authorization", "Bearer k-123")),
        ({"kind": "workers-ai", "cf_gateway": "gw", "account_id": "a1"},
         "https://gateway.ai.cloudflare.com/v1/a1/gw/workers-ai/m", GatewayCodec,
         ("authorization", "Bearer k-123")),
        ({"kind": "openai-compatible", "cf_gateway": "gw", "account_id": "a1",
          "options": MappingProxyType({"cf_gateway_provider": "mistral/v1"})},
         "https://gateway.ai.cloudflare.com/v1/a1/gw/mistral/v1/chat/completions",
         GatewayCodec, ("authorization", "Bearer k-123")),
    ],
    ids=lambda v: v["kind"] + ("-gateway" if "cf_gateway" in v else "")
    if isinstance(v, dict) else None,
)  # fmt: skip
def test_each_kind_gets_its_codec_url_and_auth(
    clients: HttpClients,
    recorder: Recorder,
    fields: dict[str, Any],
    url: str,
    codec: type,
    auth: tuple,
) -> None:
    provider = build(clients, **fields)
    request = sent(provider, recorder)
    assert str(request.url) == url
    assert request.headers[auth[0]] == auth[1]
    assert isinstance(provider.codec, codec)
    assert provider.simulated is False


def test_openai_asks_for_max_completion_tokens_and_compatible_servers_max_tokens(
    clients: HttpClients,
) -> None:
    own = build(clients, kind="openai").codec
    compatible = build(clients, kind="openai-compatible", base_url="http://h/v1").codec
    assert own.max_tokens_field == "max_completion_tokens"
    assert compatible.max_tokens_field == "max_tokens"


def test_missing_api_key_names_the_variable_and_how_to_set_it(clients: HttpClients) -> None:
    with pytest.raises(MissingAPIKeyError) as caught:
        build(clients, env={}, kind="anthropic", api_key_env="MY_ANTHROPIC_KEY")
    assert "MY_ANTHROPIC_KEY" in str(caught.value)
    assert "export MY_ANTHROPIC_KEY=" in str(caught.value)


def test_blank_api_key_counts_as_missing(clients: HttpClients) -> None:
    with pytest.raises(MissingAPIKeyError):
        build(clients, env={"KEY": "   "}, kind="openai")


def test_default_key_variable_when_the_spec_names_none(
    clients: HttpClients, recorder: Recorder
) -> None:
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        build(clients, env={}, kind="openai", api_key_env=None)
    provider = build(clients, env={"OPENAI_API_KEY": "sk-x"}, kind="openai", api_key_env=None)
    assert sent(provider, recorder).headers["authorization"] == "Bearer sk-x"


def test_openai_compatible_server_needs_no_key_unless_it_names_one(
    clients: HttpClients, recorder: Recorder
) -> None:
    keyless = build(clients, env={}, kind="openai-compatible", base_url="http://h/v1",
                    api_key_env=None)  # fmt: skip
    assert "authorization" not in sent(keyless, recorder).headers
    with pytest.raises(MissingAPIKeyError, match="GROQ_API_KEY"):
        build(clients, env={}, kind="openai-compatible", base_url="http://h/v1",
              api_key_env="GROQ_API_KEY")  # fmt: skip


def test_gateway_may_supply_the_provider_key(clients: HttpClients, recorder: Recorder) -> None:
    provider = build(clients, env={}, kind="openai", api_key_env=None, cf_gateway="gw",
                     account_id="a1")  # fmt: skip
    assert "authorization" not in sent(provider, recorder).headers


def test_gateway_token_and_headers(clients: HttpClients, recorder: Recorder) -> None:
    provider = build(
        clients,
        kind="anthropic",
        cf_gateway="gw",
        account_id="a1",
        cf_gateway_token_env="CF_TOKEN",
        cf_headers=MappingProxyType({"cache-ttl": "600", "cf-aig-skip-cache": "false"}),
    )
    headers = sent(provider, recorder).headers
    assert headers["cf-aig-authorization"] == "Bearer cf-456"
    assert headers["cf-aig-cache-ttl"] == "600"
    assert headers["cf-aig-skip-cache"] == "false"
    assert headers["x-api-key"] == "k-123"
    assert headers["anthropic-version"] == "2023-06-01"


def test_missing_gateway_token_names_its_variable(clients: HttpClients) -> None:
    with pytest.raises(MissingAPIKeyError, match="AIG_TOKEN"):
        build(clients, kind="openai", cf_gateway="gw", account_id="a1",
              cf_gateway_token_env="AIG_TOKEN")  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "workers-ai"},
        {"kind": "workers-ai-openai"},
        {"kind": "openai", "cf_gateway": "gw"},
    ],
    ids=["workers-ai", "workers-ai-openai", "gateway"],
)
def test_missing_account_id_is_a_config_error(clients: HttpClients, fields: dict) -> None:
    with pytest.raises(ConfigError, match="account id") as caught:
        build(clients, **fields)
    assert "account_id_env" in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "telepathy"}, "not a provider kind"),
        ({"kind": "openai-compatible"}, "no base_url"),
        ({"kind": "openai", "base_url": "api.openai.com/v1"}, "not an http"),
        ({"kind": "anthropic", "options": MappingProxyType({"default_max_tokens": 0})},
         "default_max_tokens"),
    ],
    ids=["unknown-kind", "no-base-url", "no-scheme", "bad-default-max-tokens"],
)  # fmt: skip
def test_bad_specs_are_config_errors(clients: HttpClients, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(clients, **fields)


def test_spec_settings_reach_the_provider(clients: HttpClients, recorder: Recorder) -> None:
    provider = build(
        clients,
        kind="anthropic",
        timeout=12.5,
        connect_timeout=1.5,
        headers=MappingProxyType({"anthropic-beta": "prompt-caching-2024-07-31"}),
        options=MappingProxyType({"default_max_tokens": 4096}),
    )
    request = sent(provider, recorder)
    # pool: the pool's own wait cap (issue 9), no longer the read timeout
    assert request.extensions["timeout"] == {"connect": 1.5, "read": 12.5, "write": 12.5,
                                             "pool": 5.0}  # fmt: skip
    assert request.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert json.loads(request.content)["max_tokens"] == 4096


def test_simulated_kind_is_delegated_lazily(
    clients: HttpClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[ProviderSpec, HttpClients]] = []
    marker = object()

    def build_simulated_provider(spec: ProviderSpec, shared: HttpClients) -> object:
        calls.append((spec, shared))
        return marker

    module = types.ModuleType("aigw_lab.sim.fleet")
    module.build_simulated_provider = build_simulated_provider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aigw_lab.sim.fleet", module)
    spec = ProviderSpec(name="sim", kind="simulated")

    assert build_provider(spec, clients, env={}) is marker
    assert calls == [(spec, clients)]


@pytest.mark.parametrize(
    ("api_format", "codec"),
    [("openai", OpenAICodec), ("workers-ai-openai", OpenAICodec),
     ("openai-compatible", OpenAICodec), ("anthropic", AnthropicCodec),
     ("workers-ai", WorkersAICodec)],
)  # fmt: skip
def test_get_codec(api_format: str, codec: type) -> None:
    assert isinstance(get_codec(api_format), codec)
    assert get_codec(api_format).api_format in ("openai", "anthropic", "workers-ai")


def test_get_codec_rejects_unknown_formats() -> None:
    with pytest.raises(ConfigError, match="gemini"):
        get_codec("gemini")
