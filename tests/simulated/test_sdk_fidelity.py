"""The official openai and anthropic SDKs, as real clients of the simulator's HTTP server.

The server is uvicorn on a free 127.0.0.1 port in a background thread; SDK retries are off,
so every injected fault reaches the test as the SDK's own typed error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from aigw_lab.sim.fleet import SimulatedFleet
from aigw_lab.sim_server import BackgroundServer, base_urls
from tests._sdks import anthropic, openai

from .helpers import sse_data

PROMPT = "Explain how a rainbow forms"


@pytest.fixture
def faulty_server(request: pytest.FixtureRequest) -> Iterator[BackgroundServer]:
    """A server where every call gets the fault named by the test's parameter."""
    with BackgroundServer(SimulatedFleet(time_scale=0.0, faults={request.param: 1.0})) as srv:
        yield srv


def openai_client(server: BackgroundServer, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_urls(server.url)["openai"], api_key="unused", max_retries=0, **kwargs
    )  # type: ignore[arg-type]


def anthropic_client(server: BackgroundServer, **kwargs: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=base_urls(server.url)["anthropic"], api_key="unused", max_retries=0, **kwargs
    )  # type: ignore[arg-type]


# --- openai ---------------------------------------------------------------------------------


def test_openai_create_parses_text_usage_and_finish(clean_server: BackgroundServer) -> None:
    completion = openai_client(clean_server).chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": PROMPT}]
    )
    assert completion.model == "sim-small"
    assert completion.system_fingerprint == "aigw-simulated"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and "rainbow" in choice.message.content
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 20
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_stream_with_include_usage(clean_server: BackgroundServer) -> None:
    client = openai_client(clean_server)
    whole = client.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": PROMPT}]
    )
    stream = client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finishes, usages = [], [], []
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finishes.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            usages.append(chunk.usage)
    assert "".join(pieces) == whole.choices[0].message.content
    assert finishes[-1] == "stop"
    assert len(usages) == 1 and usages[0].completion_tokens == whole.usage.completion_tokens


def test_openai_max_tokens_gives_length(clean_server: BackgroundServer) -> None:
    completion = openai_client(clean_server).chat.completions.create(
        model="sim-nano", messages=[{"role": "user", "content": PROMPT}], max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


def test_openai_sdk_on_workers_ai_compatible_path(clean_server: BackgroundServer) -> None:
    client = openai.OpenAI(
        base_url=base_urls(clean_server.url)["workers-ai-openai"], api_key="unused", max_retries=0
    )
    completion = client.chat.completions.create(
        model="sim-llamaish-70b", messages=[{"role": "user", "content": PROMPT}]
    )
    assert completion.model == "sim-llamaish-70b" and completion.choices[0].message.content
    stream = client.chat.completions.create(
        model="sim-llamaish-70b", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == completion.choices[0].message.content


def test_openai_sdk_lists_the_fleet(clean_server: BackgroundServer) -> None:
    ids = [m.id for m in openai_client(clean_server).models.list()]
    assert ids and all(i.startswith("sim-") for i in ids)


@pytest.mark.parametrize("faulty_server", ["rate_limited"], indirect=True)
def test_openai_rate_limit_error_carries_retry_after(faulty_server: BackgroundServer) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(faulty_server).chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 429
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 5
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["x-aigw-simulated"] == "true"


@pytest.mark.parametrize(
    "faulty_server, status",
    [("server_error", 500), ("unavailable", 503)],
    indirect=["faulty_server"],
)
def test_openai_server_errors_are_typed(faulty_server: BackgroundServer, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client(faulty_server).chat.completions.create(
            model="sim-large", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == status


@pytest.mark.parametrize("faulty_server", ["timeout"], indirect=True)
def test_openai_timeout_is_an_sdk_timeout(faulty_server: BackgroundServer) -> None:
    with pytest.raises(openai.APITimeoutError):
        openai_client(faulty_server, timeout=0.05).chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize("faulty_server", ["truncated"], indirect=True)
def test_openai_truncated_stream_lacks_finish_and_usage(faulty_server: BackgroundServer) -> None:
    # The SDK does not notice a cut stream by itself: no finish reason and no usage arrive.
    stream = openai_client(faulty_server).chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in chunks if c.choices)


@pytest.mark.parametrize("faulty_server", ["malformed"], indirect=True)
def test_openai_malformed_body_and_stream_fail_to_parse(faulty_server: BackgroundServer) -> None:
    client = openai_client(faulty_server)
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": PROMPT}]
        )
    with pytest.raises(json.JSONDecodeError):
        list(
            client.chat.completions.create(
                model="sim-small", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
        )


# --- anthropic ------------------------------------------------------------------------------


def test_anthropic_create_parses_text_usage_and_stop(clean_server: BackgroundServer) -> None:
    message = anthropic_client(clean_server).messages.create(
        model="sim-sonnetish",
        max_tokens=1024,
        system="Be brief.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert message.model == "sim-sonnetish" and message.stop_reason == "end_turn"
    assert "rainbow" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 20


def test_anthropic_stream_helper_final_message(clean_server: BackgroundServer) -> None:
    client = anthropic_client(clean_server)
    whole = client.messages.create(
        model="sim-haikuish", max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    )
    with client.messages.stream(
        model="sim-haikuish", max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_anthropic_raw_stream_events_and_max_tokens(clean_server: BackgroundServer) -> None:
    events = list(
        anthropic_client(clean_server).messages.create(
            model="sim-haikuish",
            max_tokens=4,
            stream=True,
            messages=[{"role": "user", "content": PROMPT}],
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = events[-2]
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 4


@pytest.mark.parametrize("faulty_server", ["overloaded"], indirect=True)
def test_anthropic_529_is_overloaded_error(faulty_server: BackgroundServer) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        anthropic_client(faulty_server).messages.create(
            model="sim-sonnetish", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 529
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("faulty_server", ["rate_limited"], indirect=True)
def test_anthropic_rate_limit_error(faulty_server: BackgroundServer) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client(faulty_server).messages.create(
            model="sim-haikuish", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.body["type"] == "error"


@pytest.mark.parametrize("faulty_server", ["timeout"], indirect=True)
def test_anthropic_timeout_is_an_sdk_timeout(faulty_server: BackgroundServer) -> None:
    with pytest.raises(anthropic.APITimeoutError):
        anthropic_client(faulty_server, timeout=0.05).messages.create(
            model="sim-haikuish", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize("faulty_server", ["truncated"], indirect=True)
def test_anthropic_truncated_stream_has_no_stop_reason(faulty_server: BackgroundServer) -> None:
    # The stream helper does not raise on a cut stream; the missing stop reason shows it.
    with anthropic_client(faulty_server).messages.stream(
        model="sim-haikuish", max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason is None


@pytest.mark.parametrize("faulty_server", ["malformed"], indirect=True)
def test_anthropic_malformed_stream_event_fails_to_parse(faulty_server: BackgroundServer) -> None:
    with pytest.raises(json.JSONDecodeError):
        with anthropic_client(faulty_server).messages.stream(
            model="sim-haikuish",
            max_tokens=1024,
            messages=[{"role": "user", "content": PROMPT}],
        ) as stream:
            stream.get_final_message()


def test_anthropic_unknown_model_is_not_found(clean_server: BackgroundServer) -> None:
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(clean_server).messages.create(
            model="claude-real", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )


# --- Workers AI native, over real HTTP ------------------------------------------------------


def test_workers_native_over_http(clean_server: BackgroundServer) -> None:
    url = base_urls(clean_server.url)["workers-ai"].format(model="sim-llamaish-8b")
    with httpx.Client(timeout=5.0) as client:
        whole = client.post(url, json={"prompt": PROMPT}).json()
        streamed = client.post(url, json={"prompt": PROMPT, "stream": True})
    assert whole["success"] is True
    payloads = sse_data(streamed.text)
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert "".join(e["response"] for e in events) == whole["result"]["response"]
    assert events[-1]["usage"] == whole["result"]["usage"]
