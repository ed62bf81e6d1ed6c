"""Pieces both caches (exact and semantic) share: the per-request cache options, what of an
answer is stored, and replaying a stored answer as a stream (which the gateway's drivers do
for any `Serve`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from aigw_lab.errors import InvalidRequestError
from aigw_lab.types import ChatResponse, StreamEnd, StreamEvent, TextDelta

__all__ = ["read_cache_options", "replay_as_stream", "stored_answer"]

_OPTION_NAMES = frozenset(("skip", "ttl", "key"))
_SAME: Any = object()  # `stored_answer`: keep the answer's own tool calls
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


def stored_answer(response: ChatResponse, tool_calls: Any = _SAME) -> ChatResponse:
    """What a cache keeps of ``response``: only what a hit needs (no raw payload, latency or
    call id of the original call). ``tool_calls``: a replacement (a store's own copy)."""
    return ChatResponse(
        text=response.text,
        finish_reason=response.finish_reason,
        usage=response.usage,
        provider=response.provider,
        model=response.model,
        cost_usd=response.cost_usd,
        response_id=response.response_id,
        tool_calls=response.tool_calls if tool_calls is _SAME else tool_calls,
        simulated=response.simulated,
    )
