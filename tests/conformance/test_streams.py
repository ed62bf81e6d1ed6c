"""Streams: one the caller abandons is closed upstream and logged ``cancelled`` at once
(before any garbage collection); a retry never repeats text the caller already has; a
cache hit replays in the caller's mode (a stream hit: text events, then the end)."""

from __future__ import annotations

import pytest

from aigw_lab.errors import AigwError

from .conftest import modes, stacks
from .doubles import Step
from .modes import Mode, Seen
from .stacks import Stack

STREAMS = modes("stream", "astream")
CACHES = ("exact-cache", "semantic-cache-hashing", "semantic-cache-minilm", "full")
FULL_TEXT = "alpha beta gamma delta"


def abandon_and_look(mode: Mode, stack: Stack) -> tuple[Seen, list[dict], list[str]]:
    """Abandon a stream after its first text; the log rows and the upstream's stream endings
    as they were when the close returned (stream still referenced, no GC, loop running)."""
    seen = mode.abandon(
        stack.gateway,
        stack.address,
        check=lambda: (stack.rows(), list(stack.upstream.stream_ends)),
    )
    rows, ends = seen.checked
    return seen, rows, ends


@pytest.mark.parametrize("mode", STREAMS, ids=str)
def test_an_abandoned_stream_is_logged_cancelled_at_once(mode: Mode, stack: Stack) -> None:
    seen, rows, _ = abandon_and_look(mode, stack)
    if stack.name == "route-cascade":
        # docs/routing.md, "Streaming": a cascade runs its steps unstreamed and replays the
        # accepted answer as one text delta: its rows are complete before the caller reads.
        assert seen.pieces == [FULL_TEXT]
        assert [r["status"] for r in rows] == ["ok", "ok"]
        return
    assert seen.pieces == ["alpha "]
    (row,) = rows
    assert (row["status"], row["response_text"], row["attempt"]) == ("cancelled", "alpha ", 1)


@pytest.mark.parametrize("mode", STREAMS, ids=str)
def test_an_abandoned_stream_is_closed_upstream_at_once(
    mode: Mode, stack: Stack, request: pytest.FixtureRequest
) -> None:
    seen, _, ends = abandon_and_look(mode, stack)
    if stack.name == "route-cascade":
        # Both steps' streams ran to their end before the replay: none may be left open.
        assert ends == ["end", "end"]
        return
    assert ends == ["closed"]


@pytest.mark.parametrize("mode", STREAMS, ids=str)
@pytest.mark.parametrize("stack_name", stacks(*CACHES))
def test_an_abandoned_stream_is_not_replayed_later(mode: Mode, stack: Stack) -> None:
    mode.abandon(stack.gateway, stack.address)
    again = mode.call(stack.gateway, stack.address)
    assert again.text == FULL_TEXT
    assert len(stack.upstream.requests) == 2  # the cut answer was not stored
    assert stack.rows()[-1]["cache_status"] == "miss"


def test_a_retry_never_repeats_text_already_delivered(mode: Mode, stack: Stack) -> None:
    """The upstream sends one piece, then fails: a stream caller already has that piece, so
    the error must reach it (no retry, no fallback); a plain call has nothing yet, so a
    retry stack may answer it in full."""
    stack.upstream.script(Step(fail_after=1))
    seen = mode.call(stack.gateway, stack.address)
    if seen.error is None:
        assert seen.text == FULL_TEXT  # answered once, whole: nothing repeated
        assert not mode.streams or stack.name == "route-cascade"
        return
    assert isinstance(seen.error, AigwError)
    assert len(stack.upstream.requests) == 1  # the failure was not retried
    (row,) = stack.rows()
    assert row["status"] == "error"
    if mode.streams and stack.name != "route-cascade":
        assert seen.pieces == ["alpha "]
        assert row["response_text"] == "alpha "
    else:  # a plain call, or a cascade's unstreamed step: the caller got nothing
        assert seen.pieces == [] and stack.retry is None


def test_before_any_text_a_stream_failure_is_retried_by_a_retry_stack(
    mode: Mode, stack: Stack
) -> None:
    """The other side of the rule: a failure before any text reached the caller is
    retried (or falls back) when the stack retries, invisibly to the caller."""
    stack.upstream.script(Step(fail_after=0))
    seen = mode.call(stack.gateway, stack.address)
    if stack.retry is not None:
        assert seen.error is None and seen.text == FULL_TEXT
        assert len(stack.upstream.requests) == 2
    else:
        assert isinstance(seen.error, AigwError) and seen.pieces == []


@pytest.mark.parametrize("stack_name", stacks(*CACHES))
def test_a_cache_hit_replays_in_the_callers_mode(mode: Mode, stack: Stack) -> None:
    first = mode.call(stack.gateway, stack.address)
    second = mode.call(stack.gateway, stack.address)
    assert first.error is None and second.error is None
    assert second.text == first.text == FULL_TEXT
    assert second.response is not None  # a stream hit ends with its StreamEnd
    assert second.response.cache_status == "hit"
    assert second.response.text == FULL_TEXT
    assert len(second.pieces) >= 1
    assert len(stack.upstream.requests) == 1


@pytest.mark.parametrize("stack_name", stacks(*CACHES))
def test_an_answer_cached_by_a_plain_call_replays_in_every_mode(mode: Mode, stack: Stack) -> None:
    stack.gateway.chat(stack.address, "Say four words please")
    seen = mode.call(stack.gateway, stack.address)
    assert seen.error is None and seen.text == FULL_TEXT
    assert seen.response is not None and seen.response.cache_status == "hit"
    assert len(stack.upstream.requests) == 1
