"""FallbackChain: which failures move it on, in order, and which never do."""

import pytest

from aigw_lab.errors import (
    AllAttemptsFailedError,
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    NetworkError,
    OverloadedError,
    ProviderServerError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    UnknownModelError,
)
from aigw_lab.gateway.health import CircuitOpenError
from aigw_lab.policy import FallbackChain, policy_from_dict, should_fall_back
from aigw_lab.types import ChatRequest, ChatResponse, Usage

A, B, C = "p1/a", "p2/b", "p3/c"


def answer(target):
    provider, _, model = target.partition("/")
    return ChatResponse(
        text=f"from {target}",
        finish_reason="stop",
        usage=Usage(input_tokens=1, output_tokens=1),
        provider=provider,
        model=model,
    )


class Script:
    """A `send` that fails per target as scripted and records the targets it was sent to."""

    def __init__(self, **failures):
        self.failures = {k.replace("_", "/"): v for k, v in failures.items()}
        self.sent = []

    def __call__(self, target, request):
        self.sent.append(target)
        error = self.failures.get(target)
        if error is not None:
            raise error
        return answer(target)

    async def asend(self, target, request):
        return self(target, request)


REQUEST = ChatRequest.create("safe", "hi")


@pytest.mark.parametrize(
    "error",
    [
        RateLimitedError("x"),
        ProviderServerError("x"),
        OverloadedError("x"),
        NetworkError("x"),
        ProviderTimeoutError("x"),
        QuotaExceededError("x"),
        ContextLengthExceededError("x"),
        AllAttemptsFailedError("x", errors=[CircuitOpenError(A, retry_in=1.0)]),
    ],
)
def test_moves_on_after_fallback_worthy_errors(error):
    assert should_fall_back(error)
    send = Script(p1_a=error)
    response = FallbackChain("safe", [A, B, C]).call(REQUEST, send)
    assert response.text == f"from {B}"
    assert send.sent == [A, B]


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("x"),
        AuthenticationError("x"),
        ContentFilteredError("x"),
        UnknownModelError("x"),
    ],
)
def test_never_moves_on_from_a_request_that_is_itself_wrong(error):
    assert not should_fall_back(error)
    send = Script(p1_a=error)
    with pytest.raises(type(error)):
        FallbackChain("safe", [A, B]).call(REQUEST, send)
    assert send.sent == [A]


def test_every_target_failing_raises_all_attempts_failed_listing_them():
    send = Script(p1_a=RateLimitedError("x"), p2_b=ProviderServerError("y"))
    with pytest.raises(AllAttemptsFailedError) as caught:
        FallbackChain("safe", [A, B]).call(REQUEST, send)
    assert [e.error_type for e in caught.value.errors] == ["rate_limited", "server_error"]
    assert "p1/a: rate_limited; p2/b: server_error" in str(caught.value)


def test_a_single_target_chain_raises_its_own_error():
    with pytest.raises(RateLimitedError):
        FallbackChain("safe", [A]).call(REQUEST, Script(p1_a=RateLimitedError("x")))


async def test_async_chain_behaves_the_same():
    send = Script(p1_a=OverloadedError("x"))
    response = await FallbackChain("safe", [A, B]).acall(REQUEST, send.asend)
    assert response.provider == "p2" and send.sent == [A, B]


def test_chain_shape_and_round_trip():
    chain = FallbackChain("safe", [A, B, C])
    assert chain.decide(REQUEST).target == A
    assert chain.stream_targets(REQUEST) == (A, B, C)
    assert chain.targets() == (A, B, C)
    spec = chain.to_dict()
    assert spec == {"kind": "fallback", "name": "safe", "targets": [A, B, C]}
    assert policy_from_dict(spec).to_dict() == spec
