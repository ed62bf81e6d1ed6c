"""`SpoolGuard`: refuses new calls while a sink that must not lose rows cannot take more (the
team log's spool at its bound during a PostgreSQL outage), before anything is reserved or
sent, so no call is paid for that its log cannot hold.

A sans-IO primitive at the front of the pipeline (kind ``guard``): ``admit`` reads each
guarded sink's ``full`` flag (set by the sink itself as it measures its spool) and raises
`TeamLogFullError` (served as 503 with Retry-After) or proceeds with nothing to settle.
`aigw_lab.config.build_gateway` adds one for ``[log] backend = "postgres"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aigw_lab.errors import TeamLogFullError
from aigw_lab.gateway.middleware import CallContext, Primitive
from aigw_lab.gateway.primitive import PROCEED, Verdict

__all__ = ["SpoolGuard"]


class SpoolGuard(Primitive):
    """Refuse calls while any of ``sinks`` says it is ``full``; ``retry_after``: the seconds
    a refused client is told to wait."""

    kind = "guard"

    def __init__(self, sinks: Iterable[Any], *, retry_after: float = 5.0) -> None:
        self.sinks = tuple(sinks)
        self.retry_after = retry_after
        #: Calls refused so far (each also logged, with error type ``team_log_full``).
        self.refused = 0

    def admit(self, ctx: CallContext, state: Any) -> Verdict:
        for sink in self.sinks:
            if sink.full:
                self.refused += 1
                raise TeamLogFullError(
                    f"the {getattr(sink, 'where', 'call sink')} cannot take more rows: its "
                    f"spool is at its bound ({getattr(sink, 'max_spool_bytes', '?')} bytes) "
                    "while they wait",
                    retry_after=self.retry_after,
                    hint="bring PostgreSQL back; the waiting rows are sent and calls resume "
                    "(or raise [log] team_spool_max_bytes)",
                )
        return PROCEED

    def __repr__(self) -> str:
        return f"<SpoolGuard sinks={len(self.sinks)} refused={self.refused}>"
