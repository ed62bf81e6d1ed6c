"""Pieces both caches (exact and semantic) share: the per-request cache options, replaying a
stored answer as a stream, and passing a live stream through while keeping its final answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from aigw_lab.errors import InvalidRequestError
from aigw_lab.types import ChatResponse, StreamEnd, StreamEvent, TextDelta

__all__ = [
    "read_cache_options",
    "replay_as_stream",
    "store_after_stream",
    "astore_after_stream",
]

_OPTION_NAMES = frozenset(("skip", "ttl", "key"))
# Word-sized pieces that join back to exactly the text, spacing kept.
_WORDS = re.compile(r"\s*\S+\s*|\s+")


def read_cache_options(options: Any) -> tuple[bool, float | None, str | None]:
    """Validate ``metadata["cache"]``: ``{"skip": bool, "ttl": seconds, "key": str}``."""
    if not isinstance(options, Mapping):
        raise InvalidRequestError(
            f'metadata["cache"] is a {type(options).__name__}, not a table of cache options',
            hint='pass e.g. {"skip": True}, {"ttl": 60} or {"key": "faq-42"}',
        )
    for name in options:
        if name not in _OPTION_NAMES:
            raise InvalidRequestError(
                f'unknown cache option {name!r} in metadata["cache"]',
                hint="the options are skip, ttl and key",
            )
    skip = options.get("skip", False)
    if not isinstance(skip, bool):
        raise InvalidRequestError(
            f'metadata["cache"]["skip"] is {skip!r}', hint="use True or False"
        )
    ttl = options.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0
    ):
        raise InvalidRequestError(
            f'metadata["cache"]["ttl"] is {ttl!r}', hint="use a number of seconds > 0"
        )
    key = options.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise InvalidRequestError(
            f'metadata["cache"]["key"] is {key!r}', hint="use a non-empty string"
        )
    return skip, ttl, key


def replay_as_stream(served: ChatResponse) -> Iterator[StreamEvent]:
    """A served answer as a stream: its text a word at a time, then the end."""
    for match in _WORDS.finditer(served.text):
        yield TextDelta(match.group())
    yield StreamEnd(served)


def store_after_stream(
    events: Iterator[StreamEvent], remember: Callable[[ChatResponse], Any]
) -> Iterator[StreamEvent]:
    """Pass ``events`` through, handing the final answer to ``remember``; closing this stream
    closes ``events`` at once, so an abandoned attempt stops (and is logged) now."""
    try:
        for event in events:
            if isinstance(event, StreamEnd):
                remember(event.response)
            yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


async def astore_after_stream(
    events: AsyncIterator[StreamEvent], remember: Callable[[ChatResponse], Any]
) -> AsyncIterator[StreamEvent]:
    """`store_after_stream` for async streams."""
    try:
        async for event in events:
            if isinstance(event, StreamEnd):
                remember(event.response)
            yield event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
