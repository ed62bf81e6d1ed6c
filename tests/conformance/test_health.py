"""A retry stack's health tracker counts what docs/reliability.md says, in every mode: an
answer is a success, a provider-side failure counts against its target (a stream's too,
after text was delivered), and a call the caller cancelled or abandoned never counts."""

from __future__ import annotations

import pytest

from .conftest import modes, stacks
from .doubles import Step, server_error
from .modes import Mode
from .stacks import Stack

RETRYING = stacks("retry", "full")


def totals(stack: Stack) -> tuple[int, int]:
    """(successes, failures) over every target the tracker knows."""
    assert stack.retry is not None and stack.retry.health is not None
    circuits = stack.retry.health.snapshot().values()
    return (
        sum(c["total_successes"] for c in circuits),
        sum(c["total_failures"] for c in circuits),
    )


@pytest.mark.parametrize("stack_name", RETRYING)
def test_an_answer_counts_as_one_success(mode: Mode, stack: Stack) -> None:
    assert mode.call(stack.gateway, stack.address).error is None
    assert totals(stack) == (1, 0)


@pytest.mark.parametrize("stack_name", RETRYING)
def test_each_failed_attempt_counts_against_its_target(mode: Mode, stack: Stack) -> None:
    stack.upstream.default = Step(fail=server_error)
    assert mode.call(stack.gateway, stack.address).error is not None
    assert totals(stack) == (0, len(stack.upstream.requests))


@pytest.mark.parametrize("stack_name", RETRYING)
def test_a_cancelled_call_never_counts(mode: Mode, stack: Stack) -> None:
    assert mode.cancel(stack.gateway, stack.upstream, stack.address).error is not None
    assert totals(stack) == (0, 0)
    assert len(stack.upstream.requests) == 1  # and it was not retried


@pytest.mark.parametrize("mode", modes("stream", "astream"), ids=str)
@pytest.mark.parametrize("stack_name", RETRYING)
def test_an_abandoned_stream_never_counts(mode: Mode, stack: Stack) -> None:
    mode.abandon(stack.gateway, stack.address)
    assert totals(stack) == (0, 0)
    assert len(stack.upstream.requests) == 1


@pytest.mark.parametrize("mode", modes("stream", "astream"), ids=str)
@pytest.mark.parametrize("stack_name", RETRYING)
def test_a_stream_failing_after_text_still_counts_against_its_target(
    mode: Mode, stack: Stack
) -> None:
    stack.upstream.script(Step(fail_after=1))
    assert mode.call(stack.gateway, stack.address).error is not None
    assert totals(stack) == (0, 1)
