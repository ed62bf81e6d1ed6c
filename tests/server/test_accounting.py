"""Issue 9 §2: what a client sends cannot change what is charged or counted.

A real `aigw-lab serve` app (`BackgroundServer`) in front of a loopback `FakeUpstream` that
plays an OpenAI-compatible server, called with the official SDKs; the call log is a real
DuckDB file and the budget a real `Budget` middleware.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest

from aigw_lab.config import load_config
from aigw_lab.errors import ConfigError
from aigw_lab.gateway import Budget, Limit, RateLimiter
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, Price, ProviderSpec
from aigw_lab.server import BackgroundServer, GatewayApp, KeyRing
from aigw_lab.server.auth import ClientIdentity
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.types import UNKNOWN_USAGE, ChatResponse
from tests._sdks import anthropic, openai

KEY = "sk-gw-accounting-0123456789"
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
#: 1 USD per million tokens in and out: a call's cost is its token count in micro-dollars.
PRICE = Price(1.0, 1.0)
MODEL = "up/m"


def _completion(usage: bool = True, output_tokens: int = 3) -> dict:
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                     "finish_reason": "stop"}],
    }  # fmt: skip
    if usage:
        body["usage"] = {"prompt_tokens": 20, "completion_tokens": output_tokens,
                         "total_tokens": 20 + output_tokens}  # fmt: skip
    return body


def _sse(usage: bool) -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Par"}}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "is."}, "finish_reason": "stop"}]},
    ]
    if usage:
        chunks.append(
            {**head, "choices": [],
             "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}}
        )  # fmt: skip
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return text.encode()


@dataclass
class Setup:
    fake: FakeUpstream
    gateway: Gateway
    budget: Budget
    server: BackgroundServer

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=KEY, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.server.url, api_key=KEY, max_retries=0)

    def rows(self, sql: str) -> list[tuple]:
        log = self.gateway.log
        assert log is not None
        return [tuple(r) for r in log.query(sql).itertuples(index=False)]

    def spent(self, scope: str = "tenant") -> float:
        return sum(r["spent_usd"] for r in self.budget.snapshot() if r["scope"] == scope)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Callable[..., Setup]]:
    started: list[Setup] = []
    clients = HttpClients()

    def start(limits: list[Limit] | None = None, *, trust_client_user: bool = False) -> Setup:
        fake = FakeUpstream().__enter__()
        spec = ProviderSpec(
            name="up", kind="openai-compatible", base_url=fake.url,
            prices=MappingProxyType({"m": PRICE}),
        )  # fmt: skip
        budget = Budget(limits or [Limit("tenant", 100.0, "total")], log=None,
                        tokenizer="estimate")  # fmt: skip
        gateway = Gateway(
            [spec], middleware=[budget], clients=clients,
            log=str(tmp_path / f"log{len(started)}.duckdb"),
        )  # fmt: skip
        keys = KeyRing({KEY: ClientIdentity("team-a", tenant="a")})
        app = GatewayApp(gateway, keys, trust_client_user=trust_client_user)
        server = BackgroundServer(app).start()
        started.append(Setup(fake, gateway, budget, server))
        return started[-1]

    yield start
    for s in started:
        s.server.stop()
        s.gateway.close()
        s.fake.close()
    clients.close()


# --- streams and unknown usage --------------------------------------------------------------


def test_a_stream_without_the_usage_chunk_for_the_client_is_still_priced_and_charged(
    setup: Callable[..., Setup],
) -> None:
    s = setup()
    s.fake.reply_sse(_sse(usage=True))
    chunks = list(
        s.openai().chat.completions.create(
            model=MODEL, messages=PROMPT, stream=True, stream_options={"include_usage": False}
        )
    )
    # The client chose not to see the usage chunk ...
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
    # ... but the upstream was asked for it, and the call is priced and charged.
    assert s.fake.last_request.json["stream_options"] == {"include_usage": True}
    [(cost,)] = s.rows("SELECT cost_usd FROM calls")
    assert cost == pytest.approx(23e-6)
    assert s.spent() == pytest.approx(23e-6)


def test_seen_stream_options_in_a_messages_body_cannot_zero_the_cost(
    setup: Callable[..., Setup],
) -> None:
    """Seen: ``stream_options: {include_usage: false}`` passed through (here via the
    Messages endpoint to an OpenAI-format target) and the call was logged at 0.0 and
    charged nothing. Fails on the old code (the call succeeded at cost 0.0)."""
    s = setup()
    s.fake.reply_sse(_sse(usage=False))
    with pytest.raises(anthropic.BadRequestError) as info:
        with s.anthropic().messages.stream(
            model=MODEL, max_tokens=50, messages=PROMPT,
            extra_body={"stream_options": {"include_usage": False}},
        ) as stream:  # fmt: skip
            stream.until_done()
    assert info.value.status_code == 400
    assert "stream_options" in str(info.value)
    assert s.fake.requests == []


def test_unknown_usage_is_logged_as_null_and_charged_at_the_estimate(
    setup: Callable[..., Setup],
) -> None:
    """An upstream that reports no usage (it ignores include_usage): cost NULL in the log,
    never 0.0, and the budget keeps the estimate. Fails on the old code (cost 0.0, nothing
    charged)."""
    s = setup()
    s.fake.reply_sse(_sse(usage=False))
    text = "".join(
        c.choices[0].delta.content or ""
        for c in s.openai().chat.completions.create(
            model=MODEL, messages=PROMPT, stream=True, max_tokens=100
        )
        if c.choices
    )
    assert text == "Paris."
    s.fake.reply_json(_completion(usage=False))
    s.openai().chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=100)
    rows = s.rows("SELECT status, cost_usd IS NULL, cost_usd FROM calls ORDER BY call_id")
    assert [(status, is_null) for status, is_null, _ in rows] == [("ok", True), ("ok", True)]
    # Its token counts are unknown too: NULL, not 0 ("no tokens").
    assert s.gateway.log is not None
    tokens = s.gateway.log.execute(
        "SELECT input_tokens, output_tokens, reasoning_tokens FROM calls"
    )
    assert tokens == [(None, None, None), (None, None, None)]
    # The estimate: the prompt at 4 characters a token plus per-message overhead, and the
    # whole max_tokens; at 1 USD per million tokens, at least the 100 output tokens each.
    assert s.spent() >= 2 * 100e-6


# --- token limits -----------------------------------------------------------------------------


def test_the_budget_estimates_from_the_largest_token_limit(setup: Callable[..., Setup]) -> None:
    """Seen: max_completion_tokens overrode the max_tokens the budget estimated from. Fails
    on the old code (max_completion_tokens=10 won and the call was admitted)."""
    s = setup([Limit("tenant", 0.001, "total")])  # 1,000 tokens at 1 USD per million
    with pytest.raises(openai.RateLimitError) as info:
        s.openai().chat.completions.create(
            model=MODEL, messages=PROMPT, max_completion_tokens=10, max_tokens=100_000
        )
    assert info.value.code == "insufficient_quota"
    assert s.fake.requests == []
    # When it fits, the largest limit is also the one the upstream is sent.
    s.fake.reply_json(_completion())
    s.openai().chat.completions.create(
        model=MODEL, messages=PROMPT, max_completion_tokens=10, max_tokens=500
    )
    assert s.fake.last_request.json["max_tokens"] == 500
    assert "max_completion_tokens" not in s.fake.last_request.json


def test_seen_max_completion_tokens_cannot_ride_along_a_messages_body(
    setup: Callable[..., Setup],
) -> None:
    """Fails on the old code: the field reached the upstream and replaced the limit the
    budget estimated from."""
    s = setup()
    s.fake.reply_json(_completion())
    with pytest.raises(anthropic.BadRequestError) as info:
        s.anthropic().messages.create(
            model=MODEL, max_tokens=10, messages=PROMPT,
            extra_body={"max_completion_tokens": 100_000},
        )  # fmt: skip
    assert "max_completion_tokens" in str(info.value)
    assert s.fake.requests == []


@pytest.mark.parametrize("value", [10**30, -(10**30)])
def test_absurd_integers_are_a_400_not_a_crash(setup: Callable[..., Setup], value: int) -> None:
    s = setup()
    with pytest.raises(openai.BadRequestError):
        s.openai().chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=value)
    with pytest.raises(openai.BadRequestError):
        s.openai().chat.completions.create(model=MODEL, messages=PROMPT, temperature=value)
    assert s.fake.requests == []


# --- unknown and accounting fields ------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [{"store": True}, {"metadata": {"a": "b"}}, {"web_search_options": {}},
             {"service_tier": "priority"}, {"stream_options": {"include_usage": True, "x": 1}},
             {"n": 3}, {"sql": "select 1"}],
)  # fmt: skip
def test_fields_outside_the_chat_completions_allowlist_are_a_400_naming_them(
    setup: Callable[..., Setup], body: dict
) -> None:
    s = setup()
    with pytest.raises(openai.BadRequestError) as info:
        s.openai().chat.completions.create(model=MODEL, messages=PROMPT, extra_body=body)
    name = next(iter(body)) if next(iter(body)) != "stream_options" else "x"
    assert name in str(info.value)
    assert s.fake.requests == []


def test_allowlisted_fields_pass_and_standard_service_tier_is_accepted_not_forwarded(
    setup: Callable[..., Setup],
) -> None:
    s = setup()
    s.fake.reply_json(_completion())
    s.openai().chat.completions.create(
        model=MODEL, messages=PROMPT, frequency_penalty=0.5, service_tier="auto",
        response_format={"type": "json_object"}, extra_body={"top_k": 4},
    )  # fmt: skip
    sent = s.fake.last_request.json
    assert (sent["frequency_penalty"], sent["top_k"]) == (0.5, 4)
    assert sent["response_format"] == {"type": "json_object"}
    assert "service_tier" not in sent


@pytest.mark.parametrize(
    "body", [{"mcp_servers": []}, {"container": "c"}, {"metadata": {"user_id": "u", "x": 1}},
             {"service_tier": "priority"}, {"response_format": {"type": "json_object"}}],
)  # fmt: skip
def test_fields_outside_the_messages_allowlist_are_a_400(
    setup: Callable[..., Setup], body: dict
) -> None:
    s = setup()
    with pytest.raises(anthropic.BadRequestError):
        s.anthropic().messages.create(model=MODEL, max_tokens=10, messages=PROMPT, extra_body=body)
    assert s.fake.requests == []


# --- the body's user --------------------------------------------------------------------------


def _per_user_budget() -> list[Limit]:
    # 100 micro-dollars per user: a call's estimate (~ 65 tokens) fits, and after one call
    # that used 1,020 tokens the user's budget is spent.
    return [Limit("user", 0.0001, "total")]


def test_rotating_the_body_user_does_not_escape_per_user_budgets(
    setup: Callable[..., Setup],
) -> None:
    """Fails on the old code: each new ``user`` got a fresh per-user budget."""
    s = setup(_per_user_budget())
    client = s.openai()
    s.fake.reply_json(_completion(output_tokens=1000))
    client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=50, user="u-1")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=50, user="u-2")
    assert len(s.fake.requests) == 1
    rows = s.rows("SELECT user_id, metadata_json FROM calls ORDER BY call_id")
    assert [u for u, _ in rows] == ["team-a", "team-a"]  # the key is the user
    assert json.loads(rows[0][1])["client_user"] == "u-1"


def test_trust_client_user_lets_the_body_user_set_the_identity(
    setup: Callable[..., Setup],
) -> None:
    s = setup(_per_user_budget(), trust_client_user=True)
    client = s.openai()
    for user in ("u-1", "u-2"):
        s.fake.reply_json(_completion(output_tokens=1000))
        client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=50, user=user)
    assert s.rows("SELECT user_id FROM calls ORDER BY call_id") == [("u-1",), ("u-2",)]


def test_trust_client_user_is_a_strict_server_setting(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    provider = '[providers.sim]\nkind = "simulated"\nformat = "openai"\n'
    path.write_text(provider + "[server]\nport = 1\n")
    settings = load_config(path).server
    assert settings is not None and settings.trust_client_user is False
    path.write_text(provider + "[server]\ntrust_client_user = true\n")
    settings = load_config(path).server
    assert settings is not None and settings.trust_client_user is True
    path.write_text(provider + '[server]\ntrust_client_user = "yes"\n')
    with pytest.raises(ConfigError, match="trust_client_user"):
        load_config(path)


# --- rate limits ------------------------------------------------------------------------------


def test_a_token_rate_limit_counts_a_call_of_unknown_usage_at_its_estimate() -> None:
    """Fails on the old code: a call whose provider reported no usage gave back its whole
    token estimate, as if it had used no tokens."""

    limiter = RateLimiter(
        [{"key": ["tenant"], "tokens_per_minute": 10_000}], mode="reject", clock=lambda: 0.0
    )
    provider = FunctionProvider(
        lambda request: ChatResponse(
            text="ok", finish_reason="stop", usage=UNKNOWN_USAGE, provider="a", model=request.model
        ),
        "a",
        models=("m",),
    )
    with Gateway([provider], log=None, middleware=[limiter]) as gateway:
        response = gateway.chat("a/m", "hi", max_tokens=100, tenant="t")
    assert response.cost_usd is None
    [bucket] = limiter.snapshot()["buckets"]
    assert bucket["available"] <= 10_000 - 100


# --- tools billed outside the token usage -------------------------------------------------------


def test_provider_server_tools_are_refused_on_both_apis(setup: Callable[..., Setup]) -> None:
    """Fails on the old code: a server tool (billed per use, outside the token usage the
    gateway prices) went through to the upstream."""
    s = setup()
    s.fake.reply_json(_completion())
    with pytest.raises(anthropic.BadRequestError) as info:
        s.anthropic().messages.create(
            model=MODEL,
            max_tokens=10,
            messages=PROMPT,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        )
    assert "web_search_20250305" in str(info.value)
    with pytest.raises(openai.BadRequestError) as oinfo:
        s.openai().chat.completions.create(
            model=MODEL, messages=PROMPT, tools=[{"type": "web_search_preview"}]
        )
    assert "tools.0.type" in str(oinfo.value)
    assert s.fake.requests == []
    # Function tools work as before.
    s.openai().chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    )
    assert s.fake.last_request.json["tools"][0]["function"]["name"] == "f"


@pytest.mark.parametrize("user", ["u" * 257, "line\nbreak", "nul\x00"])
def test_a_body_user_is_a_short_printable_id(setup: Callable[..., Setup], user: str) -> None:
    # It ends up in the log (as client_user or user_id) and in budget keys.
    s = setup(trust_client_user=True)
    with pytest.raises(openai.BadRequestError, match="user"):
        s.openai().chat.completions.create(model=MODEL, messages=PROMPT, user=user)
    with pytest.raises(anthropic.BadRequestError, match="user_id"):
        s.anthropic().messages.create(
            model=MODEL, max_tokens=10, messages=PROMPT, metadata={"user_id": user}
        )
    assert s.fake.requests == []


@pytest.mark.parametrize("mode", ["chat", "stream", "achat", "astream"])
def test_every_budget_path_charges_unknown_usage_at_the_estimate(mode: str) -> None:
    """Gateway.chat/stream and their async forms: a call whose provider reported no usage is
    logged with cost NULL and counts its estimate. Fails on the old code (cost 0.0 from a
    zero usage, nothing counted)."""
    import asyncio

    budget = Budget([Limit("gateway", 1.0, "total")], tokenizer="estimate")
    provider = FunctionProvider(
        lambda request: ChatResponse(
            text="ok", finish_reason="stop", usage=UNKNOWN_USAGE, provider="a", model=request.model
        ),
        "a",
        models=("m",),
    )
    gateway = Gateway([provider], log=None, middleware=[budget], prices={"a/m": Price(1.0, 1.0)})

    async def run_async() -> float | None:
        if mode == "achat":
            return (await gateway.achat("a/m", "hi", max_tokens=100)).cost_usd
        stream = gateway.astream("a/m", "hi", max_tokens=100)
        async for _ in stream:
            pass
        assert stream.response is not None
        return stream.response.cost_usd

    with gateway:
        if mode == "chat":
            cost = gateway.chat("a/m", "hi", max_tokens=100).cost_usd
        elif mode == "stream":
            with gateway.stream("a/m", "hi", max_tokens=100) as stream:
                for _ in stream:
                    pass
            assert stream.response is not None
            cost = stream.response.cost_usd
        else:
            cost = asyncio.run(run_async())
    assert cost is None
    [row] = budget.snapshot()
    # The estimate: 100 output tokens allowed plus the prompt, at 1 USD per million tokens.
    assert row["spent_usd"] >= 100e-6 and row["reserved_usd"] == 0


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_abandoned_after_it_began_is_charged_at_its_estimate(mode: str) -> None:
    """A stream the caller closes (or that breaks) after the upstream began answering was
    paid for, but its usage never arrives: it counts at its estimate, never at 0. Fails on
    the old code (a cancelled stream was settled at 0). A stream refused before any answer
    still counts 0."""
    import asyncio

    budget = Budget([Limit("gateway", 1.0, "total")], tokenizer="estimate")
    provider = FunctionProvider(lambda request: "one two three four five", "a", models=("m",))
    gateway = Gateway([provider], log=None, middleware=[budget], prices={"a/m": Price(1.0, 1.0)})

    async def take_one_async() -> None:
        stream = gateway.astream("a/m", "hi", max_tokens=100)
        async for _ in stream:
            break
        await stream.aclose()

    with gateway:
        if mode == "stream":
            with gateway.stream("a/m", "hi", max_tokens=100) as stream:
                next(iter(stream))  # the first text, then the caller walks away
        else:
            asyncio.run(take_one_async())
        [row] = budget.snapshot()
    assert row["in_flight"] == 0 and row["reserved_usd"] == 0
    # At 1 USD per million tokens, the estimate covers at least the 100 output tokens.
    assert row["spent_usd"] >= 100e-6
