"""Rows the log's writer thread finishes: the calling thread's share of logging made smaller.

A paced call runs cache-cold, so every instruction on the thread that makes the call costs
several times what it costs in a loop (docs/performance.md, "The call log at real call
rates"). For a log with no other sink (see below for a spooled one), the gateway hands
the log a row's values with the two costliest columns left unfinished
(`aigw_lab.gateway.records.success_values_later`): ``timestamp`` as epoch seconds and
``request_json`` as the frozen request itself. The writer finishes a batch of
them in one pass before converting it: the request's JSON, the timestamp, `sanitize_record`
and the log's body policy, in the order `CallLog.append` applies them to a finished row, so
the stored row is the same byte for byte (tests/store/test_unfinished_rows.py).

A log with a spool takes them too when it stores bodies in full: its end frame, written on
the calling thread before the call returns, then holds the unfinished row (`aigw_lab.store.
spool_rows`), and replay finishes it with `finish_row`. The gateway gives such a log the
request as its plain fields (a tuple `marshal` writes), which `plain_json` encodes here.
Under another body mode the policy must reach the row before the spool file does, so such a
log finishes rows at once.
"""

from __future__ import annotations

import marshal
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aigw_lab.request_json import plain_fields_json
from aigw_lab.store.records import CallRecord
from aigw_lab.store.sanitize import sanitize_record
from aigw_lab.types import ChatRequest, Message

if TYPE_CHECKING:
    from aigw_lab.store.redact import BodyPolicy

__all__ = ["Unfinished", "finish_batch", "finish_row", "is_unfinished", "plain_json"]

#: An unfinished row as the writer queues it: ``(values, max_body_chars)``, where ``values``
#: are a `CallRecord`'s in column order, except ``timestamp`` (epoch seconds) and
#: ``request_json``: an object whose ``to_json()`` gives the column's text (the frozen
#: request), or, from a spooled log, the request's plain fields as a tuple (`plain_json`).
#: A plain tuple, which no `CallRecord` is, so the writer tells the two apart with one type
#: check. A spooled log queues the same tuple as its ``u`` end frame's `marshal` bytes, which
#: `finish_batch` decodes (~1 µs a row on the writer thread): bytes are no container, so a
#: row waiting out the batch age leaves nothing in the collector's older generations, where
#: its tuples used to pile up and bring full collections on the calling threads sooner
#: (docs/performance.md, "The log at 100 calls/s, session 11").
Unfinished = tuple[tuple[Any, ...], int] | bytes

_TIMESTAMP = CallRecord._fields.index("timestamp")
_REQUEST_JSON = CallRecord._fields.index("request_json")
_new_row = tuple.__new__
_from_timestamp = datetime.fromtimestamp
_loads = marshal.loads


def is_unfinished(item: object) -> bool:
    """True for an `Unfinished` row (a plain tuple, or its bytes), False for a `CallRecord`."""
    return type(item) is tuple or type(item) is bytes


def finish_row(item: Unfinished, bodies: BodyPolicy | None) -> tuple[CallRecord, str | None]:
    """The stored row of ``item``: what `sanitize_record` and then ``bodies`` make of the
    row the calling thread would have built. Also a problem to report, or None: a request
    whose JSON cannot be made leaves ``request_json`` NULL rather than losing the row (the
    call may have been paid for)."""
    values, max_body_chars = item
    problem = None
    request = values[_REQUEST_JSON]
    try:
        request_json = plain_json(request) if type(request) is tuple else request.to_json()
    except Exception as exc:  # noqa: BLE001 - the row (its cost, its usage) is kept
        request_json = None
        problem = f"a row's request_json could not be made: {type(exc).__name__}"
    finished = list(values)
    finished[_TIMESTAMP] = _from_timestamp(values[_TIMESTAMP], UTC)
    finished[_REQUEST_JSON] = request_json
    row = _new_row(CallRecord, finished)
    try:
        row = sanitize_record(row, max_body_chars=max_body_chars)
        if bodies is not None:
            row = bodies.apply(row)
    except Exception as exc:  # noqa: BLE001 - on the writer thread a raise would stop the log
        # The paid call keeps its row (cost, usage, ids); its bodies are dropped rather
        # than stored unsanitised or unredacted.
        row = row._replace(
            request_json=None,
            response_text=None,
            tool_calls_json=None,
            error_message=None,
            bodies="none",
        )
        problem = (
            f"a row's bodies could not be made storable and were dropped: {type(exc).__name__}"
        )
    return row, problem


def finish_batch(batch: list[Any], bodies: BodyPolicy | None) -> list[str]:
    """Finish the `Unfinished` rows of ``batch`` in place (its `CallRecord` rows are left
    as they are, and the order kept); the problems met, if any (see `finish_row`). A row
    queued as bytes is the `marshal` payload this process wrote to its spool (never a
    file's: replay checks those, `aigw_lab.store.spool_rows`)."""
    problems: list[str] = []
    for index, item in enumerate(batch):
        kind = type(item)
        if kind is tuple or kind is bytes:
            if kind is bytes:
                item = _loads(item)
            batch[index], problem = finish_row(item, bodies)
            if problem is not None:
                problems.append(problem)
    return problems


def plain_json(plain: Any) -> str:
    """The ``request_json`` text of a request held as its plain fields (``(model, messages
    as (role, content, name, tool_call_id), temperature, top_p, max_tokens, stop, seed)``:
    `aigw_lab.store.spool_rows.plain_request`): its `ChatRequest.to_json`. Raises (any
    exception) on values no request is made of, as a frame read from a file may hold."""
    text = plain_fields_json(plain)
    if text is not None:
        return text
    model, messages, temperature, top_p, max_tokens, stop, seed = plain
    return ChatRequest(
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
    ).to_json()
