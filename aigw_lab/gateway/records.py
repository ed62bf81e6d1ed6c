"""Building call-log rows (`CallRecord`) from what the gateway saw: a completed attempt, a
failed or cancelled one, or a call refused before it had a target."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from aigw_lab.errors import AigwError, StreamInterruptedError
from aigw_lab.gateway.budget_limits import charged_usd
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.store.records import CallRecord
from aigw_lab.types import LOG_JSON as _JSON
from aigw_lab.types import ChatRequest, ChatResponse, Message

# The C core of `_JSON` (the log's one encoder, shared with `ChatRequest.create`'s check),
# made once: `JSONEncoder.encode` builds a new one per call (with a dict of the containers
# seen, for cycles). Without that dict it is reusable from any thread; a cyclic value then
# fails with RecursionError, and `to_json` asks `_JSON` again, which raises what it always
# raised.
_C_ENCODER = json.encoder.c_make_encoder
_ENCODE_C = (
    None
    if _C_ENCODER is None
    else _C_ENCODER(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)
)
# A row from values already in column order, without the keyword-only constructor.
_new_row = tuple.__new__
_from_timestamp = datetime.fromtimestamp
_NO_LABELS = (None, None)  # a request without tags or metadata
# A message's plain fields as a tuple, in C (a comprehension is a Python call in 3.11).
_plain_message = attrgetter("role", "content", "name", "tool_call_id")

__all__ = [
    "EXPERIMENT_KEY",
    "budget_charge",
    "experiment_coordinates",
    "failure_record",
    "is_cancellation",
    "rejected_record",
    "success_record",
    "success_values",
    "success_values_later",
]

#: Error messages are kept to this many characters in the log.
MAX_ERROR_CHARS = 2000


def success_record(
    ctx: CallContext, response: ChatResponse, *, api_format: str | None
) -> CallRecord:
    """The row of an attempt that returned ``response`` (already priced and timed)."""
    return _new_row(CallRecord, success_values(ctx, response, api_format, False))


def success_values_later(
    ctx: CallContext, response: ChatResponse, *, api_format: str | None, plain: bool = False
) -> tuple[Any, ...] | None:
    """`success_values` with ``later`` set (see there): the values the log's writer thread
    finishes, or None when the row must be built now."""
    return success_values(ctx, response, api_format, True, plain)


def success_values(
    ctx: CallContext,
    response: ChatResponse,
    api_format: str | None,
    later: bool,
    plain: bool = False,
) -> tuple[Any, ...] | None:
    """`success_record`'s values in column order. With ``later``, the two columns that cost
    the most to make are left for the log's writer thread (`aigw_lab.store.unfinished`):
    ``timestamp`` as epoch seconds and ``request_json`` as the `ChatRequest` itself, or with
    ``plain`` as its plain fields (``(model, messages as (role, content, name,
    tool_call_id), temperature, top_p, max_tokens, stop, seed)``: what a spooled log's end
    frame holds, `marshal` writing them in C; `aigw_lab.store.spool_rows`); and None is
    returned when the request could still change after the call returns (anything but the
    frozen common shape: text messages in a tuple, plain parameters, no tools, tool choice
    or extras, experiment coordinates of plain values): such a row is built now.

    Every other column is read now, so a caller or middleware changing ``ctx`` afterwards
    does not change the row; labels and tool calls are encoded now in both cases.
    """
    # One function for both, positional arguments, the usual empty labels and budget
    # skipped without a call: it runs on the calling thread of every logged call, cache-cold
    # when calls are paced, where each Python call level costs a microsecond or more
    # (docs/performance.md, "The log's calling thread, session 10").
    request = ctx.request
    metadata = request.metadata
    if metadata:
        run_id, item_id, target, repetition = coordinates = experiment_coordinates(metadata)
    else:
        run_id = item_id = target = repetition = coordinates = None
    if later:
        if (
            type(request) is not ChatRequest
            or request.tools
            or request.extra
            or request.tool_choice is not None
            or type(request.messages) is not tuple
            or (request.stop is not None and type(request.stop) is not tuple)
        ):
            return None
        for message in request.messages:
            if (
                type(message) is not Message
                or type(message.content) is not str
                or message.tool_calls is not None
            ):
                return None
        # The experiment coordinates go into the row as they are, not encoded: only plain
        # immutable values may wait for the writer.
        if coordinates is not None and not _frozen(coordinates):
            return None
        if plain:
            # Read here, where the messages were just checked (their fields in the CPU
            # cache): the spool's end frame then marshals the row as it is. The fields and
            # their order are `aigw_lab.store.spool_rows.plain_request`'s, written out rather
            # than called: a shared helper's extra call level measured +2 to +3 µs mean per
            # call against the spool's 10 µs budget (bench_spool_threads.py, 2026-12-07);
            # tests/store/test_spool_unfinished.py stores rows from both the same.
            request_json: Any = (
                request.model,
                tuple(map(_plain_message, request.messages)),
                request.temperature,
                request.top_p,
                request.max_tokens,
                request.stop,
                request.seed,
            )
        else:
            request_json = request
        timestamp: Any = ctx.started_wall
    else:
        request_json = request.to_json()
        timestamp = _from_timestamp(ctx.started_wall, UTC)
    usage = response.usage
    latency = response.latency
    upstream_ms = latency.upstream_ms
    total_ms = latency.total_ms
    cost = response.cost_usd
    tool_calls = response.tool_calls
    # The labels' JSON text is the request's own, encoded once (`ChatRequest.labels_json`).
    tags_json, metadata_json = request.labels_json() if request.tags or metadata else _NO_LABELS
    if usage.known:
        input_tokens = usage.input_tokens
        output_tokens = usage.output_tokens
        cache_read = usage.cache_read_tokens
        cache_write = usage.cache_write_tokens
        reasoning = usage.reasoning_tokens
    else:  # unreported usage is NULL, like its cost: 0 would read "no tokens"
        input_tokens = output_tokens = cache_read = cache_write = reasoning = None
    if ctx.shadow_of is None and ctx.budget_estimate_usd is None:
        budget_usd = None  # no budget estimated the call (`budget_charge`'s rule)
    else:
        budget_usd = budget_charge(ctx, cost, answered=True)
    # Built in column order (`CALL_COLUMNS`), one column a line: 49 keyword arguments cost
    # several times the tuple itself. tests/gateway/test_row_building.py checks every
    # column against a keyword-built row, with a distinct value in each.
    return (
        response.call_id or "",  # call_id
        ctx.trace_id,  # trace_id
        timestamp,  # timestamp
        ctx.provider_name,  # provider_name
        ctx.model,  # request_model
        "chat",  # operation_name
        response.model,  # response_model
        response.response_id,  # response_id
        api_format,  # api_format
        request_json,  # request_json
        response.text,  # response_text
        response.finish_reason,  # finish_reason
        to_json(tool_calls) if tool_calls else None,  # tool_calls_json
        "ok",  # status
        None,  # error_type
        None,  # error_message
        None,  # http_status_code
        input_tokens,  # input_tokens
        output_tokens,  # output_tokens
        cache_read,  # cache_read_input_tokens
        cache_write,  # cache_creation_input_tokens
        reasoning,  # reasoning_tokens
        cost,  # cost_usd
        total_ms,  # latency_ms
        latency.ttfb_ms,  # ttfb_ms
        latency.ttft_ms,  # ttft_ms
        upstream_ms,  # upstream_ms
        None if upstream_ms is None else max(0.0, total_ms - upstream_ms),  # overhead_ms
        ctx.stream,  # stream
        response.cache_status,  # cache_status
        ctx.cache_similarity,  # cache_similarity
        ctx.attempt,  # attempt
        ctx.fallback_from,  # fallback_from
        request.user,  # user_id
        request.tenant,  # tenant_id
        request.experiment_id,  # experiment_id
        tags_json,  # tags_json
        metadata_json,  # metadata_json
        response.simulated,  # simulated
        run_id,  # run_id
        item_id,  # item_id
        target,  # target
        repetition,  # repetition
        None,  # flags
        "full",  # bodies
        budget_usd,  # budget_usd
        ctx.route_policy,  # route_policy
        ctx.propensity,  # propensity
        ctx.shadow_of,  # shadow_of
    )


def _frozen(coordinates: tuple[Any, ...]) -> bool:
    return all(value is None or type(value) in (str, int, float, bool) for value in coordinates)


def budget_charge(ctx: CallContext, cost: float | None, *, answered: bool) -> float | None:
    """What a row counts against budgets, by the rule the `Budget` middleware settles with
    (`charged_usd`); None when no budget estimated the call. A shadow call counts nothing
    against live budgets (it has its own: `aigw_lab.gateway.shadow`), so a budget seeding
    from the log after a restart does not count it either."""
    if ctx.shadow_of is not None:
        return 0.0
    estimate = ctx.budget_estimate_usd
    return None if estimate is None else charged_usd(estimate, cost, answered=answered)


def failure_record(
    ctx: CallContext,
    exc: BaseException,
    *,
    call_id: str,
    total_ms: float,
    upstream_ms: float | None,
    partial_text: str | None,
    api_format: str | None,
    simulated: bool,
) -> CallRecord:
    """The row of an attempt that raised ``exc`` (or was cancelled by the caller)."""
    cancelled = is_cancellation(exc)
    if not partial_text and isinstance(exc, StreamInterruptedError):
        partial_text = exc.partial_text
    request = ctx.request
    run_id, item_id, target, repetition = experiment_coordinates(request.metadata)
    tags_json, metadata_json = (
        request.labels_json() if request.tags or request.metadata else _NO_LABELS
    )
    return CallRecord(
        call_id=call_id,
        trace_id=ctx.trace_id,
        timestamp=datetime.fromtimestamp(ctx.started_wall, UTC),
        provider_name=ctx.provider_name,
        request_model=ctx.model,
        api_format=api_format,
        request_json=request.to_json(),
        response_text=partial_text or None,
        # A stream cut off after it began answering was generating, and is billed for it.
        budget_usd=budget_charge(ctx, None, answered=ctx.stream and bool(partial_text)),
        status="cancelled" if cancelled else "error",
        error_type="cancelled" if cancelled else error_type(exc),
        error_message=None if cancelled else str(exc)[:MAX_ERROR_CHARS],
        http_status_code=getattr(exc, "status", None),
        latency_ms=total_ms,
        upstream_ms=upstream_ms,
        overhead_ms=None if upstream_ms is None else max(0.0, total_ms - upstream_ms),
        stream=ctx.stream,
        cache_status=ctx.cache_status,
        attempt=ctx.attempt,
        fallback_from=ctx.fallback_from,
        user_id=request.user,
        tenant_id=request.tenant,
        experiment_id=request.experiment_id,
        tags_json=tags_json,
        metadata_json=metadata_json,
        simulated=simulated,
        route_policy=ctx.route_policy,
        propensity=ctx.propensity,
        shadow_of=ctx.shadow_of,
        run_id=run_id,
        item_id=item_id,
        target=target,
        repetition=repetition,
    )


def rejected_record(
    address: Any,
    request: Any,
    exc: AigwError,
    *,
    call_id: str,
    trace_id: str,
    wall: float,
    stream: bool,
) -> CallRecord:
    """The row of a call refused before it had a target (bad model address, bad messages):
    attempt 0, since nothing was sent."""
    address = address if isinstance(address, str) else repr(address)
    provider_name, _, model = address.partition("/")
    if isinstance(request, ChatRequest):
        request_json = request.to_json()
    else:
        request_json = json.dumps({"model": address, "messages": request}, default=repr)
    return CallRecord(
        call_id=call_id,
        trace_id=trace_id,
        timestamp=datetime.fromtimestamp(wall, UTC),
        provider_name=provider_name if model else "",
        request_model=model or address,
        request_json=request_json,
        status="error",
        error_type=exc.error_type,
        error_message=str(exc)[:MAX_ERROR_CHARS],
        stream=stream,
        attempt=0,
        simulated=False,
    )


#: The request metadata key the experiment runner files a call's coordinates under.
EXPERIMENT_KEY = "aigw_experiment"
_NO_COORDINATES = (None, None, None, None)


def experiment_coordinates(metadata: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    """``(run_id, item_id, target, repetition)`` from ``metadata["aigw_experiment"]``, the
    last four `CallRecord` fields; all None outside an experiment."""
    coordinates = metadata.get(EXPERIMENT_KEY) if metadata else None
    if not coordinates:
        return _NO_COORDINATES
    get = coordinates.get
    return (get("run_id"), get("item_id"), get("target"), get("repetition"))


def is_cancellation(exc: BaseException) -> bool:
    """True for the caller walking away (stream closed, task cancelled, Ctrl-C)."""
    return isinstance(exc, (GeneratorExit, KeyboardInterrupt)) or type(exc).__name__ == (
        "CancelledError"
    )


def error_type(exc: BaseException) -> str:
    """The ``error_type`` column: the error tree's name, or ``internal:<Class>`` for a bug."""
    if isinstance(exc, AigwError):
        return exc.error_type
    return f"internal:{type(exc).__name__}"


def to_json(value: Any) -> str | None:
    """Compact JSON text of a mapping or a tuple of mappings; None when empty."""
    if not value:
        return None
    if isinstance(value, Mapping):
        value = dict(value)
    elif isinstance(value, tuple):
        value = [dict(v) if isinstance(v, Mapping) else v for v in value]
    if _ENCODE_C is not None:
        try:
            return "".join(_ENCODE_C(value, 0))
        except RecursionError:
            pass  # a cycle, or nesting too deep: the encoder's own error, below
    return _JSON.encode(value)
