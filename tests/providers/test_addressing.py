"""Issue 9 §1: no client value steers the gateway's credentials elsewhere.

Model names reach Workers AI's URL path (``/ai/run/{model}``, ``.../workers-ai/{model}``
through an AI Gateway); request ``extra`` fields reach every provider's body; per-request
``cf-aig-*`` settings reach headers. Each is checked where it enters, against a loopback
`FakeUpstream` that records what really arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab.addressing import (
    ALL_EXTRA_FIELDS,
    EXTRA_FIELDS,
    MAX_OUTPUT_TOKENS,
    check_model_name,
    check_url_path,
    model_path,
)
from aigw_lab.errors import ConfigError, InvalidRequestError
from aigw_lab.gateway import Budget, Limit
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, Price, ProviderSpec
from aigw_lab.providers.registry import build_provider
from aigw_lab.sim.catalog import DEFAULT_MODELS
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.types import ChatRequest, Message

from .conftest import loopback_clients

ENV = MappingProxyType(
    {
        "CLOUDFLARE_API_TOKEN": "cf-token-secret",
        "OPENAI_API_KEY": "sk-openai-secret",
        "ANTHROPIC_API_KEY": "sk-ant-secret",
    }
)
ACCOUNT = "0123456789abcdef0123456789abcdef"

#: Real model names of every shape the providers use; all must keep working.
GOOD_NAMES = (
    "gpt-4o-mini",
    "claude-3-5-sonnet-20241022",
    "@cf/meta/llama-3.1-8b-instruct",
    "@hf/thebloke/deepseek-coder-6.7b-instruct-awq",
    "accounts/fireworks/models/llama-v3p1-8b-instruct",
    "meta-llama/Llama-3.1-8B-Instruct:free",
    "org/model:tag",
    "qwen2.5:0.5b",
    "claude-3-5-sonnet@20240620",
)

#: The forms the issue saw, and their relatives: each could name another endpoint.
BAD_NAMES = (
    "../../d1/database/ID/query",
    "@cf/meta/../../../d1/database/ID/query",
    "@cf/meta/llama?x=1",
    "@cf/meta/llama#frag",
    "@cf/meta/%2e%2e/%2e%2e/d1",
    "@cf/meta/llama%3Fx",
    "@cf/meta//llama",
    "/@cf/meta/llama",
    "@cf/meta/llama/",
    "@cf/./meta",
    "@cf/meta/llama 3",
    "@cf/meta/llama\t3",
    "@cf/meta/llama\r\nx-injected: 1",
    "@cf/meta/llama\x00",
    "@cf/meta/llama\\..\\x",
    "@cf/métà/llama",
    "a" * 300,
)


def _reply_workers(fake: FakeUpstream) -> None:
    fake.reply_json(
        {"result": {"response": "ok", "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
         "success": True, "errors": [], "messages": []}
    )  # fmt: skip


@pytest.fixture
def gateway_for(fake: FakeUpstream) -> Iterator[object]:
    clients = loopback_clients()
    built: list[Gateway] = []

    def make(*specs: ProviderSpec, **kwargs: object) -> Gateway:
        gw = Gateway(list(specs), clients=clients, env=ENV, log=None, **kwargs)  # type: ignore[arg-type]
        built.append(gw)
        return gw

    yield make
    for gw in built:
        gw.close()
    clients.close()


def _workers(fake: FakeUpstream, **kw: object) -> ProviderSpec:
    return ProviderSpec(
        name="workers", kind="workers-ai", base_url=fake.url, account_id=ACCOUNT, **kw
    )  # type: ignore[arg-type]


# --- model names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_documented_model_names_are_accepted_unchanged(name: str) -> None:
    assert check_model_name(name) == name
    assert model_path(name) == name  # nothing to encode in the allowed set


def test_every_simulated_fleet_model_name_is_accepted() -> None:
    for model in DEFAULT_MODELS:
        assert check_model_name(model.id) == model.id


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_names_are_refused_naming_the_allowed_characters(name: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ChatRequest.create(f"workers/{name}", "hi")
    assert "letters A-Z a-z, digits 0-9" in str(info.value)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_seen_a_model_name_never_sends_the_token_to_another_cloudflare_path(
    name: str, fake: FakeUpstream, gateway_for
) -> None:
    """Seen in issue 9: ``../../d1/database/ID/query`` made the gateway POST its Cloudflare
    token to the D1 API. Fails on the old code (the fake received the request)."""
    gw = gateway_for(_workers(fake))
    _reply_workers(fake)
    with pytest.raises(InvalidRequestError):
        gw.chat(f"workers/{name}", "hi")
    assert fake.requests == []


@pytest.mark.parametrize("name", ["../../d1/database/ID/query", "@cf/x?y=1", "@cf/a/../b"])
def test_a_ready_request_with_a_bad_model_is_stopped_at_the_codec(
    name: str, fake: FakeUpstream, gateway_for
) -> None:
    # A ChatRequest built with its constructor skips create()'s checks: the codec and the
    # transport still refuse the path.
    gw = gateway_for(_workers(fake))
    request = ChatRequest(model=f"workers/{name}", messages=(Message("user", "hi"),))
    with pytest.raises(InvalidRequestError):
        gw.chat(request)
    assert fake.requests == []


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_workers_ai_posts_to_the_run_path_of_each_good_name(
    name: str, fake: FakeUpstream, gateway_for
) -> None:
    gw = gateway_for(_workers(fake))
    _reply_workers(fake)
    assert gw.chat(f"workers/{name}", "hi").text == "ok"
    assert fake.last_request.path == f"/accounts/{ACCOUNT}/ai/run/{name}"


def test_through_an_ai_gateway_the_model_follows_the_provider_slug(
    fake: FakeUpstream, gateway_for
) -> None:
    spec = ProviderSpec(
        name="workers", kind="workers-ai", account_id=ACCOUNT, cf_gateway="my-gw",
        options=MappingProxyType({"cf_gateway_url": fake.url}),
    )  # fmt: skip
    gw = gateway_for(spec)
    _reply_workers(fake)
    gw.chat("workers/@cf/meta/llama-3.1-8b-instruct", "hi")
    assert fake.last_request.path == f"/{ACCOUNT}/my-gw/workers-ai/@cf/meta/llama-3.1-8b-instruct"
    with pytest.raises(InvalidRequestError):
        gw.chat("workers/../../../other-account/gw/openai/chat/completions", "hi")
    assert len(fake.requests) == 1


def test_the_transport_refuses_any_path_a_codec_might_build() -> None:
    for path in ("/run/a?b", "/run/a#b", "/run/%2e", "/run/../x", "/run/a b", "/run/\x7f"):
        with pytest.raises(InvalidRequestError):
            check_url_path(path, provider="p")
    check_url_path("/run/@cf/meta/llama-3.1-8b-instruct", provider="p")


@pytest.mark.parametrize(
    "field, value",
    [("account_id", "../other"), ("account_id", "abc/def"), ("account_id", "a?b"),
     ("cf_gateway", ".."), ("cf_gateway", "gw?x=1")],
)  # fmt: skip
def test_configured_path_segments_are_checked(field: str, value: str) -> None:
    values = {"account_id": ACCOUNT, "cf_gateway": None, field: value}
    spec = ProviderSpec(name="w", kind="workers-ai", **values)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        build_provider(spec, HttpClients(), env=ENV)


@pytest.mark.parametrize(
    "root", ["ftp://gw.test/v1", "http://gw.test/v1?x=1", "http://gw.test/v1#f", "gw.test/v1"]
)
def test_the_ai_gateway_root_is_a_plain_http_url(root: str) -> None:
    spec = ProviderSpec(
        name="w", kind="workers-ai", account_id=ACCOUNT, cf_gateway="gw",
        options=MappingProxyType({"cf_gateway_url": root}),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="cf_gateway_url"):
        build_provider(spec, HttpClients(), env=ENV)


# --- passthrough fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["max_completion_tokens", "max_tokens", "stream_options", "n", "model", "messages",
              "stream", "service_tier", "store", "metadata", "web_search_options", "path"]
)  # fmt: skip
def test_extra_cannot_carry_fields_the_gateway_interprets(
    field: str, fake: FakeUpstream, gateway_for
) -> None:
    """Seen: Gateway.chat's ``extra`` replaced the body's token limit and stream options.
    Fails on the old code (the call went out with the field)."""
    gw = gateway_for(_workers(fake))
    _reply_workers(fake)
    with pytest.raises(InvalidRequestError) as info:
        gw.chat("workers/@cf/meta/llama-3.1-8b-instruct", "hi", extra={field: 100_000})
    assert repr(field) in str(info.value)
    assert fake.requests == []


def test_each_codec_passes_only_its_own_fields(fake: FakeUpstream, gateway_for) -> None:
    gw = gateway_for(_workers(fake))
    _reply_workers(fake)
    gw.chat("workers/@cf/meta/llama-3.1-8b-instruct", "hi", extra={"top_k": 5})
    assert fake.last_request.json["top_k"] == 5
    # `thinking` is an Anthropic field: accepted by ChatRequest, refused by Workers AI.
    with pytest.raises(InvalidRequestError, match="Workers AI"):
        gw.chat("workers/@cf/meta/llama-3.1-8b-instruct", "hi", extra={"thinking": {}})
    assert len(fake.requests) == 1
    assert set().union(*EXTRA_FIELDS.values()) == ALL_EXTRA_FIELDS


# --- per-request AI Gateway headers -------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"authorization": "Bearer other"}, {"custom-cost": '{"per_token_in": 0}'},
     {"cache-ttl": "60\r\nx-injected: 1"}, {"cache key": "x"}, {"metadata": "caf\u00e9"}],
)  # fmt: skip
def test_per_request_gateway_headers_are_checked(
    settings: dict, fake: FakeUpstream, gateway_for
) -> None:
    spec = ProviderSpec(
        name="workers", kind="workers-ai", account_id=ACCOUNT, cf_gateway="my-gw",
        options=MappingProxyType({"cf_gateway_url": fake.url}),
    )  # fmt: skip
    gw = gateway_for(spec)
    with pytest.raises(InvalidRequestError):
        gw.chat("workers/@cf/a/b", "hi", metadata={"cf_aig": settings})
    assert fake.requests == []
    _reply_workers(fake)
    gw.chat("workers/@cf/a/b", "hi", metadata={"cf_aig": {"cache-ttl": 60, "skip-cache": True}})
    assert fake.last_request.headers["cf-aig-cache-ttl"] == "60"


# --- absurd integers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, -1, MAX_OUTPUT_TOKENS + 1, 10**100, 10**5000, True],
    ids=["zero", "negative", "above-bound", "googol", "5000-digits", "bool"],
)
def test_max_tokens_is_bounded_with_a_typed_error(value: int) -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        ChatRequest.create("workers/@cf/a/b", "hi", max_tokens=value)


def test_the_budget_estimate_never_overflows_on_a_request_built_by_hand(
    fake: FakeUpstream, gateway_for
) -> None:
    # The constructor skips validation; the budget's arithmetic must still be safe (the old
    # code raised OverflowError from float arithmetic, an untyped error).
    budget = Budget([Limit("gateway", 1.0, "day")], log=None)
    gw = gateway_for(
        _workers(fake, prices=MappingProxyType({"@cf/a/b": Price(1.0, 1.0)})), middleware=[budget]
    )
    request = ChatRequest(
        model="workers/@cf/a/b", messages=(Message("user", "hi"),), max_tokens=10**400
    )
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        gw.chat(request)
    assert fake.requests == []


# --- the rule itself, on generated names --------------------------------------------------------


def _resolved(path: str) -> str:
    """RFC 3986 remove_dot_segments, as a server resolves a path."""
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    return "/" + "/".join(out)


@settings(max_examples=3_000, deadline=None, derandomize=True, database=None)
@given(
    st.text(alphabet=st.sampled_from(list("aZ09._-:@/?#% \t\n\x00\\+é")), min_size=1, max_size=24)
)
def test_an_accepted_name_is_one_path_that_no_resolver_changes(name: str) -> None:
    try:
        check_model_name(name)
    except InvalidRequestError:
        return
    path = "/ai/run/" + model_path(name)
    assert path == "/ai/run/" + name  # nothing needed encoding
    assert _resolved(path) == path and "//" not in path and not path.endswith("/")
    assert not set(name) & set("?#% \t\n\x00\\+é")


# --- other exchanges with a provider (batch APIs) -----------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["../../files/file-x/content", "b?x=1", "b#f", "b%2F..", "http://elsewhere.test/x"]
)
def test_a_resumed_batch_job_cannot_steer_the_key_elsewhere(bad_id: str) -> None:
    """``BatchJob.resume`` takes the job id from a caller's dict and puts it in a URL path.
    Fails on the old code (the fake received the tampered path with the provider's key)."""
    from aigw_lab.batch import BatchJob, submit_batch
    from aigw_lab.testing.fake_batches import FakeBatches

    with FakeBatches(api_key="sk-right") as fake:
        spec = ProviderSpec(
            "oa", "openai", base_url=fake.url + "/v1", api_key_env="OA_KEY",
            prices=MappingProxyType({"gpt-x": Price(1.0, 1.0)}),
        )  # fmt: skip
        with Gateway([spec], env={"OA_KEY": "sk-right"}, log=None) as gw:
            job = submit_batch(gw, "oa/gpt-x", ["hello"])
            state = {**job.to_dict(), "id": bad_id, "info": {**job.info, "id": bad_id}}
            sent = len(fake.requests)
            resumed = BatchJob.resume(gw, state)
            with pytest.raises(InvalidRequestError):
                resumed.status()
            assert len(fake.requests) == sent


def test_a_prompt_with_a_lone_surrogate_is_a_logged_invalid_request_not_an_encode_error():
    """Seen: `Gateway.chat` with a lone surrogate in a message raised UnicodeEncodeError from
    the transport (the server showed it as "internal error"); it is a typed refusal naming
    the character, and the attempt is in the log."""
    import httpx

    from aigw_lab.providers.base import HttpClients, ProviderSpec

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    spec = ProviderSpec(name="oa", kind="openai", base_url="http://127.0.0.1:9/v1")
    clients = HttpClients(transport=httpx.MockTransport(handler))
    gw = Gateway([spec], clients=clients, env={"OPENAI_API_KEY": "sk-x"})
    with pytest.raises(InvalidRequestError, match="surrogate") as caught:
        gw.chat("oa/gpt-4o-mini", [{"role": "user", "content": "a \ud800 b"}])
    assert caught.value.hint
    assert sent == []  # nothing left the gateway
    rows = gw.query("SELECT status, error_type FROM calls")
    assert len(rows) == 1 and rows.status[0] == "error"
    gw.close()
