"""The provider hot path's shortcuts send and read exactly what the general path does: the
body `HttpProvider` encodes itself, its cached URLs, the cache-status check, and the token
counts read with `type(...) is` fast paths."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from aigw_lab.providers.anthropic import AnthropicCodec, anthropic_usage
from aigw_lab.providers.base import HttpClients
from aigw_lab.providers.codec import Codec, usage_int
from aigw_lab.providers.openai import OpenAICodec, openai_usage
from aigw_lab.providers.transport import HttpProvider
from aigw_lab.providers.workers_ai import WorkersAICodec
from aigw_lab.types import UNKNOWN_USAGE, ChatRequest, Usage

ANSWERS: dict[str, dict[str, Any]] = {
    "openai": {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]},
    "anthropic": {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
    "workers-ai": {"result": {"response": "ok"}, "success": True, "errors": []},
}


class Recorder:
    """An in-process upstream that records each request and answers in its format."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: dict[str, Any] = ANSWERS["openai"]
        self.headers: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.answer, headers=self.headers)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make(recorder: Recorder) -> Iterator[Callable[..., HttpProvider]]:
    clients = HttpClients(transport=httpx.MockTransport(recorder))

    def build(codec: Codec | None = None, **headers: str) -> HttpProvider:
        codec = codec or OpenAICodec()
        recorder.answer = ANSWERS[codec.api_format]
        return HttpProvider(
            "p",
            codec,
            "http://upstream.test/v1",
            clients=clients,
            headers=MappingProxyType(headers),
        )

    yield build
    clients.close()


REQUEST = ChatRequest.create(
    "m",
    [{"role": "user", "content": 'Grüße \u2028 "quoted" 東京'}],
    temperature=0.5,
    max_tokens=8,
    # Nested non-ASCII JSON in a neutral field (tools): `extra` passes only allowlisted
    # fields since issue 9.
    tools=[{"type": "function", "function": {"name": "f", "parameters": {"ünïcode": [1, 2.5]}}}],
    extra={"top_k": 4},
)


@pytest.mark.parametrize("codec", [OpenAICodec(), AnthropicCodec(), WorkersAICodec()],
                         ids=["openai", "anthropic", "workers-ai"])  # fmt: skip
def test_body_and_headers_are_what_httpx_json_would_send(
    codec: Codec, make: Callable[..., HttpProvider], recorder: Recorder
) -> None:
    provider = make(codec, authorization="Bearer k")
    provider.chat(REQUEST)
    sent = recorder.requests[0]

    encoded = codec.encode(REQUEST, stream=False)
    with httpx.Client() as client:
        reference = client.build_request(
            "POST",
            "http://upstream.test/v1" + encoded.path,
            json=encoded.body,
            headers={**codec.headers, "authorization": "Bearer k"},
        )
    assert sent.content == reference.content
    assert sent.headers.raw == reference.headers.raw  # same names, values and order
    assert sent.url == reference.url


def test_a_configured_content_type_wins(
    make: Callable[..., HttpProvider], recorder: Recorder
) -> None:
    provider = make(**{"Content-Type": "application/json; charset=utf-8"})
    provider.chat(REQUEST)
    sent = recorder.requests[0]
    assert sent.headers.get_list("content-type") == ["application/json; charset=utf-8"]
    assert json.loads(sent.content)["messages"][0]["content"].startswith("Grüße")


def test_per_request_headers_are_sent_beside_the_encoded_body(
    make: Callable[..., HttpProvider], recorder: Recorder
) -> None:
    class TaggingCodec(OpenAICodec):
        def encode(self, request: ChatRequest, *, stream: bool) -> Any:
            encoded = super().encode(request, stream=stream)
            return type(encoded)(encoded.path, encoded.body, {"x-trace": "t-1"})

    make(TaggingCodec()).chat(REQUEST)
    sent = recorder.requests[0]
    assert sent.headers["x-trace"] == "t-1"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content)["top_k"] == 4


def test_every_model_gets_its_own_url_beyond_the_url_cache(
    make: Callable[..., HttpProvider], recorder: Recorder
) -> None:
    provider = make(WorkersAICodec())
    models = [f"@cf/test/model-{i}" for i in range(300)] + ["@cf/test/model-0"]
    for model in models:
        provider.chat(ChatRequest.create(model, "hi"))
    assert [str(r.url) for r in recorder.requests] == [
        f"http://upstream.test/v1/run/{model}" for model in models
    ]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, "none"), ({"cf-aig-cache-status": "HIT"}, "upstream_hit"),
     ({"CF-AIG-Cache-Status": "hit"}, "upstream_hit"), ({"cf-aig-cache-status": "MISS"}, "none")],
    ids=["absent", "hit", "any-case", "miss"],
)  # fmt: skip
def test_cache_status_from_the_gateway_header(
    make: Callable[..., HttpProvider], recorder: Recorder, headers: dict, status: str
) -> None:
    provider = make()
    recorder.headers = headers
    assert provider.chat(REQUEST).cache_status == status


@pytest.mark.parametrize(
    ("value", "count"),
    [(7, 7), (0, 0), (2**70, 2**70), (7.9, 7), (True, 0), (False, 0), (None, 0), ("7", 0),
     ([], 0)],
)  # fmt: skip
def test_usage_int(value: Any, count: int) -> None:
    assert usage_int(value) == count
    assert type(usage_int(value)) is int


def test_usage_from_any_mapping() -> None:
    openai = {"prompt_tokens": 9, "completion_tokens": 4.0,
              "prompt_tokens_details": {"cached_tokens": 3},
              "completion_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip
    anthropic = {"input_tokens": 1, "cache_read_input_tokens": 3,
                 "cache_creation_input_tokens": 5, "output_tokens": 4}  # fmt: skip
    for wrap in (dict, MappingProxyType):
        assert openai_usage(wrap(openai)) == Usage(
            input_tokens=9,
            output_tokens=4,
            cache_read_tokens=3,
            cache_write_tokens=0,
            reasoning_tokens=2,
        )
        assert anthropic_usage(wrap(anthropic)) == Usage(
            input_tokens=9,
            output_tokens=4,
            cache_read_tokens=3,
            cache_write_tokens=5,
            reasoning_tokens=0,
        )
    assert openai_usage({"prompt_tokens_details": None}) == Usage()
    # No usage object: unknown (priced as NULL), not zero tokens (changed by issue 9).
    assert openai_usage([1, 2]) == anthropic_usage("x") == UNKNOWN_USAGE


@pytest.mark.parametrize("value", [7, 0, 2**70, 7.9, True, False, None, "7", [], -1])
def test_openai_usage_reads_every_field_as_usage_int_does(value: Any) -> None:
    # The plain-int fast path inside openai_usage must agree with usage_int on every value.
    usage = openai_usage(
        {
            "prompt_tokens": value,
            "completion_tokens": value,
            "prompt_tokens_details": {"cached_tokens": value},
            "completion_tokens_details": {"reasoning_tokens": value},
        }
    )
    n = usage_int(value)
    assert (usage.input_tokens, usage.output_tokens) == (n, n)
    assert (usage.cache_read_tokens, usage.reasoning_tokens) == (n, n)
    assert all(type(v) is int for v in (usage.input_tokens, usage.output_tokens))
