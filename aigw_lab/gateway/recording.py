"""The gateway's bookkeeping, as a base class of `Gateway`: pricing and timing a completed
attempt, and logging every outcome (completed, failed, cancelled, refused before any attempt,
served by a middleware without a provider), so that every call has its row in the log.

It relies on the gateway's clock (``_perf``), id factory (``_new_id``), price book
(``_prices``), log (``_log``) and the small lookups ``_api_format``/``_is_simulated``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.records import (
    experiment_coordinates,
    failure_record,
    rejected_record,
    success_record,
    to_json,
)
from aigw_lab.providers.base_provider import traits
from aigw_lab.store.sanitize import sanitize_record
from aigw_lab.types import ChatResponse, Latency, StreamEvent

if TYPE_CHECKING:
    from aigw_lab.errors import AigwError
    from aigw_lab.store.dead_letter import LogHealth
    from aigw_lab.store.records import CallRecord

__all__ = ["CallRecording"]


class CallRecording:
    """Pricing, timing and logging for `Gateway` (see the module docstring)."""

    _perf: Any
    _new_id: Any
    _prices: Any
    _log: Any
    _spool: Any
    _max_body_chars: int
    _run_stream: Any
    _arun_stream: Any

    @property
    def max_body_chars(self) -> int:
        """Text fields of a log row longer than this many characters are cut and flagged
        (``[log] max_body_chars``); for code that builds rows itself, like batch jobs."""
        return self._max_body_chars

    def log_health(self) -> LogHealth | None:
        """The call log's own health (`aigw_lab.store.CallLog.health`: state, rows written,
        pending, dead-lettered, spilled, last problem), or None when logging is off."""
        return None if self._log is None else self._log.health()

    def _append_row(self, record: CallRecord) -> None:
        """Queue one row, made storable first (`sanitize_record`: invalid text replaced,
        oversize bodies cut, both flagged). A log problem never fails the call: a row the
        log cannot take is saved to a file and shows in `log_health`."""
        record = sanitize_record(record, max_body_chars=self._max_body_chars)
        try:
            self._log.append(record)
        except StoreError:
            # Closed, or its queue full while inserts fail: the caller's call went through
            # (and may have been paid for), so keep the row and carry on.
            self._log.set_aside([record], "the call log did not accept the row")

    def _api_format(self, ctx: CallContext) -> str | None:  # overridden by Gateway
        raise NotImplementedError

    def _is_simulated(self, name: str) -> bool:  # overridden by Gateway
        raise NotImplementedError

    def _log_if_unlogged(self, ctx: CallContext, exc: BaseException) -> None:
        # A middleware refused the call before any attempt (bad cache options, a limit), or
        # the caller gave up while it waited (a cancelled task): it still gets its row.
        if not ctx.logged:
            self.log_refused(ctx, exc)

    def _guard_stream(self, ctx: CallContext) -> Iterator[StreamEvent]:
        # The pipeline starts inside the generator, so a middleware that refuses at once
        # is caught (and logged) here too.
        try:
            yield from self._run_stream(ctx)
        except BaseException as exc:
            self._log_if_unlogged(ctx, exc)
            raise

    async def _aguard_stream(self, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        events: AsyncIterator[StreamEvent] | None = None
        try:
            events = self._arun_stream(ctx)
            async for event in events:
                yield event
        except BaseException as exc:
            # Close the pipeline's stream first (at once, not at collection): a cancelled
            # attempt logs itself and releases its connection; then, only if nothing was
            # logged for this call yet, log it here.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            self._log_if_unlogged(ctx, exc)
            raise

    # --- for middleware -----------------------------------------------------------------

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
        now = self._perf()
        total_ms = (now - ctx.started) * 1000.0
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
            call_id=self._new_id(),
            trace_id=ctx.trace_id,
        )
        ctx.logged += 1
        if self._log is not None:
            self._append_row(success_record(ctx, served, api_format=None)._replace(attempt=0))
        return served

    def log_refused(self, ctx: CallContext, exc: BaseException) -> None:
        """Log a call that a middleware refused before any attempt (every target's circuit
        open, a budget exhausted), as attempt 0, so it is in the log like every other call."""
        ctx.logged += 1
        if self._log is not None:
            self._append_row(
                failure_record(
                    ctx,
                    exc,
                    call_id=self._new_id(),
                    total_ms=(self._perf() - ctx.started) * 1000.0,
                    upstream_ms=None,
                    partial_text=None,
                    api_format=None,
                    simulated=self._is_simulated(ctx.provider_name),
                )._replace(attempt=0)
            )

    # --- pricing and logging ------------------------------------------------------------

    def _spool_start(self, ctx: CallContext, call_id: str, provider: Any) -> None:
        """Write the attempt's start to the log's spool: if the process dies before its end
        is logged, the next open logs it as ``interrupted`` instead of losing it."""
        # On the calling thread of every attempt, between its other work, where each Python
        # call costs a cache-cold microsecond or more: empty labels (the usual case) skip the
        # JSON encoder and the coordinates lookup altogether.
        request = ctx.request
        tags, metadata = request.tags, request.metadata
        facts = traits(provider)
        values = (
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
            to_json(tags) if tags else None,
        )
        # Last, what the call counts against budgets if it is never heard of again (its
        # estimate: the upstream may have answered and billed).
        if metadata:
            values += (
                to_json(metadata),
                facts.simulated,
                *experiment_coordinates(metadata),
                ctx.budget_estimate_usd,
            )
        else:
            values += (None, facts.simulated, None, None, None, None, ctx.budget_estimate_usd)
        self._spool.start(values)

    def _complete(
        self,
        ctx: CallContext,
        response: ChatResponse,
        upstream_start: float,
        call_id: str | None = None,
    ) -> ChatResponse:
        """Price the response, fix its latency to the caller's view, log it, return it."""
        now = self._perf()
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
            cost = self._prices.cost(ctx.provider_name, ctx.model, response.usage)
        simulated = response.simulated or self._is_simulated(ctx.provider_name)
        if call_id is None:
            call_id = self._new_id()
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
        if self._log is not None:
            self._append_row(success_record(ctx, response, api_format=self._api_format(ctx)))
        return response

    def _log_failure(
        self,
        ctx: CallContext,
        exc: BaseException,
        upstream_start: float,
        partial_text: str | None = None,
        *,
        call_id: str | None = None,
    ) -> None:
        ctx.logged += 1
        if self._log is None:
            return
        now = self._perf()
        total_ms = (now - ctx.attempt_started) * 1000.0
        upstream_ms = (
            (now - upstream_start) * 1000.0 if upstream_start > ctx.attempt_started else None
        )
        self._append_row(
            failure_record(
                ctx,
                exc,
                call_id=call_id or self._new_id(),
                total_ms=total_ms,
                upstream_ms=upstream_ms,
                partial_text=partial_text,
                api_format=self._api_format(ctx),
                simulated=self._is_simulated(ctx.provider_name),
            )
        )

    def _log_rejected(
        self, address: Any, request: Any, exc: AigwError, wall: float, stream: bool
    ) -> None:
        """Log a call refused before it had a target (bad model address, bad messages)."""
        if self._log is None:
            return
        self._append_row(
            rejected_record(
                address,
                request,
                exc,
                call_id=self._new_id(),
                trace_id=self._new_id(),
                wall=wall,
                stream=stream,
            )
        )
