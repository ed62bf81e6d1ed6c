"""The end of one call, as a value: `CallEnd`, and `CallObserver`, an extra sink that also
wants to know when a call is over.

Rows (`aigw_lab.store.records.CallRecord`) are per attempt: a sink given only rows cannot
tell whether a failed attempt will be retried, so it cannot close a span per call or count a
request once. The gateway's `aigw_lab.gateway.recorder.Recorder` therefore hands every extra
sink that has a ``call_ended`` method one `CallEnd` per call, after the call's last row
(answered, failed, cancelled, refused, or rejected before it had a target). The OpenTelemetry
sink (`aigw_lab.gateway.otel_sink`) closes the call's span there; the Prometheus metrics
(`aigw_lab.gateway.metrics_sink`) count the request and its latency there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["CallEnd", "CallObserver"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnd:
    """One call, over. ``provider``/``model``: the target the call ended on (after routing
    and fallbacks; the address's parts for a call rejected before it had one);
    ``status``: ``ok``, ``error`` or ``cancelled``; ``error_type``: the `aigw_lab.errors`
    type name of a failure (None otherwise); ``started_wall``: Unix seconds at the call's
    start; ``duration_s``: as the caller saw it; ``attempts``: attempts made (0: answered
    or refused without a provider); ``shadow_of``: set for a shadow call (not a client's
    request: the metrics leave it out of requests and latency)."""

    trace_id: str
    provider: str
    model: str
    tenant: str | None
    cache_status: str
    status: str
    error_type: str | None
    started_wall: float
    duration_s: float
    stream: bool
    attempts: int
    call_id: str | None = None
    #: The live call's ``call_id`` when this is a shadow call (`aigw_lab.gateway.shadow`).
    shadow_of: str | None = None


@runtime_checkable
class CallObserver(Protocol):
    """An extra sink that is also told when each call is over (after its last row). Called
    on the caller's thread, so it must be cheap and thread-safe, and never raise (what it
    raises is counted in `aigw_lab.store.sink.SinkHealth`, as for ``append``)."""

    def call_ended(self, end: CallEnd) -> None: ...
