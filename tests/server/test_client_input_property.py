"""Issue 9 §1, as a property: whatever model name and body a caller sends, every request that
leaves the gateway goes to one of its provider's documented endpoint paths, with only the
documented body fields, and the gateway answers with a typed error (a 4xx on the server)
otherwise.

Two entrances, 10,000 generated calls in all:

- `Gateway.chat` / `stream` / `achat` / `astream` (7,000 examples) against every provider
  kind, direct and through a Cloudflare AI Gateway URL, with an httpx transport that records
  every request;
- ``aigw-lab serve`` (3,000 examples): a real `BackgroundServer` on 127.0.0.1 in front of a
  loopback `FakeUpstream` that records the raw request line, fed raw JSON bodies on both
  served APIs.

The oracle does not reuse the gateway's validator: a path is acceptable when it has no query
or fragment, no percent-escapes, nothing a URL resolver would change (dot segments), only
printable ASCII, and is either a provider's fixed endpoint or its model prefix followed by
exactly the model name the caller sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aigw_lab.errors import AigwError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, Price, ProviderSpec
from aigw_lab.server import BackgroundServer, GatewayApp
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.types import ChatRequest, Message

ACCOUNT = "0123456789abcdef0123456789abcdef"
GATEWAY_ID = "g1"
ENV = MappingProxyType(
    {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "CLOUDFLARE_API_TOKEN": "cf-t"}
)

#: One answer every codec decodes (OpenAI's choices, Anthropic's content, Workers AI's
#: result envelope); a stream request answered with JSON is read whole.
UNIVERSAL_REPLY = {
    "id": "x", "type": "message", "success": True, "errors": [],
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
    "result": {"response": "ok", "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "input_tokens": 1, "output_tokens": 1},
}  # fmt: skip

# The documented body fields of each wire format (docs/serving.md), written out here rather
# than imported, so a widened allowlist in the code fails this test.
_OPENAI_BODY = frozenset(
    ("model messages temperature top_p max_tokens max_completion_tokens stop seed tools "
     "tool_choice stream stream_options response_format frequency_penalty presence_penalty "
     "logit_bias logprobs top_logprobs parallel_tool_calls reasoning_effort verbosity "
     "prompt_cache_key safety_identifier top_k min_p repetition_penalty").split()
)  # fmt: skip
_ANTHROPIC_BODY = frozenset(
    ("model max_tokens messages system temperature top_p stop_sequences tools tool_choice "
     "stream top_k thinking").split()
)  # fmt: skip
_WORKERS_BODY = frozenset(
    ("messages max_tokens temperature top_p seed tools stream top_k repetition_penalty "
     "frequency_penalty presence_penalty response_format").split()
)  # fmt: skip
#: Never in any upstream body: fields that change cost or accounting, or store data.
_NEVER = frozenset(("n", "service_tier", "store", "metadata", "user", "web_search_options"))


def _providers(root: str) -> dict[str, tuple[ProviderSpec, str, str | None, frozenset[str]]]:
    """name -> (spec, fixed endpoint path or model prefix, "model" if the model follows the
    prefix, documented body fields); every provider kind, direct and through an AI Gateway."""
    gw_options = MappingProxyType({"cf_gateway_url": f"{root}/gw"})
    gw = f"/gw/{ACCOUNT}/{GATEWAY_ID}"
    cf = f"/client/v4/accounts/{ACCOUNT}/ai"

    def via_gateway(name: str, kind: str) -> ProviderSpec:
        return ProviderSpec(
            name=name, kind=kind, account_id=ACCOUNT, cf_gateway=GATEWAY_ID, options=gw_options
        )

    return {
        "oa": (ProviderSpec(name="oa", kind="openai", base_url=f"{root}/v1"),
               "/v1/chat/completions", None, _OPENAI_BODY),
        "an": (ProviderSpec(name="an", kind="anthropic", base_url=root),
               "/v1/messages", None, _ANTHROPIC_BODY),
        "wk": (ProviderSpec(name="wk", kind="workers-ai", base_url=f"{root}/client/v4",
                            account_id=ACCOUNT), f"{cf}/run/", "model", _WORKERS_BODY),
        "wo": (ProviderSpec(name="wo", kind="workers-ai-openai", base_url=f"{root}/client/v4",
                            account_id=ACCOUNT), f"{cf}/v1/chat/completions", None, _OPENAI_BODY),
        "cp": (ProviderSpec(name="cp", kind="openai-compatible", base_url=f"{root}/v1"),
               "/v1/chat/completions", None, _OPENAI_BODY),
        "gwk": (via_gateway("gwk", "workers-ai"), f"{gw}/workers-ai/", "model", _WORKERS_BODY),
        "gwwo": (via_gateway("gwwo", "workers-ai-openai"),
                 f"{gw}/workers-ai/v1/chat/completions", None, _OPENAI_BODY),
        "gwo": (via_gateway("gwo", "openai"), f"{gw}/openai/chat/completions", None,
                _OPENAI_BODY),
        "gwa": (via_gateway("gwa", "anthropic"), f"{gw}/anthropic/v1/messages", None,
                _ANTHROPIC_BODY),
        "gwc": (via_gateway("gwc", "openai-compatible"), f"{gw}/compat/chat/completions", None,
                _OPENAI_BODY),
    }  # fmt: skip


# Both property tests: reproducible (derandomized, no example database), no deadline.
EXAMPLES = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROVIDERS = st.sampled_from(("oa", "an", "wk", "wo", "cp", "gwk", "gwwo", "gwo", "gwa", "gwc"))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: what a server's URL resolver makes of ``path``."""
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(out) + ("/" if trailing else "")


#: The headers a request upstream may carry: httpx's own, the body's, and the provider's
#: credentials and version; none of them comes from the client.
_HEADERS = frozenset(
    ("host accept accept-encoding connection user-agent content-length content-type "
     "authorization x-api-key anthropic-version").split()
)  # fmt: skip


def check_sent(
    provider: tuple[ProviderSpec, str, str | None, frozenset[str]],
    bare_model: str,
    raw_target: str,
    body: Any,
    limits: list[int],
    headers: Mapping[str, str],
) -> None:
    """The oracle: ``raw_target`` (path and query as sent), ``body`` and ``headers`` are
    documented."""
    spec, endpoint, model_follows, documented = provider
    assert {name.lower() for name in headers} <= _HEADERS, set(headers)
    assert "?" not in raw_target and "#" not in raw_target, raw_target
    assert "%" not in raw_target, raw_target
    assert all(0x21 <= ord(c) <= 0x7E for c in raw_target), raw_target
    assert _remove_dot_segments(raw_target) == raw_target, raw_target
    if model_follows:
        assert raw_target == endpoint + bare_model, (raw_target, bare_model)
    else:
        assert raw_target == endpoint, raw_target
    assert isinstance(body, dict)
    assert set(body) <= documented, set(body) - documented
    assert not set(body) & _NEVER
    if "model" in body:
        assert body["model"] == bare_model
    if body.get("stream") and documented is _OPENAI_BODY:
        assert body["stream_options"] == {"include_usage": True}
    for field in ("max_tokens", "max_completion_tokens"):
        if field in body and limits:
            assert body[field] == max(limits), (body[field], limits)


# --- generated inputs ---------------------------------------------------------------------------

GOOD_NAMES = (
    "gpt-4o-mini", "claude-3-5-sonnet-20241022", "@cf/meta/llama-3.1-8b-instruct",
    "@hf/thebloke/deepseek-coder-6.7b-instruct-awq", "accounts/fireworks/models/x",
    "meta-llama/Llama-3.1-8B-Instruct:free", "org/model:tag", "qwen2.5:0.5b",
)  # fmt: skip
INJECTIONS = (
    "../", "/..", "/../", "..", "/./", "//", "?", "?x=1", "#", "#f", "%", "%2e%2e/", "%2F",
    "%3F", " ", "\t", "\n", "\r\n", "\x00", "\x7f", "\\", "\\..\\", "@", ":", "\u2028", "é",
    "ｄ", "/.", "./", ";", "&", "=", "+", "~", "$", "'", '"', "<", ">", "|", "^", "`", "{}",
)  # fmt: skip
_ALPHABET = st.sampled_from(
    list("abcXYZ019._-:@/") + ["..", "/..", "?", "#", "%", " ", "\n", "\x00", "é", "\\", "+"]
)
NAMES = st.one_of(
    st.sampled_from(GOOD_NAMES),
    st.lists(_ALPHABET, max_size=16).map("".join),
    st.builds(
        lambda a, i, b: a + i + b,
        st.sampled_from(GOOD_NAMES),
        st.sampled_from(INJECTIONS),
        st.sampled_from(("", "d1/database/ID/query", "x", "../../accounts/other/ai/run/m")),
    ),
    st.builds(lambda i, a: i + a, st.sampled_from(INJECTIONS), st.sampled_from(GOOD_NAMES)),
    st.text(max_size=12),
)
FIELD_POOL = (
    # passthrough fields of some format
    "top_k", "response_format", "frequency_penalty", "thinking", "logit_bias",
    "repetition_penalty", "reasoning_effort",
    # fields the gateway interprets or refuses
    "stream_options", "max_completion_tokens", "max_tokens", "n", "service_tier", "model",
    "messages", "stream", "store", "metadata", "user", "web_search_options", "audio",
    "modalities", "extra_headers", "path", "url", "account_id", "__proto__", "",
)  # fmt: skip
VALUES = st.one_of(
    st.integers(min_value=-3, max_value=3_000_000),
    st.booleans(),
    st.sampled_from(("auto", "default", "priority", "flex", "../x", "a\r\nb: c")),
    st.just({"include_usage": False}),
    st.just({"type": "json_object"}),
    st.none(),
)
EXTRAS = st.one_of(
    st.just({}),  # so that many calls get through and their requests are checked
    st.dictionaries(st.sampled_from(FIELD_POOL[:7]), VALUES, max_size=2),
    st.dictionaries(st.sampled_from(FIELD_POOL), VALUES, max_size=3),
)
LIMITS = st.one_of(st.none(), st.integers(min_value=-2, max_value=2_000_000), st.just(10**30))


# --- through the Gateway ------------------------------------------------------------------------


class _Recorder:
    """An httpx transport answering every request with `UNIVERSAL_REPLY` and keeping it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=UNIVERSAL_REPLY)


@pytest.fixture(scope="module")
def recorded_gateway() -> Iterator[tuple[Gateway, _Recorder, dict[str, Any]]]:
    recorder = _Recorder()
    transport = httpx.MockTransport(recorder)
    clients = HttpClients(transport=transport, async_transport=transport)
    providers = _providers("http://127.0.0.1:9")
    specs = [spec for spec, *_ in providers.values()]
    gateway = Gateway(specs, clients=clients, env=ENV, log=None)
    yield gateway, recorder, providers
    gateway.close()
    clients.close()


@pytest.fixture(scope="module")
def async_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for every async example (a loop per example would dominate the run)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


async def _acall(
    gateway: Gateway, request: Any, messages: Any, params: dict[str, Any], *, stream: bool
) -> None:
    if stream:
        async for _ in gateway.astream(request, messages, **params):
            pass
    else:
        await gateway.achat(request, messages, **params)


class GatewayCall(NamedTuple):
    """One generated call through the Gateway (the test's arguments, drawn as one value)."""

    provider: str
    name: str
    extra: dict[str, Any]
    max_tokens: int | None
    stream: bool
    ready_request: bool
    use_async: bool


# One `st.builds` value per example instead of seven `@given` arguments: the same strategies
# drawn in the same order, but Hypothesis wraps each `@given` argument's draw in a check of
# the global random state (two `random.getstate()` calls, 2.5 KB each) and a span of its own,
# about a fifth of this test's CPU for 7,000 examples (docs/performance.md, "The heaviest
# tests' CPU, session 12").
GATEWAY_CALLS = st.builds(
    GatewayCall,
    provider=PROVIDERS,
    name=NAMES,
    extra=EXTRAS,
    max_tokens=LIMITS,
    stream=st.booleans(),
    ready_request=st.booleans(),
    use_async=st.booleans(),
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(EXAMPLES, max_examples=7_000)
@given(call=GATEWAY_CALLS)
def test_the_gateway_only_ever_calls_documented_endpoints(
    recorded_gateway: tuple[Gateway, _Recorder, dict[str, Any]],
    async_loop: asyncio.AbstractEventLoop,
    call: GatewayCall,
) -> None:
    provider, name, extra, max_tokens, stream, ready_request, use_async = call
    gateway, recorder, providers = recorded_gateway
    before = len(recorder.requests)
    address = f"{provider}/{name}"
    params: dict[str, Any] = {"extra": extra}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    try:
        if ready_request:
            # Built with the constructor, which skips create()'s checks (no max_tokens: the
            # constructor's caller owns its ranges; the model and extra are still checked).
            request: Any = ChatRequest(
                model=address,
                messages=(Message("user", "hi"),),
                extra=MappingProxyType(extra),
            )
            params = {}
        else:
            request = address
        messages = "hi" if params else None
        if use_async:
            async_loop.run_until_complete(_acall(gateway, request, messages, params, stream=stream))
        elif stream:
            with gateway.stream(request, messages, **params) as events:
                for _ in events:
                    pass
        else:
            gateway.chat(request, messages, **params)
    except AigwError:
        pass  # a typed refusal is fine; anything else fails the test
    sent = recorder.requests[before:]
    assert len(sent) <= 1
    event("sent upstream" if sent else "refused")  # --hypothesis-show-statistics
    limits = [max_tokens] if max_tokens is not None and not ready_request else []
    for request_sent in sent:
        bare = name
        check_sent(
            providers[provider],
            bare,
            request_sent.url.raw_path.decode("ascii"),
            json.loads(request_sent.content),
            limits,
            request_sent.headers,
        )


# --- through aigw-lab serve ---------------------------------------------------------------------


class _Served:
    def __init__(self) -> None:
        self.fake = FakeUpstream().__enter__()
        self.providers = _providers(self.fake.url)
        self.clients = HttpClients()
        self.gateway = Gateway(
            [spec for spec, *_ in self.providers.values()],
            clients=self.clients,
            env=ENV,
            log=None,
            prices={f"{n}/{m}": Price(1.0, 1.0) for n in self.providers for m in GOOD_NAMES},
        )
        self.server = BackgroundServer(GatewayApp(self.gateway, None)).start()
        self.http = httpx.Client(base_url=self.server.url, timeout=30.0)
        self.queued = 0
        self.lock = threading.Lock()

    def post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        # Keep exactly one answer waiting for the fake: enqueue one more only when the
        # previous was used.
        if self.queued == len(self.fake.requests):
            self.fake.reply_json(UNIVERSAL_REPLY)
            self.queued += 1
        return self.http.post(path, content=json.dumps(body))

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.gateway.close()
        self.clients.close()
        self.fake.close()


@pytest.fixture(scope="module")
def served() -> Iterator[_Served]:
    served = _Served()
    yield served
    served.close()


class ServedCall(NamedTuple):
    """One generated request to ``aigw-lab serve`` (drawn as one value, as `GatewayCall`)."""

    provider: str
    name: str
    extra: dict[str, Any]
    max_tokens: int | None
    max_completion_tokens: int | None
    stream: bool
    api: str


SERVED_CALLS = st.builds(
    ServedCall,
    provider=PROVIDERS,
    name=NAMES,
    extra=EXTRAS,
    max_tokens=LIMITS,
    max_completion_tokens=LIMITS,
    stream=st.booleans(),
    api=st.sampled_from(("openai", "anthropic")),
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(EXAMPLES, max_examples=3_000)
@given(call=SERVED_CALLS)
def test_serve_only_ever_calls_documented_endpoints(served: _Served, call: ServedCall) -> None:
    provider, name, extra, max_tokens, max_completion_tokens, stream, api = call
    before = len(served.fake.requests)
    body: dict[str, Any] = {
        **extra,
        "model": f"{provider}/{name}",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if max_tokens is not None or api == "anthropic":  # the Messages API requires it
        body["max_tokens"] = max_tokens if max_tokens is not None else 16
    if max_completion_tokens is not None:
        body["max_completion_tokens"] = max_completion_tokens
    path = "/v1/chat/completions" if api == "openai" else "/v1/messages"
    response = served.post(path, body)
    # The limits the client asked for, as the body finally has them (`extra` may set one).
    limits = [
        v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if type(v) is int
    ]
    # A refusal is the client's error (4xx); the server never fails on its input.
    assert response.status_code < 500, response.text
    sent = served.fake.requests[before:]
    assert len(sent) == (1 if response.status_code == 200 else 0), response.text
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics
    for request_sent in sent:
        check_sent(
            served.providers[provider],
            name,
            request_sent.path,
            request_sent.json,
            limits,
            request_sent.headers,
        )
