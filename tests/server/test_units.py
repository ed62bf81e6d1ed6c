"""The server's pure parts: keys, the [server] config table, request conversion and the
error table (the one docs/serving.md shows)."""

from __future__ import annotations

import pytest

from aigw_lab.config import parse_config
from aigw_lab.errors import (
    AllAttemptsFailedError,
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    MissingAPIKeyError,
    NetworkError,
    OverloadedError,
    ProviderServerError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    StreamInterruptedError,
    UnknownModelError,
    UnknownProviderError,
)
from aigw_lab.server.anthropic_api import parse_messages_request
from aigw_lab.server.auth import ClientIdentity, KeyRing, presented_key
from aigw_lab.server.errors import anthropic_error, error_headers, http_error, openai_error
from aigw_lab.server.openai_api import parse_chat_request

# --- keys -----------------------------------------------------------------------------------


def test_keyring_identifies_only_exact_keys() -> None:
    ring = KeyRing({"sk-one": ClientIdentity("one", tenant="t1"), "sk-two": ClientIdentity("two")})
    assert ring.identify("sk-one") == ClientIdentity("one", tenant="t1")
    assert ring.identify("sk-two").name == "two"
    for wrong in ("sk-on", "sk-one ", "SK-ONE", "", None):
        assert ring.identify(wrong) is None
    assert ring.names == ["one", "two"]


def test_presented_key_reads_either_header() -> None:
    assert presented_key({b"x-api-key": b"k1"}) == "k1"
    assert presented_key({b"authorization": b"Bearer k2"}) == "k2"
    assert presented_key({b"authorization": b"bearer  k3 "}) == "k3"
    assert presented_key({b"authorization": b"Basic abc"}) is None
    assert presented_key({}) is None


# --- [server] config ------------------------------------------------------------------------

PROVIDERS = {"providers": {"sim": {"kind": "simulated"}}}


def test_server_table_is_parsed_with_tenant_defaulting_to_the_name() -> None:
    config = parse_config(
        {
            **PROVIDERS,
            "server": {
                "host": "0.0.0.0",
                "port": 9000,
                "keys": [
                    {"key_env": "K_A", "name": "team-a"},
                    {"key_env": "K_B", "name": "team-b", "tenant": "b", "user": "bot"},
                ],
            },
        }
    )
    server = config.server
    assert (server.host, server.port) == ("0.0.0.0", 9000)
    assert [(k.name, k.key_env, k.tenant, k.user) for k in server.keys] == [
        ("team-a", "K_A", "team-a", None),
        ("team-b", "K_B", "b", "bot"),
    ]
    assert parse_config(PROVIDERS).server is None


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ({"prot": 1}, "unknown key 'prot'"),
        ({"port": 70000}, "port = 70000"),
        ({"keys": {"key_env": "K"}}, r"keys = \{.*\} must be a list"),
        ({"keys": [{"name": "a"}]}, "needs key_env"),
        ({"keys": [{"key_env": "K", "name": "a", "key": "sk-secret"}]}, "unknown key 'key'"),
        ({"keys": [{"key_env": "K", "name": "a"}, {"key_env": "L", "name": "a"}]}, "twice"),
    ],
)
def test_server_table_mistakes_name_the_key(server: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config({**PROVIDERS, "server": server})


def test_keys_come_from_the_environment() -> None:
    config = parse_config(
        {**PROVIDERS, "server": {"keys": [{"key_env": "K_A", "name": "a"},
                                          {"key_env": "K_B", "name": "b"}]}}
    )  # fmt: skip
    ring = KeyRing.from_specs(config.server.keys, {"K_A": "secret-a", "K_B": "secret-b"})
    assert ring.identify("secret-b") == ClientIdentity("b", tenant="b", user=None)
    with pytest.raises(ConfigError, match="K_B is unset"):
        KeyRing.from_specs(config.server.keys, {"K_A": "secret-a"})
    with pytest.raises(ConfigError, match="same secret"):
        KeyRing.from_specs(config.server.keys, {"K_A": "same", "K_B": "same"})


# --- request conversion ---------------------------------------------------------------------


def test_openai_body_to_request() -> None:
    call = parse_chat_request(
        {
            "model": "policy-x",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "hi"},
            ],
            "max_completion_tokens": 20,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "response_format": {"type": "json_object"},
        }
    )
    request = call.request
    assert (call.stream, call.include_usage) == (True, True)
    assert request.model == "policy-x"  # passed through: the gateway resolves it
    assert [m.role for m in request.messages] == ["system", "user"]
    assert (request.max_tokens, request.stop) == (20, ("END",))
    assert dict(request.extra) == {"response_format": {"type": "json_object"}}


def test_anthropic_body_to_request() -> None:
    call = parse_messages_request(
        {
            "model": "sim-anthropic/sim-haikuish",
            "max_tokens": 50,
            "system": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
            "stop_sequences": ["\n\n"],
            "top_k": 5,
            "metadata": {"user_id": "u-1"},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image",
                         "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                    ],
                }
            ],
        }
    )  # fmt: skip
    request = call.request
    assert call.stream is False
    assert request.system_text == "One.\n\nTwo."
    assert (request.stop, request.user, dict(request.extra)) == (("\n\n",), "u-1", {"top_k": 5})
    parts = request.messages[1].content
    assert parts[0].text == "What is this?"
    assert parts[1].type == "image_url"
    assert parts[1].data["image_url"]["url"] == "data:image/png;base64,AAA"


# --- the error table ------------------------------------------------------------------------

P = {"provider": "p", "model": "m"}


@pytest.mark.parametrize(
    ("exc", "openai_status", "openai_type", "anthropic_status", "anthropic_type"),
    [
        (InvalidRequestError("bad"), 400, "invalid_request_error", 400, "invalid_request_error"),
        (ContextLengthExceededError("long"), 400, "invalid_request_error", 400,
         "invalid_request_error"),
        (UnknownModelError("no model"), 404, "invalid_request_error", 404, "not_found_error"),
        (UnknownProviderError("no provider"), 404, "invalid_request_error", 404,
         "not_found_error"),
        (RateLimitedError("slow down", retry_after=1.2), 429, "requests", 429,
         "rate_limit_error"),
        (BudgetExceededError("spent"), 429, "insufficient_quota", 402, "billing_error"),
        (AuthenticationError("upstream key", **P), 502, "server_error", 502, "api_error"),
        (QuotaExceededError("upstream credit", **P), 502, "server_error", 502, "api_error"),
        (MissingAPIKeyError("no OPENAI_API_KEY"), 502, "server_error", 502, "api_error"),
        (ProviderServerError("boom", **P), 502, "server_error", 502, "api_error"),
        (NetworkError("reset", **P), 502, "server_error", 502, "api_error"),
        (StreamInterruptedError("cut", **P), 502, "server_error", 502, "api_error"),
        (OverloadedError("busy", **P), 503, "server_error", 529, "overloaded_error"),
        (ProviderTimeoutError("slow", **P), 504, "server_error", 504, "timeout_error"),
        (RuntimeError("bug"), 500, "server_error", 500, "api_error"),
    ],
)  # fmt: skip
def test_error_table(
    exc: BaseException,
    openai_status: int,
    openai_type: str,
    anthropic_status: int,
    anthropic_type: str,
) -> None:
    error = http_error(exc)
    status, body = openai_error(error)
    assert (status, body["error"]["type"]) == (openai_status, openai_type)
    status, body = anthropic_error(error)
    assert (status, body["error"]["type"]) == (anthropic_status, anthropic_type)


def test_all_attempts_failed_takes_the_last_attempts_status() -> None:
    exc = AllAttemptsFailedError(
        "2 attempts failed",
        errors=[ProviderServerError("boom", **P), RateLimitedError("slow", retry_after=3, **P)],
    )
    error = http_error(exc)
    assert openai_error(error)[0] == 429 and "2 attempts failed" in error.message
    assert dict(error_headers(error)) == {b"retry-after": b"3", b"retry-after-ms": b"3000"}


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    headers = dict(error_headers(http_error(RateLimitedError("x", retry_after=0.2))))
    assert headers == {b"retry-after": b"1", b"retry-after-ms": b"200"}
