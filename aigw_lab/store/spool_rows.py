"""Unfinished rows in the spool: end frames (kind ``u``) that carry the values the gateway
hands the log's writer (`aigw_lab.store.unfinished`), so that a spooled log's rows too are
finished on the writer thread, in batches, and not on the calling thread.

A spooled log used to finish every row on the calling thread (the request's JSON, the
timestamp, `sanitize_record`) because its end frame, written before the call returns, held
the finished row. A ``u`` frame holds instead what the row is made from, in one `marshal`
call: the row's values in column order with ``request_json`` as the request's plain fields
(model, messages as ``(role, content, name, tool_call_id)``, the parameters the log stores)
and ``timestamp`` as the epoch seconds it already is, and the ``max_body_chars`` the row is
sanitised with. Replay (`aigw_lab.store.spool_replay`) rebuilds the request, encodes it with
`aigw_lab.types.ChatRequest.to_json` and sanitises the row exactly as the writer's finisher
does, so a replayed row is the row the writer would have stored (tests/store/
test_spool_unfinished.py). Only a log storing bodies in full writes ``u`` frames: under any
other body mode the policy must reach the row before anything reaches the file, so such a
log finishes rows on the calling thread and writes ``e`` frames as before.

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
    "plain_request",
    "request_json",
    "unfinished_parts",
    "unfinished_payload",
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


def unfinished_payload(values: tuple[Any, ...], max_body_chars: int, dumps: Any) -> bytes:
    """A ``u`` frame's payload for the unfinished row ``values`` (`CallLog.append_later`'s):
    ``dumps((max_body_chars, values[:request_json], plain request, values[request_json+1:]))``.
    Raises `ValueError` when the row cannot be put in one (marshal refuses a value, or the
    request is not of the common shape)."""
    return dumps(
        (
            max_body_chars,
            values[:_REQUEST_JSON],
            plain_request(values[_REQUEST_JSON]),
            values[_REQUEST_JSON + 1 :],
        ),
        2,
    )


def request_json(plain: Any) -> str:
    """The ``request_json`` text of a request stored by `plain_request`: its
    `ChatRequest.to_json`. Raises (any exception) on values a frame should not hold."""
    model, messages, temperature, top_p, max_tokens, stop, seed = plain
    request = ChatRequest(
        model=model,
        messages=tuple(
            Message(role, content, name, tool_call_id)
            for role, content, name, tool_call_id in messages
        ),
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=stop,
        seed=seed,
    )
    return request.to_json()


def unfinished_parts(payload: Any) -> tuple[str | None, tuple[Any, ...], Any, int]:
    """A decoded ``u`` payload as ``(problem, values, plain request, max_body_chars)``:
    ``values`` in column order with an empty text in ``request_json`` (the replay checks
    every column's type on them) and the timestamp still in epoch seconds; ``problem`` says
    what is wrong, or None."""
    if type(payload) is not tuple or len(payload) != 4:
        return "not an unfinished-row frame", (), None, 0
    max_body_chars, head, plain, tail = payload
    if type(max_body_chars) is not int or type(head) is not tuple or type(tail) is not tuple:
        return "not an unfinished-row frame", (), None, 0
    if len(head) != _REQUEST_JSON or len(head) + 1 + len(tail) != _COLUMNS:
        return "wrong number of fields", (), None, 0
    return None, (*head, "", *tail), plain, max_body_chars


class _Encoded:
    """A stored request as `finish_row` takes it: something whose ``to_json()`` is the
    request's JSON text (raising when the frame's values cannot make a request)."""

    __slots__ = ("plain",)

    def __init__(self, plain: Any) -> None:
        self.plain = plain

    def to_json(self) -> str:
        return request_json(self.plain)


def finish_unfinished(values: tuple[Any, ...], plain: Any, max_body_chars: int) -> tuple[Any, ...]:
    """The stored row of a checked ``u`` frame (``values`` from `unfinished_parts`, the
    timestamp still in epoch seconds): what the writer's finisher
    (`aigw_lab.store.unfinished.finish_row`, no body policy) makes of it, so a replayed row
    is the row the writer would have stored. A request that cannot be encoded again leaves
    ``request_json`` NULL, as there, rather than losing the row."""
    item = (
        (*values[:_REQUEST_JSON], _Encoded(plain), *values[_REQUEST_JSON + 1 :]),
        max_body_chars,
    )
    row, _ = finish_row(item, None)
    return tuple(row)
