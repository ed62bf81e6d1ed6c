"""The fixtures are real wire formats: the official OpenAI and Anthropic SDKs, pointed at the
same fake over loopback, read them to the same text, usage and finish reason as our adapters.
"""

from __future__ import annotations

import pytest

from aigw_lab import errors
from aigw_lab.testing.fake_upstream import FakeUpstream
from tests._sdks import anthropic, openai  # dev dependencies: a missing one fails, not skips

from .adapters import ADAPTERS, make_provider
from .wire_formats import (
    ANSWER,
    ANTHROPIC_MESSAGE,
    ANTHROPIC_STREAM,
    OPENAI_COMPLETION,
    OPENAI_STREAM,
    anthropic_error,
    openai_error,
)

OPENAI_ADAPTER = next(a for a in ADAPTERS if a.id == "openai")
ANTHROPIC_ADAPTER = next(a for a in ADAPTERS if a.id == "anthropic")
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_openai_sdk_reads_the_openai_fixtures_as_we_do(fake: FakeUpstream, clients) -> None:
    sdk = openai.OpenAI(base_url=f"{fake.url}/v1", api_key="sk-test", max_retries=0)
    ours = make_provider(OPENAI_ADAPTER, fake.url, clients)
    fake.reply_json(OPENAI_COMPLETION)
    fake.reply_json(OPENAI_COMPLETION)
    fake.reply_sse(OPENAI_STREAM, chunk_size=5)
    fake.reply_sse(OPENAI_STREAM, chunk_size=5)

    theirs = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    mine = ours.chat(OPENAI_ADAPTER.request())
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                              stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    *_, end = ours.stream(OPENAI_ADAPTER.request())

    for response, usage in ((mine, theirs.usage), (end.response, chunks[-1].usage)):
        assert response.text == ANSWER
        assert response.usage.input_tokens == usage.prompt_tokens
        assert response.usage.output_tokens == usage.completion_tokens
        assert response.usage.cache_read_tokens == usage.prompt_tokens_details.cached_tokens
        assert response.usage.reasoning_tokens == (usage.completion_tokens_details.reasoning_tokens)
    assert theirs.choices[0].message.content == ANSWER
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert mine.finish_reason == theirs.choices[0].finish_reason == "stop"


def test_anthropic_sdk_reads_the_anthropic_fixtures_as_we_do(fake: FakeUpstream, clients) -> None:
    sdk = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)
    ours = make_provider(ANTHROPIC_ADAPTER, fake.url, clients)
    fake.reply_json(ANTHROPIC_MESSAGE)
    fake.reply_json(ANTHROPIC_MESSAGE)
    fake.reply_sse(ANTHROPIC_STREAM, chunk_size=5)
    fake.reply_sse(ANTHROPIC_STREAM, chunk_size=5)

    theirs = sdk.messages.create(model="claude", max_tokens=64, messages=MESSAGES)
    mine = ours.chat(ANTHROPIC_ADAPTER.request())
    with sdk.messages.stream(model="claude", max_tokens=64, messages=MESSAGES) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    *_, end = ours.stream(ANTHROPIC_ADAPTER.request())

    for response, usage in ((mine, theirs.usage), (end.response, final.usage)):
        assert response.text == ANSWER
        assert response.usage.output_tokens == usage.output_tokens
        assert response.usage.cache_read_tokens == usage.cache_read_input_tokens
        assert response.usage.cache_write_tokens == usage.cache_creation_input_tokens
        assert response.usage.input_tokens == (
            usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        )
    assert streamed_text == ANSWER
    assert theirs.stop_reason == final.stop_reason == "end_turn"


def test_sdks_classify_our_error_fixtures_like_we_do(fake: FakeUpstream, clients) -> None:
    openai_sdk = openai.OpenAI(base_url=f"{fake.url}/v1", api_key="sk-test", max_retries=0)
    anthropic_sdk = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant", max_retries=0)
    quota = openai_error("You exceeded your current quota.", "insufficient_quota",
                         "insufficient_quota")  # fmt: skip
    overloaded = anthropic_error("overloaded_error", "Overloaded")
    fake.reply_json(quota, status=429)
    fake.reply_json(overloaded, status=529)

    with pytest.raises(openai.RateLimitError) as openai_caught:
        openai_sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(anthropic.APIStatusError) as anthropic_caught:
        anthropic_sdk.messages.create(model="claude", max_tokens=64, messages=MESSAGES)
    assert openai_caught.value.code == "insufficient_quota"
    assert anthropic_caught.value.status_code == 529

    fake.reply_json(quota, status=429)
    fake.reply_json(overloaded, status=529)
    with pytest.raises(errors.QuotaExceededError):
        make_provider(OPENAI_ADAPTER, fake.url, clients).chat(OPENAI_ADAPTER.request())
    with pytest.raises(errors.OverloadedError):
        make_provider(ANTHROPIC_ADAPTER, fake.url, clients).chat(ANTHROPIC_ADAPTER.request())
