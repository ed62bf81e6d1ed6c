"""Unfinished rows in the spool: end frames (kind ``u``) that carry the values the gateway
hands the log's writer (`aigw_lab.store.unfinished`), so that a spooled log's rows too are
finished on the writer thread, in batches, and not on the calling thread.

A spooled log used to finish every row on the calling thread (the request's JSON, the
timestamp, `sanitize_record`) because its end frame, written before the call returns, held
the finished row. A ``u`` frame holds instead what the row is made from, in one `marshal`
call: ``(values, max_body_chars)``, the very item the writer finishes (queued as this
frame's bytes since session 11), with the row's values
in column order, ``request_json`` as the request's plain fields (model, messages as
``(role, content, name, tool_call_id)``, the parameters the log stores: `plain_request`)
and ``timestamp`` as the epoch seconds it already is. The gateway gives a spooled log its
rows with the request already so (`aigw_lab.gateway.records.success_values_later`'s
``plain``), so the frame is the queued item as it is: no slices or second tuple on the
calling thread (session 10; session 9's frames, ``(max_body_chars, values before
request_json, plain request, values after it)``, are still read). Replay
(`aigw_lab.store.spool_replay`) and the writer encode the request's JSON from the plain
fields (`aigw_lab.store.unfinished.plain_json`, the text of `ChatRequest.to_json`) and
sanitise the row the same way, so a replayed row is the row the writer would have stored
(tests/store/test_spool_unfinished.py). Only a log storing bodies in full writes ``u``
frames: under any other body mode the policy must reach the row before anything reaches the
file, so such a log finishes rows on the calling thread and writes ``e`` frames as before.

Only the frozen common request shape (`aigw_lab.gateway.records.success_values_later`) can
be written so; anything else raises `ValueError` here and the caller writes a finished row.
"""

from __future__ import annotations

from typing import Any

from aigw_lab.store.records import CallRecord
from aigw_lab.store.unfinished import finish_row
from aigw_lab.types import ChatRequest, Message

__all__ = [
    "UNFINISHED_KIND",
    "finish_unfinished",
    "plain_item",
    "plain_request",
    "unfinished_parts",
]

#: The kind of an end frame holding an unfinished row.
UNFINISHED_KIND = b"u"

_REQUEST_JSON = CallRecord._fields.index("request_json")
_COLUMNS = len(CallRecord._fields)


def plain_request(request: Any) -> tuple[Any, ...]:
    """``request``'s fields that its stored JSON is made of, as plain values marshal writes
    in C. `ValueError` for anything but a `ChatRequest` of the common shape (text messages
    without tool calls; no tools, tool choice or extras)."""
    if (
        type(request) is not ChatRequest
        or request.tools
        or request.extra
        or request.tool_choice is not None
    ):
        raise ValueError("not a request of the common shape")
    messages = []
    for m in request.messages:
        if type(m) is not Message or type(m.content) is not str or m.tool_calls is not None:
            raise ValueError("not a message of the common shape")
        messages.append((m.role, m.content, m.name, m.tool_call_id))
    return (
        request.model,
        tuple(messages),
        request.temperature,
        request.top_p,
        request.max_tokens,
        request.stop,
        request.seed,
    )


def plain_item(values: tuple[Any, ...], max_body_chars: int) -> tuple[tuple[Any, ...], int]:
    """The unfinished row ``(values, max_body_chars)`` with its request as `plain_request`'s
    plain fields, the form a ``u`` frame holds (the gateway's recorder gives a spooled log
    its rows so already: `aigw_lab.gateway.records.success_values_later`). `ValueError` for
    a request not of the common shape."""
    request = plain_request(values[_REQUEST_JSON])
    return (*values[:_REQUEST_JSON], request, *values[_REQUEST_JSON + 1 :]), max_body_chars


def unfinished_parts(payload: Any) -> tuple[str | None, tuple[Any, ...], Any, int]:
    """A decoded ``u`` payload as ``(problem, values, plain request, max_body_chars)``:
    ``values`` in column order with an empty text in ``request_json`` (the replay checks
    every column's type on them) and the timestamp still in epoch seconds; ``problem`` says
    what is wrong, or None. Both shapes are read: ``(values, max_body_chars)`` with the plain
    request in ``values`` (written since session 10) and ``(max_body_chars, values before
    request_json, plain request, values after it)`` (session 9)."""
    if type(payload) is not tuple:
        return "not an unfinished-row frame", (), None, 0
    if len(payload) == 2:
        values, max_body_chars = payload
        if type(values) is not tuple or type(max_body_chars) is not int:
            return "not an unfinished-row frame", (), None, 0
        if len(values) != _COLUMNS:
            return "wrong number of fields", (), None, 0
        head, plain, tail = (
            values[:_REQUEST_JSON],
            values[_REQUEST_JSON],
            values[_REQUEST_JSON + 1 :],
        )
    elif len(payload) == 4:
        max_body_chars, head, plain, tail = payload
        if type(max_body_chars) is not int or type(head) is not tuple or type(tail) is not tuple:
            return "not an unfinished-row frame", (), None, 0
        if len(head) != _REQUEST_JSON or len(head) + 1 + len(tail) != _COLUMNS:
            return "wrong number of fields", (), None, 0
    else:
        return "not an unfinished-row frame", (), None, 0
    return None, (*head, "", *tail), plain, max_body_chars


def finish_unfinished(values: tuple[Any, ...], plain: Any, max_body_chars: int) -> tuple[Any, ...]:
    """The stored row of a checked ``u`` frame (``values`` from `unfinished_parts`, the
    timestamp still in epoch seconds): what the writer's finisher
    (`aigw_lab.store.unfinished.finish_row`, no body policy) makes of it, so a replayed row
    is the row the writer would have stored. A request that cannot be encoded again leaves
    ``request_json`` NULL, as there, rather than losing the row."""
    # The plain request goes in as a tuple, as the writer gets it; anything else a file
    # holds there is wrapped so that it is refused the same way (request_json NULL).
    request = plain if type(plain) is tuple else _Refused(plain)
    item = ((*values[:_REQUEST_JSON], request, *values[_REQUEST_JSON + 1 :]), max_body_chars)
    row, _ = finish_row(item, None)
    return tuple(row)


class _Refused:
    """A frame's request that is no plain tuple: ``to_json()`` raises, as `finish_row`
    expects of a request it cannot encode."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def to_json(self) -> str:
        raise TypeError(f"a spooled request of type {type(self.value).__name__}")
