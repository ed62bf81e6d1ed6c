"""The official anthropic SDK against the gateway's Messages endpoint."""

from __future__ import annotations

import json

import pytest

from tests._sdks import anthropic

from .helpers import KEY_B, Served

PROMPT = [{"role": "user", "content": "Explain how a rainbow forms"}]


def test_message_answers_with_text_usage_and_stop_reason(served: Served) -> None:
    raw = served.anthropic().messages.with_raw_response.create(
        model="sim-anthropic/sim-haikuish",
        max_tokens=256,
        system="You are concise.",
        messages=PROMPT,
    )
    message = raw.parse()
    assert message.model == "sim-anthropic/sim-haikuish"
    assert message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and "rainbow" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.id == f"msg_{raw.headers['x-aigw-trace-id']}"
    # The system prompt reached the gateway as a system message.
    request = json.loads(served.rows("SELECT request_json FROM calls")[0][0])
    assert request["messages"][0] == {"role": "system", "content": "You are concise."}


def test_an_openai_format_model_is_served_in_the_anthropic_format(shared_served: Served) -> None:
    message = shared_served.anthropic().messages.create(
        model="sim-openai/sim-small", max_tokens=64, messages=PROMPT
    )
    assert message.model == "sim-openai/sim-small"
    assert message.stop_reason in ("end_turn", "max_tokens") and message.content[0].text


def test_stream_events_build_the_same_message(shared_served: Served) -> None:
    client = shared_served.anthropic()
    whole = client.messages.create(
        model="sim-anthropic/sim-sonnetish", max_tokens=512, messages=PROMPT
    )
    kinds: list[str] = []
    with client.messages.stream(
        model="sim-anthropic/sim-sonnetish", max_tokens=512, messages=PROMPT
    ) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens  # from message_delta
    raw_kinds = [k for k in kinds if k not in ("text",)]  # the SDK adds "text" helpers
    assert raw_kinds[:2] == ["message_start", "content_block_start"]
    assert raw_kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(raw_kinds[2:-3]) == {"content_block_delta"}


def test_models_list_in_the_anthropic_shape(shared_served: Served) -> None:
    models = list(shared_served.anthropic().models.list())
    ids = [m.id for m in models]
    assert "sim-anthropic/sim-haikuish" in ids and "sim-openai/sim-small" in ids
    assert all(m.type == "model" for m in models)
    with pytest.raises(anthropic.AuthenticationError) as info:  # errors in its format too
        list(shared_served.anthropic("wrong").models.list())
    assert info.value.body["error"]["type"] == "authentication_error"


def test_a_wrong_key_is_an_authentication_error(shared_served: Served) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        shared_served.anthropic("sk-ant-upstream-key").messages.create(
            model="sim-anthropic/sim-haikuish", max_tokens=16, messages=PROMPT
        )
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"


def test_an_unknown_model_is_not_found(shared_served: Served) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        shared_served.anthropic().messages.create(
            model="sim-anthropic/claude-nope", max_tokens=16, messages=PROMPT
        )
    assert info.value.body["error"]["type"] == "not_found_error"


def test_a_rate_limit_is_429_with_retry_after(serve_config) -> None:
    served = serve_config(
        """
[rate_limits]
mode = "reject"

[[rate_limits.rule]]
key = ["tenant"]
requests_per_minute = 1
"""
    )
    client = served.anthropic()
    client.messages.create(model="sim-anthropic/sim-haikuish", max_tokens=16, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="sim-anthropic/sim-haikuish", max_tokens=16, messages=PROMPT)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60


def test_a_budget_refusal_is_a_billing_error(serve_config) -> None:
    served = serve_config(
        """
[budgets]
[[budgets.limit]]
scope = "tenant"
id = "a"
usd = 0.000001
period = "total"
"""
    )
    with pytest.raises(anthropic.PaymentRequiredError) as info:
        served.anthropic().messages.create(
            model="sim-anthropic/sim-sonnetish", max_tokens=256, messages=PROMPT
        )
    assert info.value.status_code == 402 and info.value.body["error"]["type"] == "billing_error"
    assert info.value.response.headers["x-should-retry"] == "false"
    served.anthropic(KEY_B).messages.create(
        model="sim-anthropic/sim-sonnetish", max_tokens=256, messages=PROMPT
    )


def test_an_overloaded_upstream_is_529(serve_config) -> None:
    served = serve_config(
        """
[providers.sim-busy]
kind = "simulated"
format = "anthropic"
time_scale = 0.0
faults = { overloaded = 1.0 }
"""
    )
    with pytest.raises(anthropic.OverloadedError) as info:
        served.anthropic().messages.create(
            model="sim-busy/sim-haikuish", max_tokens=16, messages=PROMPT
        )
    assert info.value.status_code == 529
