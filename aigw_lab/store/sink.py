"""Where a gateway's call-log rows go: the `CallSink` protocol, and the health of a sink.

The gateway's `aigw_lab.gateway.recorder.Recorder` hands every row (one `CallRecord` per
attempt, refusal and cache hit, already made storable by `sanitize_record`) to its sinks:
the DuckDB `aigw_lab.store.CallLog` first, then any extra sinks given as
``Gateway(sinks=[...])`` (OpenTelemetry and team-log sinks are planned there;
`aigw_lab.testing.MemorySink` is the test double). The protocol sits in the store layer so
the call log implements it without importing the gateway.

A sink problem never fails a call: the recorder catches what an extra sink raises, counts
the rows it did not take and reports them in `SinkHealth` (``Gateway.sink_health``), as
the log reports its own problems in `aigw_lab.store.LogHealth`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aigw_lab.store.records import CallRecord

__all__ = ["CallSink", "CallSinkWarning", "SinkHealth"]


class CallSinkWarning(RuntimeWarning):
    """An extra sink of a gateway refused a row or a flush (the call log still has the row;
    `SinkHealth` counts them). Issued on a sink's first problem of each kind."""


@runtime_checkable
class CallSink(Protocol):
    """Something that takes call-log rows.

    ``append`` is called on the calling thread of every call, once per row, so it must be
    cheap (queue the row; send it elsewhere on a thread of your own) and thread-safe.
    ``flush`` returns once every row appended before it has been delivered; ``close``
    flushes and releases the sink (its owner calls it: a gateway flushes the sinks it was
    given when it closes, and closes none of them, as with a log passed in)."""

    def append(self, record: CallRecord) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkHealth:
    """How an extra sink of a gateway is doing: `Gateway.sink_health`.

    ``name``: the sink's ``name`` attribute, else its class name. ``rows_failed``: rows its
    ``append`` raised on (they are in the call log, not in this sink); ``flush_failures``:
    its ``flush`` raising; ``last_error``: the exception type of the last problem (never a
    row's content), or None."""

    name: str
    rows_failed: int
    flush_failures: int
    last_error: str | None

    @property
    def ok(self) -> bool:
        """True when the sink has taken every row and flush so far."""
        return self.rows_failed == 0 and self.flush_failures == 0

    def as_dict(self) -> dict[str, Any]:
        """The fields (and ``ok``) as a JSON-ready dict."""
        return {**asdict(self), "ok": self.ok}
