"""Every call is in the log: exactly one row per attempt the upstream saw, at least one row
per call the caller made (refused calls and cache hits included), with the right status."""

from __future__ import annotations

from typing import Any

import pytest

from aigw_lab.errors import AigwError

from .checks import check_one_row_per_attempt
from .conftest import gap, stacks
from .doubles import Step, server_error
from .modes import Mode
from .stacks import Stack

CACHES = ("exact-cache", "semantic-cache-hashing", "semantic-cache-minilm", "full")


def test_an_answered_call_has_one_ok_row_per_attempt(mode: Mode, stack: Stack) -> None:
    seen = mode.call(stack.gateway, stack.address)
    assert seen.error is None
    assert seen.text == "alpha beta gamma delta"
    (trace,) = check_one_row_per_attempt(stack, calls=1).values()
    assert trace[-1]["status"] == "ok"
    assert all(r["stream"] == mode.streams for r in trace)
    # A cascade's first step answers too, and is escalated: both rows are answers.
    assert {r["status"] for r in trace} == {"ok"}
    expected_attempts = 2 if stack.name == "route-cascade" else 1
    assert len(trace) == expected_attempts
    assert seen.response is not None and seen.response.trace_id == trace[0]["trace_id"]


def test_a_failed_call_has_one_error_row_per_attempt(mode: Mode, stack: Stack) -> None:
    stack.upstream.default = Step(fail=server_error)
    seen = mode.call(stack.gateway, stack.address)
    assert isinstance(seen.error, AigwError)
    (trace,) = check_one_row_per_attempt(stack, calls=1).values()
    assert {r["status"] for r in trace} == {"error"}
    # A retry stack tries the target twice, then its fallback twice.
    retries = stack.retry is not None and stack.address in ("up/m",)
    assert len(trace) == (4 if retries else len(stack.upstream.requests))
    assert len(stack.upstream.requests) >= 1


def refusing_params(stack: Stack) -> tuple[str, dict[str, Any], str]:
    """A call this stack refuses before sending anything, and the row's error type: the
    budget's refusal, the rate limiter's, else an unknown provider (refused at addressing)."""
    if stack.budget is not None:
        return stack.address, {"max_tokens": 100_000}, "budget_exceeded"  # ~$200 > $100
    if stack.limiter is not None:
        return stack.address, {"max_tokens": 200_000}, "rate_limited"  # over the bucket
    return "nope/m", {}, "unknown_provider"


def test_a_refused_call_has_one_error_row_with_attempt_zero(mode: Mode, stack: Stack) -> None:
    address, params, error_type = refusing_params(stack)
    seen = mode.call(stack.gateway, address, **params)
    assert isinstance(seen.error, AigwError)
    assert stack.upstream.requests == []
    (trace,) = check_one_row_per_attempt(stack, calls=1).values()
    assert [(r["attempt"], r["status"], r["error_type"]) for r in trace] == [
        (0, "error", error_type)
    ]


@pytest.mark.parametrize("stack_name", stacks(*CACHES))
def test_a_cache_hit_has_one_ok_hit_row_and_sends_nothing(mode: Mode, stack: Stack) -> None:
    first = mode.call(stack.gateway, stack.address)
    sent = len(stack.upstream.requests)
    second = mode.call(stack.gateway, stack.address)
    assert first.error is None and second.error is None
    assert len(stack.upstream.requests) == sent
    traces = check_one_row_per_attempt(stack, calls=2)
    assert second.response is not None
    hit = traces[second.response.trace_id]
    assert [(r["attempt"], r["status"], r["cache_status"]) for r in hit] == [(0, "ok", "hit")]


def test_a_cancelled_call_has_its_rows_and_the_last_is_cancelled(
    mode: Mode, stack: Stack, request: pytest.FixtureRequest
) -> None:
    gap(request, mode, stack, {})
    seen = mode.cancel(stack.gateway, stack.upstream, stack.address)
    assert seen.error is not None and not isinstance(seen.error, Exception), seen.error
    (trace,) = check_one_row_per_attempt(stack, calls=1).values()
    assert trace[-1]["status"] == "cancelled"
    assert len(trace) == 1


@pytest.mark.filterwarnings("ignore::aigw_lab.pricing.UnknownPriceWarning")
@pytest.mark.parametrize("stack_name", stacks("none", "retry", "full"))
def test_an_unknown_model_of_a_known_provider_is_refused_with_attempt_zero(
    mode: Mode, stack: Stack, request: pytest.FixtureRequest
) -> None:
    seen = mode.call(stack.gateway, "up/no-such-model")
    assert isinstance(seen.error, AigwError)
    assert stack.upstream.requests == []
    (trace,) = check_one_row_per_attempt(stack, calls=1).values()
    assert [(r["attempt"], r["error_type"]) for r in trace] == [(0, "unknown_model")]
