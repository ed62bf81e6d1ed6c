"""The transport's helpers (retry-after, context-overflow wording, timeouts) and the
`FakeUpstream` test server itself."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from aigw_lab import errors
from aigw_lab.providers.base import HttpClients
from aigw_lab.providers.codec import (
    ErrorDetail,
    error_for_status,
    is_context_overflow,
    parse_retry_after,
)
from aigw_lab.providers.openai import OpenAICodec
from aigw_lab.providers.transport import HttpProvider
from aigw_lab.testing.fake_upstream import FakeUpstream, split_at, split_every
from aigw_lab.types import ChatRequest

NOW = 1_750_000_000.0


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": format_datetime(datetime.fromtimestamp(NOW + 42, UTC), usegmt=True)},
         42.0),
        ({"retry-after": format_datetime(datetime.fromtimestamp(NOW - 5, UTC), usegmt=True)},
         0.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "20ms", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-tokens": "1h2m3.5s", "x-ratelimit-remaining-tokens": "512"},
         0.02),
        ({"x-ratelimit-reset-tokens": "1h2m3.5s"}, 3723.5),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf", "retry-after-ms": "nan"}, None),
        ({"x-ratelimit-reset-requests": "5 minutes"}, None),
        ({}, None),
    ],
    ids=["seconds", "fraction", "http-date", "date-in-past", "ms-wins", "reset-max",
         "exhausted-limit-wins", "duration", "garbage", "not-finite", "bad-duration", "none"],
)  # fmt: skip
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers), now=clock) == pytest.approx(seconds)


def test_rate_limit_error_carries_retry_after_in_its_hint() -> None:
    error = error_for_status(
        429,
        ErrorDetail(message="slow down"),
        provider="p",
        model="m",
        body="{}",
        headers={"retry-after": "12"},
    )
    assert isinstance(error, errors.RateLimitedError)
    assert error.retry_after == 12.0
    assert "wait 12s" in str(error) and "slow down" in str(error)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(418, errors.InvalidRequestError), (451, errors.InvalidRequestError),
     (501, errors.ProviderServerError), (520, errors.ProviderServerError)],
)  # fmt: skip
def test_unlisted_statuses_fall_back_by_class(status: int, expected: type) -> None:
    error = error_for_status(status, ErrorDetail(), provider="p", model="m", body=None)
    assert type(error) is expected
    assert "no error message" in str(error)


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 8192 tokens. However, you requested 9000",
        "prompt is too long: 210345 tokens > 200000 maximum",
        "The estimated number of input and maximum output tokens (9216) exceeded this model "
        "context window limit (8192).",
        "Input exceeds the model's context length",
        "too many tokens in the request",
    ],
)
def test_context_overflow_wordings(message: str) -> None:
    assert is_context_overflow(message)


@pytest.mark.parametrize("message", [None, "", "Invalid value for 'temperature'", "bad token"])
def test_other_messages_are_not_context_overflow(message: str | None) -> None:
    assert not is_context_overflow(message)


def test_request_timeout_overrides_provider_timeout() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    clients = HttpClients(transport=httpx.MockTransport(answer))
    provider = HttpProvider("p", OpenAICodec(), "http://upstream/v1", clients=clients,
                            timeout=30.0, connect_timeout=3.0)  # fmt: skip
    provider.chat(ChatRequest.create("m", "hi"))
    provider.chat(ChatRequest.create("m", "hi", timeout=0.5))
    clients.close()

    # The wait for a pooled connection is capped by the pool's own short timeout (issue 9:
    # it used to inherit the 30 s read timeout); a shorter request timeout still wins.
    assert seen[0].extensions["timeout"] == {"connect": 3.0, "read": 30.0, "write": 30.0,
                                             "pool": 5.0}  # fmt: skip
    assert seen[1].extensions["timeout"] == {"connect": 3.0, "read": 0.5, "write": 0.5,
                                             "pool": 0.5}  # fmt: skip


# --- the fake upstream ------------------------------------------------------------------------


def test_split_helpers() -> None:
    assert split_every(b"abcdefg", 3) == (b"abc", b"def", b"g")
    assert split_at(b"abcdefg", [5, 2, 2, 0, 99]) == (b"ab", b"cde", b"fg")
    with pytest.raises(ValueError):
        split_every(b"x", 0)


def test_fake_records_requests_and_serves_replies_in_order() -> None:
    with FakeUpstream() as fake, httpx.Client(base_url=fake.url) as client:
        fake.reply_json({"n": 1}, status=201, headers={"x-trace": "t1"})
        fake.reply_raw("plain", status=500, content_type="text/plain")

        first = client.post("/v1/a?q=1", json={"hello": "wörld"}, headers={"X-Key": "v"})
        second = client.post("/v1/b", content=b"not json")
        unscripted = client.get("/v1/c")

    assert (first.status_code, first.json(), first.headers["x-trace"]) == (201, {"n": 1}, "t1")
    assert (second.status_code, second.text) == (500, "plain")
    assert unscripted.status_code == 599 and "no reply enqueued" in unscripted.text
    a, b, c = fake.requests
    assert (a.method, a.path, a.json, a.headers["x-key"]) == ("POST", "/v1/a?q=1",
                                                              {"hello": "wörld"}, "v")  # fmt: skip
    assert b.json is None and b.body == b"not json"
    assert c.method == "GET"


def test_fake_streams_chunks_and_can_cut_the_connection() -> None:
    with FakeUpstream() as fake, httpx.Client(base_url=fake.url) as client:
        fake.reply_sse("data: 1\n\ndata: 2\n\n", chunk_size=4)
        fake.reply_sse("data: 1\n\n", abort=True)
        with client.stream("POST", "/s") as response:
            assert response.headers["content-type"] == "text/event-stream"
            assert b"".join(response.iter_raw()) == b"data: 1\n\ndata: 2\n\n"
        with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/s") as response:
            response.read()


def test_fake_delay_and_drop() -> None:
    with FakeUpstream() as fake, httpx.Client(base_url=fake.url) as client:
        fake.reply_json({}, delay=5.0)
        fake.reply_drop()
        with pytest.raises(httpx.ReadTimeout):
            client.post("/slow", timeout=0.05)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/drop")
    assert [r.path for r in fake.requests] == ["/slow", "/drop"]
