"""The conformance suite, error half: every error status of every adapter (direct and through
a Cloudflare AI Gateway) maps to its typed error, and credentials never leak into errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aigw_lab import errors
from aigw_lab.testing.fake_upstream import FakeUpstream

from .adapters import API_KEY, GATEWAY_TOKEN, Adapter, adapters, make_provider
from .wire_formats import anthropic_error, cloudflare_error, openai_error

# --- error statuses ---------------------------------------------------------------------------

_LONG_PROMPT = "This model's maximum context length is 128000 tokens. However, your messages " \
    "resulted in 131072 tokens. Please reduce the length of the messages."  # fmt: skip


def _openai_errors() -> dict[str, tuple[Any, int]]:
    e = openai_error
    return {
        "bad_request": (e("Invalid value for 'temperature'.", "invalid_request_error",
                          "invalid_value", "temperature"), 400),
        "context": (e(_LONG_PROMPT, "invalid_request_error", "context_length_exceeded",
                      "messages"), 400),
        "content_filter": (e("Your request was rejected by the safety system.",
                             "invalid_request_error", "content_policy_violation"), 400),
        "auth": (e(f"Incorrect API key provided: {API_KEY}.", "invalid_request_error",
                   "invalid_api_key"), 401),
        "payment": (e("Payment required.", "billing_error", None), 402),
        "permission": (e("Project does not have access to model gpt-4o-mini.",
                         "invalid_request_error", "model_not_found"), 403),
        "not_found": (e("The model `gpt-9` does not exist or you do not have access to it.",
                        "invalid_request_error", "model_not_found"), 404),
        "timeout": (e("Request timed out.", "timeout", None), 408),
        "too_large": (e("Request too large.", "invalid_request_error", None), 413),
        "unprocessable": (e("Unprocessable request.", "invalid_request_error", None), 422),
        "rate": (e("Rate limit reached for gpt-4o-mini on requests per min (RPM).", "requests",
                   "rate_limit_exceeded"), 429),
        "quota": (e("You exceeded your current quota, please check your plan and billing "
                    "details.", "insufficient_quota", "insufficient_quota"), 429),
        "server": (e("The server had an error while processing your request.", "server_error",
                     None), 500),
        "bad_gateway": (b"<html><head><title>502 Bad Gateway</title></head></html>", 502),
        "unavailable": (e("The engine is currently overloaded, please try again later.",
                          "server_error", None), 503),
        "gateway_timeout": (b"upstream request timeout", 504),
        "overloaded": (e("Overloaded.", "server_error", None), 529),
    }  # fmt: skip


def _anthropic_errors() -> dict[str, tuple[Any, int]]:
    e = anthropic_error
    return {
        "bad_request": (e("invalid_request_error", "temperature: range: 0..1"), 400),
        "context": (e("invalid_request_error", "prompt is too long: 210345 tokens > 200000 "
                      "maximum"), 400),
        "auth": (e("authentication_error", "invalid x-api-key"), 401),
        "payment": (e("billing_error", "Your credit balance is too low to access the "
                      "Anthropic API."), 402),
        "quota": (e("invalid_request_error", "Your credit balance is too low to access the "
                    "Anthropic API. Please go to Plans & Billing to upgrade or purchase "
                    "credits."), 400),
        "permission": (e("permission_error", "Your API key does not have permission to use "
                         "the specified resource."), 403),
        "not_found": (e("not_found_error", "model: claude-9"), 404),
        "timeout": (e("timeout_error", "Request timed out."), 408),
        "too_large": (e("request_too_large", "Request exceeds the maximum allowed number of "
                        "bytes."), 413),
        "unprocessable": (e("invalid_request_error", "Unprocessable."), 422),
        "rate": (e("rate_limit_error", "Number of request tokens has exceeded your per-minute "
                   "rate limit"), 429),
        "server": (e("api_error", "Internal server error"), 500),
        "bad_gateway": (b"<html><body>502 Bad Gateway</body></html>", 502),
        "unavailable": (b"Service Unavailable", 503),
        "gateway_timeout": (e("timeout_error", "Request timed out."), 504),
        "overloaded": (e("overloaded_error", "Overloaded"), 529),
    }  # fmt: skip


def _cloudflare_errors() -> dict[str, tuple[Any, int]]:
    e = cloudflare_error
    return {
        "bad_request": (e(5007, "No such model @cf/meta/llama-9 or task"), 400),
        "context": (e(5021, "The estimated number of input and maximum output tokens (9216) "
                      "exceeded this model context window limit (8192)."), 400),
        "auth": (e(10000, "Authentication error"), 401),
        "permission": (e(3023, "Service unavailable for account"), 403),
        "not_found": (e(3042, "The model name is invalid"), 404),
        "timeout": (e(3007, "Request timeout"), 408),
        "too_large": (e(3006, "Request is too large"), 413),
        "unprocessable": (e(3003, "Request is missing headers or body: body"), 422),
        "rate": (e(3040, "No more data centers to forward the request to"), 429),
        "quota": (e(3036, "You have used up your daily free allocation of 10,000 neurons."),
                  429),
        # 5xx: Cloudflare's edge answers with HTML or a bare envelope.
        "server": (e(1000, "Internal server error"), 500),
        "bad_gateway": (b"<html><body><h1>502 Bad gateway</h1></body></html>", 502),
        "unavailable": (b"<html><body>503 Service Temporarily Unavailable</body></html>", 503),
        "gateway_timeout": (b"<html><body>504 Gateway time-out</body></html>", 504),
        "overloaded": (e(1000, "Overloaded"), 529),
    }  # fmt: skip


#: Per wire format: error kind -> (body, status). Bodies follow each provider's error shape;
#: Workers AI's OpenAI-compatible endpoint fails with the same Cloudflare envelope.
_ERROR_BODIES: dict[str, dict[str, tuple[Any, int]]] = {
    "openai": _openai_errors(),
    "anthropic": _anthropic_errors(),
    "workers-ai": _cloudflare_errors(),
    "workers-ai-openai": _cloudflare_errors(),
}

_EXPECTED_ERRORS: dict[str, type[errors.ProviderError]] = {
    "bad_request": errors.InvalidRequestError,
    "context": errors.ContextLengthExceededError,
    "content_filter": errors.ContentFilteredError,
    "auth": errors.AuthenticationError,
    "payment": errors.QuotaExceededError,
    "permission": errors.AuthenticationError,
    "not_found": errors.InvalidRequestError,
    "timeout": errors.ProviderTimeoutError,
    "too_large": errors.InvalidRequestError,
    "unprocessable": errors.InvalidRequestError,
    "rate": errors.RateLimitedError,
    "quota": errors.QuotaExceededError,
    "server": errors.ProviderServerError,
    "bad_gateway": errors.ProviderServerError,
    "unavailable": errors.OverloadedError,
    "gateway_timeout": errors.ProviderServerError,
    "overloaded": errors.OverloadedError,
}

_NOT_APPLICABLE = {
    ("anthropic", "content_filter"): "Anthropic has no content-filter error status: refusals "
    "end a normal answer with stop_reason 'refusal' (see test_finish_reason_is_normalised)",
    ("workers-ai", "content_filter"): "Workers AI documents no content-filter error",
    ("workers-ai-openai", "content_filter"): "Workers AI documents no content-filter error",
    ("workers-ai", "payment"): "Workers AI documents no 402; its quota error is 429 code 3036",
    ("workers-ai-openai", "payment"): "Workers AI documents no 402; its quota error is 429 "
    "code 3036",
}


def _error_params() -> list[Any]:
    params = []
    for p in adapters():
        adapter: Adapter = p.values[0]
        for kind in _EXPECTED_ERRORS:
            reason = _NOT_APPLICABLE.get((adapter.wire, kind))
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(adapter, kind, id=f"{adapter.id}-{kind}", marks=marks))
    return params


@pytest.mark.parametrize(("adapter", "kind"), _error_params())
def test_error_status_maps_to_typed_error(
    adapter: Adapter, kind: str, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    body, status = _ERROR_BODIES[adapter.wire][kind]
    if isinstance(body, bytes):
        fake.reply_raw(body, status=status, content_type="text/html")
    else:
        fake.reply_json(body, status=status, headers={"retry-after": "7"})

    with pytest.raises(errors.ProviderError) as caught:
        provider.chat(adapter.request())

    error = caught.value
    assert type(error) is _EXPECTED_ERRORS[kind]
    assert error.status == status
    assert (error.provider, error.model) == (provider.name, adapter.model)
    text = str(error)
    assert provider.name in text and adapter.model in text and f"HTTP {status}" in text
    assert ("(retryable)" in text) == error.retryable
    assert error.body and len(error.body) <= 2000
    assert API_KEY not in text and API_KEY not in error.body
    if kind == "rate":
        assert error.retry_after == 7.0
    if kind == "not_found":
        assert "model name" in text


@pytest.mark.parametrize("adapter", adapters())
def test_api_key_never_leaks_into_errors_or_raw(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    secrets = (API_KEY, GATEWAY_TOKEN) if adapter.gateway else (API_KEY,)
    echo = "bad credentials: Bearer " + " / ".join(secrets)
    fake.reply_json({"error": {"message": echo}, "errors": [{"code": 10000, "message": echo}],
                     "type": "error"}, status=401)  # fmt: skip
    fake.reply_json(adapter.expected.body)

    with pytest.raises(errors.AuthenticationError) as caught:
        provider.chat(adapter.request())
    response = provider.chat(adapter.request())

    for secret in secrets:
        assert secret not in str(caught.value) and secret not in (caught.value.body or "")
        assert secret not in json.dumps(response.raw)
        assert secret not in repr(provider)
    assert "***" in caught.value.body
    header, value = adapter.auth_header
    assert all(r.headers[header] == value for r in fake.requests)


@pytest.mark.parametrize("adapter", adapters())
def test_stream_error_status_raises_typed_error(
    adapter: Adapter, fake: FakeUpstream, clients
) -> None:
    provider = make_provider(adapter, fake.url, clients)
    body, _ = _ERROR_BODIES[adapter.wire]["rate"]
    fake.reply_json(body, status=429, headers={"retry-after": "3"})
    with pytest.raises(errors.RateLimitedError) as caught:
        list(provider.stream(adapter.request()))
    assert caught.value.retry_after == 3.0
