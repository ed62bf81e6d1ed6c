"""Reservations are settled whatever the outcome: a budget holds nothing back after a call
answered, failed, was cancelled or abandoned, and what it spent is the sum of the rows'
``budget_usd``; a rate limiter is charged what docs/rate_limits.md's table says."""

from __future__ import annotations

import pytest

from aigw_lab.gateway.ratelimit import CHARS_PER_TOKEN

from .checks import check_budget_settled
from .conftest import modes, stacks
from .doubles import INPUT_TOKENS, OUTPUT_TOKENS, Step, server_error
from .modes import PROMPT, Mode, Seen
from .stacks import REQUESTS_CAPACITY, TOKENS_CAPACITY, Stack

BUDGETED = ("budget", "full")
LIMITED = ("ratelimit-wait", "ratelimit-reject", "full")
OUTCOMES = ("answered", "failed", "cancelled")
STREAMS = modes("stream", "astream")


def run(outcome: str, mode: Mode, stack: Stack) -> Seen:
    if outcome == "answered":
        seen = mode.call(stack.gateway, stack.address)
        assert seen.error is None, seen.error
    elif outcome == "failed":
        stack.upstream.default = Step(fail=server_error)
        seen = mode.call(stack.gateway, stack.address)
        assert seen.error is not None
    elif outcome == "cancelled":
        seen = mode.cancel(stack.gateway, stack.upstream, stack.address)
        assert seen.error is not None
    else:
        seen = mode.abandon(stack.gateway, stack.address)
        assert seen.pieces
    return seen


# --- budgets --------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("stack_name", stacks(*BUDGETED))
def test_a_budget_holds_nothing_back_after_the_call(mode: Mode, stack: Stack, outcome: str) -> None:
    seen = run(outcome, mode, stack)
    spent = check_budget_settled(stack)
    if outcome == "answered":
        assert seen.response is not None and seen.response.cost_usd
        assert spent == pytest.approx(seen.response.cost_usd)
    else:  # nothing was answered: nothing is spent
        assert spent == 0.0


@pytest.mark.parametrize("mode", STREAMS, ids=str)
@pytest.mark.parametrize("stack_name", stacks(*BUDGETED))
def test_a_budget_charges_an_abandoned_stream_its_estimate_at_once(
    mode: Mode, stack: Stack
) -> None:
    seen = mode.abandon(stack.gateway, stack.address, check=lambda: check_budget_settled(stack))
    spent = seen.checked  # as it was when the close returned
    assert spent > 0.0  # the upstream began answering: a paid call of unknown usage
    (row,) = stack.rows()
    assert row["status"] == "cancelled" and row["budget_usd"] == pytest.approx(spent)


@pytest.mark.parametrize("stack_name", stacks(*BUDGETED))
def test_a_budget_refusal_and_a_cache_hit_spend_nothing(mode: Mode, stack: Stack) -> None:
    refused = mode.call(stack.gateway, stack.address, max_tokens=100_000)
    assert refused.error is not None and refused.error.error_type == "budget_exceeded"
    assert check_budget_settled(stack) == 0.0
    first = mode.call(stack.gateway, stack.address)
    spent = check_budget_settled(stack)
    second = mode.call(stack.gateway, stack.address)
    assert first.error is None and second.error is None
    hit = stack.cache is not None
    assert check_budget_settled(stack) == pytest.approx(spent if hit else 2 * spent)


# --- rate limits ----------------------------------------------------------------------------


def expected_buckets(stack: Stack, outcome: str, seen: Seen) -> dict[str, float]:
    """docs/rate_limits.md, "After the call the buckets are charged what it really used"."""
    sent = len(stack.upstream.requests)  # one request per attempt sent
    if outcome == "answered":
        assert seen.response is not None
        tokens = seen.response.usage.total_tokens
    elif outcome == "abandoned":  # cut short: the prompt's estimate plus the text delivered
        delivered = len("".join(seen.pieces))
        tokens = -(-len(PROMPT) // CHARS_PER_TOKEN) + -(-delivered // CHARS_PER_TOKEN)
    else:  # failed or cancelled in flight: the token estimate comes back
        tokens = 0
    return {
        "requests_per_minute": REQUESTS_CAPACITY - sent,
        "tokens_per_minute": TOKENS_CAPACITY - tokens,
    }


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("stack_name", stacks(*LIMITED))
def test_a_rate_limiter_is_charged_what_the_call_used(
    mode: Mode, stack: Stack, outcome: str
) -> None:
    seen = run(outcome, mode, stack)
    assert stack.buckets() == pytest.approx(expected_buckets(stack, outcome, seen))
    assert stack.limiter is not None and stack.limiter.snapshot()["waiting"] == 0
    if outcome == "answered":  # the answer's usage, not the estimate
        assert seen.response is not None
        assert seen.response.usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS


@pytest.mark.parametrize("mode", STREAMS, ids=str)
@pytest.mark.parametrize("stack_name", stacks(*LIMITED))
def test_a_rate_limiter_charges_an_abandoned_stream_its_prompt_and_delivered_text(
    mode: Mode, stack: Stack
) -> None:
    seen = mode.abandon(stack.gateway, stack.address, check=stack.buckets)
    assert seen.checked == pytest.approx(expected_buckets(stack, "abandoned", seen))


@pytest.mark.parametrize("stack_name", stacks(*LIMITED))
def test_a_rate_limit_refusal_and_a_cache_hit_take_no_capacity(mode: Mode, stack: Stack) -> None:
    refused = mode.call(stack.gateway, stack.address, max_tokens=TOKENS_CAPACITY + 1)
    assert refused.error is not None
    if stack.budget is None:  # the full stack's budget refuses it first
        assert refused.error.error_type == "rate_limited"
    assert stack.buckets() in ({}, {"requests_per_minute": 1000, "tokens_per_minute": 100_000})
    first = mode.call(stack.gateway, stack.address)
    after_first = stack.buckets()
    second = mode.call(stack.gateway, stack.address)
    assert first.error is None and second.error is None
    if stack.cache is not None:
        assert stack.buckets() == after_first
    else:
        assert stack.buckets()["requests_per_minute"] == REQUESTS_CAPACITY - 2
