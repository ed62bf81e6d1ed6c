"""One row of the ``calls`` table: what the gateway hands to the log writer.

Every attempt of every call is one `CallRecord`: successes, errors, each retry, cache hits.
Attempts of one logical call share a ``trace_id``; ``call_id`` is unique per row.

Column names follow the OpenTelemetry GenAI semantic conventions where one exists, with the
``gen_ai.`` prefix dropped and dots turned into underscores (``gen_ai.usage.input_tokens``
becomes ``input_tokens``, ``gen_ai.provider.name`` becomes ``provider_name``); the full
mapping is in ``docs/call_log.md``.
"""

from __future__ import annotations

from datetime import datetime
from types import FunctionType
from typing import Any, NamedTuple

__all__ = ["CallRecord", "CALL_COLUMNS"]


class CallRecord(NamedTuple):
    """A call-log row. JSON-valued fields hold JSON text, already serialised.

    A named tuple, not a dataclass: no per-row ``__dict__``, and the writer reads columns by
    index. (Rows are still tracked by the garbage collector: CPython untracks only exact
    tuples, not their subclasses; checked with ``gc.is_tracked`` on 2026-12-06.)

    Built by keyword only (``CallRecord(call_id=..., trace_id=..., ...)``): most neighbouring
    columns share a type, so a positional row would store values in the wrong columns
    without an error. ``CallRecord._make(values)`` builds one from values already in
    `CALL_COLUMNS` order (a row read back from storage).
    """

    call_id: str
    trace_id: str
    timestamp: datetime
    provider_name: str
    request_model: str
    operation_name: str = "chat"
    response_model: str | None = None
    response_id: str | None = None
    api_format: str | None = None
    request_json: str | None = None
    response_text: str | None = None
    finish_reason: str | None = None
    tool_calls_json: str | None = None
    status: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    http_status_code: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttfb_ms: float | None = None
    ttft_ms: float | None = None
    upstream_ms: float | None = None
    overhead_ms: float | None = None
    stream: bool = False
    cache_status: str = "none"
    cache_similarity: float | None = None
    attempt: int = 1
    fallback_from: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    experiment_id: str | None = None
    tags_json: str | None = None
    metadata_json: str | None = None
    simulated: bool = False
    # Experiment coordinates (schema migration 5), from the request's
    # metadata["aigw_experiment"]; NULL for calls made outside an experiment.
    run_id: str | None = None
    item_id: str | None = None
    target: str | None = None
    repetition: int | None = None
    # What was done to make the row storable (schema migration 6): ``invalid_text``,
    # ``truncated_request``, ... (see `aigw_lab.store.sanitize`); None when nothing was.
    flags: tuple[str, ...] | None = None
    # What the row keeps of its bodies (schema migration 7): "full", "redacted", "hash" or
    # "none" ([log] bodies; see aigw_lab.store.redact).
    bodies: str = "full"
    # What the row counts against budgets (schema migration 8): its cost, or the estimate
    # the call was admitted with when its usage is unknown; None when no budget estimated it.
    budget_usd: float | None = None
    # How the target was chosen (schema migration 9): the routing policy's name, the
    # probability it chose this target with (1.0 when deterministic), and for a shadow call
    # the call_id of the live call it duplicated. NULL when no policy chose / a live call.
    route_policy: str | None = None
    propensity: float | None = None
    shadow_of: str | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickle and copy would call the keyword-only constructor positionally.
        return (CallRecord._make, (tuple(self),))


def _keyword_only_new(cls: type[tuple[Any, ...]]) -> staticmethod[..., Any]:
    """``cls.__new__`` with every field keyword-only: the named tuple's own generated code
    with its arguments moved behind the ``*``, so a row costs what it cost before."""
    new = cls.__new__
    code = new.__code__
    func = FunctionType(
        code.replace(
            co_argcount=1,
            co_kwonlyargcount=code.co_argcount - 1,
            co_name="__new__",
            co_qualname=f"{cls.__name__}.__new__",
        ),
        new.__globals__,
        "__new__",
    )
    func.__kwdefaults__ = dict(cls._field_defaults)  # type: ignore[attr-defined]
    func.__doc__ = f"Create a new {cls.__name__}; every field by keyword."
    return staticmethod(func)


CallRecord.__new__ = _keyword_only_new(CallRecord)  # type: ignore[method-assign]

#: Column names of the ``calls`` table, in `CallRecord` field order.
CALL_COLUMNS: tuple[str, ...] = CallRecord._fields
