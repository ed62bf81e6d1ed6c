"""The official openai SDK against `aigw-lab serve`'s app: chats, streams, models, errors."""

from __future__ import annotations

import json

import pytest

from tests._sdks import openai

from .helpers import KEY_A, KEY_B, Served

PROMPT = [{"role": "user", "content": "Explain how a rainbow forms"}]


def test_chat_completion_answers_from_the_addressed_model(served: Served) -> None:
    raw = served.openai().chat.completions.with_raw_response.create(
        model="sim-openai/sim-small", messages=PROMPT
    )
    completion = raw.parse()
    assert completion.model == "sim-openai/sim-small"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and "rainbow" in choice.message.content
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The ids point at the call's row in the log, and the answer is marked simulated.
    trace_id = raw.headers["x-aigw-trace-id"]
    assert completion.id == f"chatcmpl-{trace_id}"
    assert raw.headers["x-aigw-simulated"] == "true"
    assert served.rows(f"SELECT request_model FROM calls WHERE trace_id = '{trace_id}'") == [
        ("sim-small",)
    ]


def test_a_model_of_another_wire_format_is_served_in_the_openai_format(
    shared_served: Served,
) -> None:
    completion = shared_served.openai().chat.completions.create(
        model="sim-anthropic/sim-haikuish",
        messages=[{"role": "system", "content": "Be brief."}, *PROMPT],
        max_tokens=64,
    )
    assert completion.model == "sim-anthropic/sim-haikuish"
    assert completion.choices[0].message.content


def test_stream_with_include_usage_matches_the_whole_answer(served: Served) -> None:
    client = served.openai()
    whole = client.chat.completions.create(model="sim-openai/sim-small", messages=PROMPT)
    stream = client.chat.completions.create(
        model="sim-openai/sim-small",
        messages=PROMPT,
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
    assert "".join(pieces) == whole.choices[0].message.content  # same seed, same prompt
    assert finishes[-1] == "stop"
    assert len(usages) == 1 and usages[0].completion_tokens == whole.usage.completion_tokens
    rows = served.rows("SELECT stream, status FROM calls ORDER BY timestamp")
    assert rows == [(False, "ok"), (True, "ok")]


def test_stream_without_include_usage_sends_no_usage_chunk(shared_served: Served) -> None:
    chunks = list(
        shared_served.openai().chat.completions.create(
            model="sim-openai/sim-nano", messages=PROMPT, stream=True
        )
    )
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_models_lists_every_gateway_address(shared_served: Served) -> None:
    ids = {m.id for m in shared_served.openai().models.list()}
    expected = {
        f"{provider}/{model}"
        for provider, models in shared_served.gateway.list_models().items()
        for model in models
    }
    assert ids == expected and "sim-openai/sim-small" in ids


def test_the_key_decides_tenant_and_user_in_the_log(served: Served) -> None:
    served.openai(KEY_A).chat.completions.create(
        model="sim-openai/sim-nano", messages=PROMPT, user="alice"
    )
    served.openai(KEY_B).chat.completions.create(
        model="sim-openai/sim-nano", messages=PROMPT, user="mallory"
    )
    rows = served.rows(
        "SELECT tenant_id, user_id, tags_json, metadata_json FROM calls ORDER BY tenant_id"
    )
    # Key B's fixed user wins over the client's. Key A fixes none, and without [server]
    # trust_client_user the body's user is not the call's user (issue 9: per-user budgets
    # must not be escapable by rotating it): the key is; the body's is kept as metadata.
    assert [(t, u) for t, u, _, _ in rows] == [("a", "team-a"), ("b", "bob")]
    assert json.loads(rows[0][2])["aigw_key"] == "team-a"
    assert json.loads(rows[0][3])["client_user"] == "alice"


def test_a_wrong_key_is_an_authentication_error(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        served.openai("sk-not-a-gateway-key").chat.completions.create(
            model="sim-openai/sim-small", messages=PROMPT
        )
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert served.rows("SELECT count(*) FROM calls") == [(0,)]  # never reached the gateway


def test_an_unknown_model_is_not_found(shared_served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        shared_served.openai().chat.completions.create(model="sim-openai/gpt-nope", messages=PROMPT)
    assert info.value.code == "model_not_found" and "gpt-nope" in info.value.message
    with pytest.raises(openai.NotFoundError):
        shared_served.openai().chat.completions.create(model="no-such-provider/x", messages=PROMPT)


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
    client = served.openai()
    client.chat.completions.create(model="sim-openai/sim-nano", messages=PROMPT)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="sim-openai/sim-nano", messages=PROMPT)
    response = info.value.response
    assert info.value.code == "rate_limit_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60  # one request a minute
    # Another tenant has its own bucket.
    served.openai(KEY_B).chat.completions.create(model="sim-openai/sim-nano", messages=PROMPT)
    # A stream refused before its first token gets the same status, not a 200.
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sim-openai/sim-nano", messages=PROMPT, stream=True)


def test_a_budget_refusal_is_insufficient_quota_and_not_retried(serve_config) -> None:
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
    with pytest.raises(openai.RateLimitError) as info:
        served.openai().chat.completions.create(model="sim-openai/sim-large", messages=PROMPT)
    assert info.value.code == "insufficient_quota"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert served.rows("SELECT tenant_id, error_type FROM calls") == [("a", "budget_exceeded")]
    # Tenant b has no such budget.
    served.openai(KEY_B).chat.completions.create(model="sim-openai/sim-large", messages=PROMPT)
