"""OpenTelemetry traces of a gateway's calls: `OtelSink`, an extra call sink beside the log.

One span per call (``chat {model}``) and one child span per attempt, with the GenAI
semantic conventions (``gen_ai.operation.name``, ``gen_ai.system`` /
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``gen_ai.response.finish_reasons``,
``gen_ai.response.id``, ``error.type``) and the gateway's own ``aigw.*`` attributes (cost,
cache status, tenant, call and trace ids, the configured provider, attempt). A failed or
cancelled call or attempt has span status ERROR. The OpenTelemetry trace id is the
gateway's own ``trace_id`` (the ``x-aigw-trace-id`` header of ``serve``), so a trace is
found from a log row and the other way round.

It never sits inside the pipeline: it takes the rows the `aigw_lab.gateway.recorder.Recorder`
gives every sink, plus each call's `aigw_lab.gateway.call_end.CallEnd`. On the caller's
thread it only queues them (with the wall time each row arrived: an attempt's end); its own
thread builds the spans, with explicit start and end times, and the SDK's batch processor
exports them over OTLP/HTTP. Prompts and answers are not put in spans unless
``capture_content=True`` (``[otel] capture_content``), and then as the log stores them (its
``[log]`` body mode applies). A full queue drops rows (counted in ``dropped``), never waits.

Needs the ``otel`` extra (``pip install "aigw-lab[otel]"``).
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import MissingExtraError
from aigw_lab.extras import missing_modules
from aigw_lab.gateway.call_end import CallEnd

if TYPE_CHECKING:
    from aigw_lab.store.records import CallRecord

__all__ = ["OTEL_INSTALL", "OtelSink", "require_otel"]

#: The install command of the ``otel`` extra.
OTEL_INSTALL = 'pip install "aigw-lab[otel]"'
_OTEL_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")

#: ``gen_ai.system`` / ``gen_ai.provider.name`` by the provider's wire format.
_SYSTEMS = {"openai": "openai", "anthropic": "anthropic", "workers_ai": "cloudflare"}


def require_otel(feature: str = "OpenTelemetry tracing") -> None:
    """Raise `MissingExtraError` naming the install command when the ``otel`` extra is not
    installed (checked without importing it)."""
    missing = missing_modules(_OTEL_MODULES)
    if missing:
        raise MissingExtraError(
            f"{feature} needs the optional 'otel' extra, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed",
            hint=OTEL_INSTALL,
        )


class OtelSink:
    """Call and attempt spans exported over OTLP (see the module docstring).

    ``endpoint``: the OTLP/HTTP base URL (``http://collector:4318``; spans go to
    ``/v1/traces``); ``sample_ratio``: the share of calls traced (by a hash of the trace id,
    so a call's spans are all kept or all dropped, and dropped ones cost next to nothing);
    ``headers``: sent with each export (e.g. an API key read from the
    environment by the config); ``exporter``: any OpenTelemetry ``SpanExporter`` instead of
    OTLP (tests, other protocols). ``orphan_after_s``: rows of a call whose end never comes
    (a shadow call, a batch job's rows) are exported as a call of their own this long after
    their last row (and at `close`). ``poll_s``: how often the sink's thread picks up what
    calls queued. ``clock``: wall seconds, for a row's arrival; ``rng``:
    span ids (a fresh `random.Random` by default).
    """

    name = "otel"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        exporter: Any = None,
        service_name: str = "aigw-lab",
        capture_content: bool = False,
        sample_ratio: float = 1.0,
        timeout_s: float = 10.0,
        max_queue: int = 100_000,
        orphan_after_s: float = 60.0,
        poll_s: float = 0.05,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        require_otel()
        # lazy: the otel extra is optional and its SDK takes ~0.2 s to import
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        if exporter is None:
            if endpoint is None:
                raise ValueError("OtelSink needs an endpoint (OTLP/HTTP base URL) or exporter")
            # lazy: the otel extra is optional
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            exporter = OTLPSpanExporter(
                endpoint=endpoint.rstrip("/") + "/v1/traces",
                headers=dict(headers or {}),
                timeout=timeout_s,
            )
        # No tracer provider, global or not: spans are finished records with known start and
        # end times, built as the SDK's ReadableSpan (a tenth of a live span's cost) and
        # handed to the SDK's batch processor, which exports them with ``exporter``.
        self._resource = Resource.create({"service.name": service_name})
        self._scope = InstrumentationScope("aigw_lab")
        # A larger queue and batches than the SDK's defaults (2048, 512): a burst of calls
        # flat out filled the default queue faster than one export drained it (the SDK then
        # drops spans); bigger batches also mean fewer HTTP requests.
        self._processor = BatchSpanProcessor(
            exporter, max_queue_size=max_queue, max_export_batch_size=min(2048, max_queue)
        )
        self._random = rng if rng is not None else random.Random()
        self.capture_content = capture_content
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError("sample_ratio must be from 0 to 1")
        #: The share of calls traced, decided by a hash of the trace id (every attempt of a
        #: call goes the same way); None: all of them.
        self._keep_below = None if sample_ratio >= 1.0 else int(sample_ratio * 2**32)
        self.orphan_after_s = orphan_after_s
        self._clock = clock
        # A deque, not a queue.Queue: appending is atomic and wakes nobody, so a call pays no
        # lock or thread switch for its telemetry; the sink's thread drains it every
        # ``poll_s`` seconds (or at once when flushed).
        self._items: deque[tuple[Any, ...]] = deque()
        self._max_queue = max_queue
        self.poll_s = poll_s
        self._wake = threading.Event()
        #: Rows and call ends the queue was too full to take.
        self.dropped = 0
        #: Calls whose spans could not be built, and the type of the last such problem.
        self.failures = 0
        self.last_error: str | None = None
        self._pending: dict[str, list[tuple[CallRecord, float]]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="aigw-otel", daemon=True)
        self._thread.start()

    # --- the caller's side: queue only ----------------------------------------------------

    def append(self, record: CallRecord) -> None:
        """Queue one row with its arrival time (the end of its attempt)."""
        if self._keep_below is None or _draw(record.trace_id) < self._keep_below:
            self._put(("row", record, self._clock()))

    def call_ended(self, end: CallEnd) -> None:
        """Queue the end of a call: its spans are built from it and its queued rows."""
        if self._keep_below is None or _draw(end.trace_id) < self._keep_below:
            self._put(("end", end))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Return once every row and call end queued before it is exported (rows still
        waiting for their call's end stay pending)."""
        self._handshake("flush", timeout_s)
        self._processor.force_flush(int(timeout_s * 1000))

    def close(self) -> None:
        """Export everything, pending rows included, and stop; idempotent."""
        if self._closed:
            return
        self._handshake("close", 30.0)
        self._closed = True
        self._thread.join(timeout=30.0)
        self._processor.shutdown()

    def _put(self, item: tuple[Any, ...]) -> None:
        if len(self._items) >= self._max_queue:
            self.dropped += 1  # never make a call wait for its telemetry
            return
        self._items.append(item)

    def _handshake(self, kind: str, timeout_s: float) -> None:
        if self._closed:
            return
        done = threading.Event()
        self._items.append((kind, done))
        self._wake.set()
        done.wait(timeout_s)

    # --- the sink's own thread ------------------------------------------------------------

    def _work(self) -> None:
        items, last_expiry = self._items, self._clock()
        while True:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            while items:
                item = items.popleft()
                kind = item[0]
                try:
                    if kind == "row":
                        self._pending.setdefault(item[1].trace_id, []).append((item[1], item[2]))
                    elif kind == "end":
                        self._emit_call(item[1], self._pending.pop(item[1].trace_id, []))
                    elif kind == "flush":
                        self._expire(self._clock() - self.orphan_after_s)
                        item[1].set()
                    elif kind == "close":
                        self._expire(float("inf"))
                        item[1].set()
                        return
                except Exception as exc:  # noqa: BLE001 - telemetry never stops the thread
                    self.failures += 1
                    self.last_error = type(exc).__name__
            now = self._clock()
            if now - last_expiry >= min(self.orphan_after_s, 5.0):
                self._expire(now - self.orphan_after_s)
                last_expiry = now

    def _expire(self, before: float) -> None:
        """Export as calls of their own the pending rows whose last one arrived before
        ``before`` (wall seconds)."""
        for trace_id in [t for t, rows in self._pending.items() if rows[-1][1] < before]:
            rows = self._pending.pop(trace_id)
            first, last = rows[0][0], rows[-1][0]
            start = min(arrived - (row.latency_ms or 0.0) / 1000.0 for row, arrived in rows)
            end = CallEnd(
                trace_id=trace_id,
                provider=last.provider_name,
                model=last.request_model,
                tenant=first.tenant_id,
                cache_status=last.cache_status,
                status=last.status,
                error_type=last.error_type,
                started_wall=start,
                duration_s=max(0.0, rows[-1][1] - start),
                stream=last.stream,
                attempts=last.attempt,
            )
            self._emit_call(end, rows)

    def _emit_call(self, end: CallEnd, rows: list[tuple[CallRecord, float]]) -> None:
        # lazy: the otel extra is optional (imported already by __init__)
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        start_ns = int(end.started_wall * 1e9)
        end_ns = start_ns + int(end.duration_s * 1e9)
        last = rows[-1][0] if rows else None
        attributes = _call_attributes(end, last, [row for row, _ in rows])
        if last is not None and self.capture_content:
            if last.request_json is not None:
                attributes["gen_ai.input.messages"] = last.request_json
            if last.response_text is not None:
                attributes["gen_ai.output.messages"] = last.response_text
        trace_id = _trace_id(end.trace_id) or (self._random.getrandbits(128) or 1)
        sampled = TraceFlags(TraceFlags.SAMPLED)
        call = SpanContext(trace_id, self._span_id(), is_remote=False, trace_flags=sampled)
        ok = Status(StatusCode.UNSET)
        for row, arrived in rows:
            if row.attempt < 1:
                continue  # answered or refused without a provider: the call span says it all
            row_end = max(start_ns, int(arrived * 1e9))
            row_start = max(start_ns, row_end - int((row.latency_ms or 0.0) * 1e6))
            status = ok if row.status == "ok" else Status(StatusCode.ERROR, row.error_type)
            self._processor.on_end(
                ReadableSpan(
                    name=f"chat {row.request_model}",
                    context=SpanContext(
                        trace_id, self._span_id(), is_remote=False, trace_flags=sampled
                    ),
                    parent=call,
                    resource=self._resource,
                    attributes=_attempt_attributes(row),
                    kind=SpanKind.CLIENT,
                    status=status,
                    start_time=row_start,
                    end_time=row_end,
                    instrumentation_scope=self._scope,
                )
            )
        failed = end.status != "ok"
        self._processor.on_end(
            ReadableSpan(
                name=f"chat {end.model}",
                context=call,
                parent=None,
                resource=self._resource,
                attributes=attributes,
                kind=SpanKind.CLIENT,
                status=Status(StatusCode.ERROR, end.error_type or end.status) if failed else ok,
                start_time=start_ns,
                end_time=max(start_ns, end_ns),
                instrumentation_scope=self._scope,
            )
        )

    def _span_id(self) -> int:
        return self._random.getrandbits(64) or 1


def _system(api_format: str | None) -> str:
    return _SYSTEMS.get(api_format or "", api_format or "_OTHER")


def _attempt_attributes(row: CallRecord) -> dict[str, Any]:
    """An attempt's attributes: what differs between attempts (each attribute costs a few
    microseconds to build and to encode, so the call's own facts stay on the call span)."""
    values: dict[str, Any] = {
        "gen_ai.operation.name": row.operation_name,
        "gen_ai.request.model": row.request_model,
        "aigw.provider": row.provider_name,
        "aigw.attempt": row.attempt,
    }
    for key, value in (
        ("gen_ai.response.model", row.response_model),
        ("gen_ai.usage.input_tokens", row.input_tokens),
        ("gen_ai.usage.output_tokens", row.output_tokens),
        ("aigw.cost_usd", row.cost_usd),
        ("error.type", row.error_type),
        ("http.response.status_code", row.http_status_code),
        ("aigw.fallback_from", row.fallback_from),
    ):
        if value is not None:
            values[key] = value
    return values


def _call_attributes(
    end: CallEnd, last: CallRecord | None, rows: list[CallRecord]
) -> dict[str, Any]:
    """The call span's attributes: the GenAI operation as the caller saw it (the last
    row's answer), the gateway's facts, and the cost of every attempt."""
    system = _system(last.api_format if last is not None else None)
    values: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": system,
        "gen_ai.provider.name": system,
        "gen_ai.request.model": end.model,
        "aigw.provider": end.provider,
        "aigw.cache_status": end.cache_status,
        "aigw.attempts": end.attempts,
        "aigw.stream": end.stream,
    }
    if last is not None:
        for key, value in (
            ("gen_ai.response.model", last.response_model),
            ("gen_ai.response.id", last.response_id),
            ("gen_ai.usage.input_tokens", last.input_tokens),
            ("gen_ai.usage.output_tokens", last.output_tokens),
            ("http.response.status_code", last.http_status_code),
        ):
            if value is not None:
                values[key] = value
        if last.finish_reason:
            values["gen_ai.response.finish_reasons"] = (last.finish_reason,)
        if last.simulated:
            values["aigw.simulated"] = True
    costs = [row.cost_usd for row in rows if row.cost_usd is not None]
    if costs:
        values["aigw.cost_usd"] = sum(costs)
    tenant = end.tenant if end.tenant is not None else (last.tenant_id if last else None)
    if tenant is not None:
        values["aigw.tenant"] = tenant
    call_id = end.call_id if end.call_id is not None else (last.call_id if last else None)
    if call_id is not None:
        values["aigw.call_id"] = call_id
    if end.shadow_of is not None:
        values["aigw.shadow_of"] = end.shadow_of
    if end.status != "ok":
        values["aigw.status"] = end.status
        values["error.type"] = end.error_type or end.status
    return values


def _draw(trace_id: str) -> int:
    """A call's sampling draw: a 32-bit hash of its trace id."""
    return zlib.crc32(trace_id.encode())


def _trace_id(text: str) -> int | None:
    """The gateway's trace id as an OpenTelemetry one (32 hex digits, not all zero)."""
    if len(text) == 32:
        try:
            value = int(text, 16)
        except ValueError:
            return None
        return value or None
    return None
