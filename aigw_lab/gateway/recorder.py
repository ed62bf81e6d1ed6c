"""The `Recorder`: a gateway's bookkeeping as an object of its own. It prices and times a
completed attempt, and logs every outcome (completed, failed, cancelled, refused before any
attempt, served by a middleware without a provider), so every call has its row, in the call
log and in every extra sink (`aigw_lab.store.sink.CallSink`).

The gateway builds one and hands it to each call's context (``ctx.recorder``): a stage that
answers or refuses a call itself logs it here (`serve_without_provider`, `log_refused`).
It holds the clock, the perf counter, the id factory, the price book, the log's spool and
the sinks; the gateway lends it two lookups by provider name (wire format, simulated).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.gateway.call_end import CallEnd
from aigw_lab.gateway.records import (
    error_type,
    experiment_coordinates,
    failure_record,
    is_cancellation,
    rejected_record,
    success_record,
    success_values,
)
from aigw_lab.gateway.start_spools import start_spool
from aigw_lab.providers.base_provider import BaseProvider, traits
from aigw_lab.store.sanitize import sanitize_record
from aigw_lab.store.sink import CallSink, CallSinkWarning, SinkHealth
from aigw_lab.store.unfinished import finish_row
from aigw_lab.types import ChatResponse, Latency

if TYPE_CHECKING:
    from aigw_lab.errors import AigwError
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.pricing import PriceBook
    from aigw_lab.store import CallLog
    from aigw_lab.store.dead_letter import LogHealth
    from aigw_lab.store.records import CallRecord

__all__ = ["Recorder"]


class Recorder:
    """Pricing, timing and logging for one gateway (see the module docstring).

    ``log``: the `CallLog` (None: no log); ``sinks``: extra `CallSink` objects, each given
    every row the log is given (also when there is no log). ``api_format(name)`` and
    ``is_simulated(name)`` answer for the provider ``name``; ``max_body_chars`` bounds a
    row's text fields (`sanitize_record`).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        perf_counter: Callable[[], float],
        new_id: Callable[[], str],
        prices: PriceBook,
        log: CallLog | None,
        sinks: Sequence[CallSink] = (),
        max_body_chars: int,
        api_format: Callable[[str], str | None],
        is_simulated: Callable[[str], bool],
    ) -> None:
        for sink in sinks:
            if not isinstance(sink, CallSink):
                raise TypeError(
                    f"{sink!r} is not a call sink: it needs append(record), flush() and close()"
                )
        self.clock = clock
        self.perf = perf_counter
        self.new_id = new_id
        self.prices = prices
        self.log = log
        self.sinks: tuple[CallSink, ...] = tuple(sinks)
        #: Where each attempt's start is written before its request leaves (None: no spool):
        #: the log's spool and every sink's (`aigw_lab.gateway.start_spools`).
        self.spool = start_spool(log, self.sinks)
        self.max_body_chars = max_body_chars
        self._api_format = api_format
        self._is_simulated = is_simulated
        # Wire formats by provider name, filled by `complete` (`_api_format_of`).
        self._formats: dict[str, str | None] = {}
        # Rows are built only when something takes them.
        self._writes = log is not None or bool(self.sinks)
        # A log without other sinks takes a success row unfinished when it says so: the
        # log's writer thread finishes it in a batch (`aigw_lab.store.unfinished`); a
        # spooled log's end frame then holds the unfinished row (`store.spool_rows`). A log
        # whose body policy must apply before its spool, or a sink, takes finished rows.
        self._later = (
            log is not None
            and not self.sinks
            and callable(getattr(log, "append_later", None))
            and bool(getattr(log, "takes_unfinished", self.spool is None))
        )
        # A spooled log's end frame holds the row's values as they are, so its rows carry
        # the request as plain fields (`success_values_later`'s ``plain``).
        self._plain = self._later and getattr(log, "spool", None) is not None
        self._problems = [_Problems() for _ in self.sinks]
        self._lock = threading.Lock()
        # Sinks told when each call is over (`aigw_lab.gateway.call_end.CallObserver`).
        self._observers = tuple(
            (index, sink)
            for index, sink in enumerate(self.sinks)
            if callable(getattr(sink, "call_ended", None))
        )
        #: True when some sink wants each call's `CallEnd` (the call entry points ask).
        self.observes_calls = bool(self._observers)

    # --- where rows go ------------------------------------------------------------------

    def append(self, record: CallRecord) -> None:
        """Hand one row to the log and every sink, made storable first (`sanitize_record`:
        invalid text replaced, oversize bodies cut, both flagged). Neither a log problem nor
        a sink's ever fails the call: a row the log cannot take is saved to a file and shows
        in `log_health`; a sink's problem shows in `sink_health`."""
        record = sanitize_record(record, max_body_chars=self.max_body_chars)
        log = self.log
        if log is not None:
            try:
                log.append(record, built=True)  # sanitised above: valid JSON columns
            except StoreError:
                # Closed, or its queue full while inserts fail: the caller's call went
                # through (and may have been paid for), so keep the row and carry on.
                log.set_aside([record], "the call log did not accept the row")
        if self.sinks:
            for index, sink in enumerate(self.sinks):
                try:
                    sink.append(record)
                except Exception as exc:  # noqa: BLE001 - a sink never fails a call
                    self._sink_failed(index, exc, rows=1)

    def append_many(self, records: Iterable[CallRecord]) -> None:
        """`append` for several rows at once (a batch job's results): one queueing for the
        log, every row to every sink, the same guarantees."""
        rows = [sanitize_record(r, max_body_chars=self.max_body_chars) for r in records]
        log = self.log
        if log is not None:
            try:
                log.append_many(rows, built=True)
            except StoreError:
                log.set_aside(rows, "the call log did not accept the rows")
        for index, sink in enumerate(self.sinks):
            for row in rows:
                try:
                    sink.append(row)
                except Exception as exc:  # noqa: BLE001 - a sink never fails a call
                    self._sink_failed(index, exc, rows=1)

    def log_health(self) -> LogHealth | None:
        """The call log's own health (`aigw_lab.store.CallLog.health`), or None without one."""
        return None if self.log is None else self.log.health()

    def sink_health(self) -> tuple[SinkHealth, ...]:
        """One `SinkHealth` per extra sink, in the order given."""
        with self._lock:
            return tuple(
                SinkHealth(
                    name=_sink_name(sink),
                    rows_failed=problems.rows,
                    flush_failures=problems.flushes,
                    last_error=problems.last_error,
                )
                for sink, problems in zip(self.sinks, self._problems, strict=True)
            )

    def flush_sinks(self) -> None:
        """Flush every extra sink; one that fails is counted in `sink_health`, not raised."""
        for index, sink in enumerate(self.sinks):
            try:
                sink.flush()
            except Exception as exc:  # noqa: BLE001 - reported in sink_health
                self._sink_failed(index, exc, rows=0)

    def close(self, *, owns_log: bool) -> None:
        """At the gateway's close: flush the sinks, then close the log if the gateway opened
        it (a log passed in is flushed, not closed)."""
        self.flush_sinks()
        if self.log is not None:
            if owns_log:
                self.log.close()
            else:
                self.log.flush()

    def _sink_failed(self, index: int, exc: Exception, *, rows: int) -> None:
        problems = self._problems[index]
        kind = type(exc).__name__
        with self._lock:
            first = (problems.rows if rows else problems.flushes) == 0
            if rows:
                problems.rows += rows
            else:
                problems.flushes += 1
            problems.last_error = kind
        if first:
            what = "a row" if rows else "a flush"
            try:
                warnings.warn(
                    f"call sink {_sink_name(self.sinks[index])} refused {what} ({kind}); "
                    "the call log has the row; see Gateway.sink_health()",
                    CallSinkWarning,
                    stacklevel=2,
                )
            except Exception:  # noqa: BLE001, S110 - warnings made errors must not fail a call
                pass

    # --- the attempt --------------------------------------------------------------------

    def begin(self, ctx: CallContext) -> str:
        """Count a new attempt of ``ctx`` (timed from now if it is a retry); its call id."""
        ctx.attempt += 1
        if ctx.attempt > 1:
            ctx.attempt_started = self.perf()
        return self.new_id()

    def spool_start(self, ctx: CallContext, call_id: str, provider: Any) -> None:
        """Write the attempt's start to the log's spool: if the process dies before its end
        is logged, the next open logs it as ``interrupted`` instead of losing it."""
        # On the calling thread of every attempt, between its other work, where each Python
        # call costs a cache-cold microsecond or more: empty labels (the usual case) skip the
        # JSON encoder and the coordinates lookup altogether.
        request = ctx.request
        metadata = request.metadata
        if metadata or request.tags:
            # Encoded once per request (`ChatRequest.labels_json`); the row reuses the text.
            tags_json, metadata_json = request.labels_json()
            run_id, item_id, target, repetition = experiment_coordinates(metadata)
        else:
            tags_json = metadata_json = run_id = item_id = target = repetition = None
        # A built-in provider is its own traits: no call to `traits` for it.
        facts = provider if isinstance(provider, BaseProvider) else traits(provider)
        self.spool.start(  # type: ignore[union-attr]
            (
                call_id,
                ctx.trace_id,
                ctx.started_wall,
                ctx.provider_name,
                ctx.model,
                facts.api_format,
                ctx.stream,
                ctx.cache_status,
                ctx.attempt,
                ctx.fallback_from,
                request.user,
                request.tenant,
                request.experiment_id,
                tags_json,
                metadata_json,
                facts.simulated,
                run_id,
                item_id,
                target,
                repetition,
                # Last, what the call counts against budgets if it is never heard of again
                # (its estimate: the upstream may have answered and billed).
                ctx.budget_estimate_usd,
            )
        )

    def complete(
        self,
        ctx: CallContext,
        response: ChatResponse,
        upstream_start: float,
        call_id: str | None = None,
    ) -> ChatResponse:
        """Price the response, fix its latency to the caller's view, log it, return it."""
        now = self.perf()
        offset_ms = (upstream_start - ctx.attempt_started) * 1000.0
        lat = response.latency
        total_ms = (now - ctx.attempt_started) * 1000.0
        upstream_ms = lat.upstream_ms if lat.upstream_ms is not None else lat.total_ms
        latency = Latency(
            total_ms=total_ms,
            ttfb_ms=None if lat.ttfb_ms is None else lat.ttfb_ms + offset_ms,
            ttft_ms=total_ms if lat.ttft_ms is None else lat.ttft_ms + offset_ms,
            upstream_ms=upstream_ms,
        )
        cost = response.cost_usd
        if cost is None:
            cost = self.prices.cost(ctx.provider_name, ctx.model, response.usage)
        simulated = response.simulated or self._is_simulated(ctx.provider_name)
        if call_id is None:
            call_id = self.new_id()
        cache_status = (
            ctx.cache_status if response.cache_status == "none" else response.cache_status
        )
        # Built field by field: dataclasses.replace costs several times more on this path.
        response = ChatResponse(
            text=response.text,
            finish_reason=response.finish_reason,
            usage=response.usage,
            provider=response.provider,
            model=response.model,
            latency=latency,
            cost_usd=cost,
            cache_status=cache_status,
            attempts=ctx.attempt,
            response_id=response.response_id,
            tool_calls=response.tool_calls,
            raw=response.raw,
            simulated=simulated,
            call_id=call_id,
            trace_id=ctx.trace_id,
        )
        ctx.logged += 1
        if self._writes:
            # On the calling thread of every logged call (cache-cold when paced): the wire
            # format is looked up once per provider, and a row the writer finishes goes
            # straight to the log, without a call level of its own.
            name = ctx.provider_name
            api_format = self._formats.get(name)
            if api_format is None:
                api_format = self._api_format_of(name)
            if self._later:
                values = success_values(ctx, response, api_format, True, self._plain)
                if values is not None:
                    log = self.log
                    try:
                        log.append_later(values, self.max_body_chars)  # type: ignore[union-attr]
                    except StoreError:
                        self._set_aside_unfinished(values)
                    return response
            self.append(success_record(ctx, response, api_format=api_format))
        return response

    def _api_format_of(self, name: str) -> str | None:
        """The wire format of provider ``name``, remembered once known: a gateway's provider
        of a name, once built, stays (`aigw_lab.gateway.targets.Targets`)."""
        api_format = self._api_format(name)
        if api_format is not None:
            self._formats[name] = api_format
        return api_format

    def _set_aside_unfinished(self, values: tuple[Any, ...]) -> None:
        """A row the log did not accept from `CallLog.append_later` (closed, or its queue
        full while inserts fail): as in `append`, the call went through, so its row is kept
        in a file. `set_aside` applies the log's body policy, as `append` would have."""
        record, _ = finish_row((values, self.max_body_chars), None)
        self.log.set_aside([record], "the call log did not accept the row")  # type: ignore[union-attr]

    def failed(
        self,
        ctx: CallContext,
        exc: BaseException,
        upstream_start: float,
        partial_text: str | None = None,
        *,
        call_id: str | None = None,
    ) -> None:
        """Log an attempt that failed, or was cancelled, with the text it had received."""
        ctx.logged += 1
        if not self._writes:
            return
        now = self.perf()
        total_ms = (now - ctx.attempt_started) * 1000.0
        upstream_ms = (
            (now - upstream_start) * 1000.0 if upstream_start > ctx.attempt_started else None
        )
        self.append(
            failure_record(
                ctx,
                exc,
                call_id=call_id or self.new_id(),
                total_ms=total_ms,
                upstream_ms=upstream_ms,
                partial_text=partial_text,
                api_format=self._api_format(ctx.provider_name),
                simulated=self._is_simulated(ctx.provider_name),
            )
        )

    # --- calls that never reach an attempt ----------------------------------------------

    def serve_without_provider(
        self,
        ctx: CallContext,
        response: ChatResponse,
        *,
        cache_status: str = "hit",
        similarity: float | None = None,
    ) -> ChatResponse:
        """Return and log an answer that a middleware produced without calling a provider
        (a cache hit): attempt 0, cost 0 USD (nothing was paid for it), the usage of the
        stored answer kept so tokens saved can be counted, and latency as the caller saw it.
        """
        total_ms = (self.perf() - ctx.started) * 1000.0
        ctx.cache_status = cache_status
        ctx.cache_similarity = similarity
        served = ChatResponse(
            text=response.text,
            finish_reason=response.finish_reason,
            usage=response.usage,
            provider=ctx.provider_name,
            model=response.model,
            latency=Latency(total_ms=total_ms, ttfb_ms=None, ttft_ms=total_ms, upstream_ms=0.0),
            cost_usd=0.0,
            cache_status=cache_status,  # type: ignore[arg-type]
            attempts=0,
            response_id=response.response_id,
            tool_calls=response.tool_calls,
            raw=response.raw,
            simulated=response.simulated or self._is_simulated(ctx.provider_name),
            call_id=self.new_id(),
            trace_id=ctx.trace_id,
        )
        ctx.logged += 1
        if self._writes:
            self.append(success_record(ctx, served, api_format=None)._replace(attempt=0))
        return served

    def log_refused(self, ctx: CallContext, exc: BaseException) -> None:
        """Log a call that a middleware refused before any attempt (every target's circuit
        open, a budget exhausted), as attempt 0, so it is in the log like every other call."""
        ctx.logged += 1
        if self._writes:
            self.append(
                failure_record(
                    ctx,
                    exc,
                    call_id=self.new_id(),
                    total_ms=(self.perf() - ctx.started) * 1000.0,
                    upstream_ms=None,
                    partial_text=None,
                    api_format=None,
                    simulated=self._is_simulated(ctx.provider_name),
                )._replace(attempt=0)
            )

    def log_if_unlogged(self, ctx: CallContext, exc: BaseException) -> None:
        """At the end of a call that raised: log it if no row was logged for it yet (a
        middleware refused before any attempt, or the caller gave up while it waited)."""
        if not ctx.logged:
            self.log_refused(ctx, exc)

    def log_rejected(
        self, address: Any, request: Any, exc: AigwError, wall: float, stream: bool
    ) -> None:
        """Log a call refused before it had a target (bad model address, bad messages)."""
        if not self._writes:
            return
        row = rejected_record(
            address,
            request,
            exc,
            call_id=self.new_id(),
            trace_id=self.new_id(),
            wall=wall,
            stream=stream,
        )
        self.append(row)
        if self._observers:
            self._tell(
                CallEnd(
                    trace_id=row.trace_id,
                    provider=row.provider_name,
                    model=row.request_model,
                    tenant=getattr(request, "tenant", None),
                    cache_status="none",
                    status="error",
                    error_type=row.error_type,
                    started_wall=wall,
                    duration_s=max(0.0, self.clock() - wall),
                    stream=stream,
                    attempts=0,
                    call_id=row.call_id,
                )
            )

    # --- the end of a call --------------------------------------------------------------

    def call_ended(
        self,
        ctx: CallContext,
        response: ChatResponse | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Tell every observing sink that the call of ``ctx`` is over, after its last row:
        answered with ``response``, or failed or cancelled with ``exc``. The entry points
        call it only when `observes_calls`."""
        if exc is None:
            status, kind = "ok", None
        elif is_cancellation(exc):
            status, kind = "cancelled", "cancelled"
        else:
            status, kind = "error", error_type(exc)
        if response is not None:
            provider, model = response.provider or ctx.provider_name, ctx.model
            cache_status, call_id = str(response.cache_status), response.call_id
        else:
            provider, model = ctx.provider_name, ctx.model
            cache_status, call_id = ctx.cache_status, None
        self._tell(
            CallEnd(
                trace_id=ctx.trace_id,
                provider=provider,
                model=model,
                tenant=ctx.request.tenant,
                cache_status=cache_status,
                status=status,
                error_type=kind,
                started_wall=ctx.started_wall,
                duration_s=self.perf() - ctx.started,
                stream=ctx.stream,
                attempts=ctx.attempt,
                call_id=call_id,
                shadow_of=ctx.shadow_of,
            )
        )

    def _tell(self, end: CallEnd) -> None:
        for index, sink in self._observers:
            try:
                sink.call_ended(end)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - a sink never fails a call
                self._sink_failed(index, exc, rows=1)


class _Problems:
    """What went wrong with one extra sink so far (under the recorder's lock)."""

    __slots__ = ("rows", "flushes", "last_error")

    def __init__(self) -> None:
        self.rows = 0
        self.flushes = 0
        self.last_error: str | None = None


def _sink_name(sink: object) -> str:
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) and name else type(sink).__name__
