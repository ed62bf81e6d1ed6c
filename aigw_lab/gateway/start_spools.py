"""Where a gateway writes each attempt's *start* before its request leaves: the call log's
spool, and the spool of every sink that keeps one (a `aigw_lab.store.team_log.TeamLogSink`).

A start with no end in a dead process's spool becomes an ``interrupted`` row when the spool
is read again (`aigw_lab.store.spool_replay`). A process logging only to a team log (a Ray
worker, ``serve`` with no file of its own) used to write no start anywhere, so a call in
flight at a ``kill -9`` left no row at all; one with a file log and a team log left the
``interrupted`` row in its file only. A sink offers its spool as ``start_spool`` (an object
with ``start(values)``, as `aigw_lab.store.spool.Spool`); the recorder writes each start to
the one spool there is, or to each through `StartTee`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["StartSpool", "StartTee", "start_spool"]


class StartSpool(Protocol):
    """What takes a call's start: `aigw_lab.store.spool.Spool`."""

    def start(self, values: tuple[Any, ...]) -> None: ...


class StartTee:
    """Several spools taking every start (a file log's and a team log's)."""

    __slots__ = ("spools",)

    def __init__(self, spools: tuple[StartSpool, ...]) -> None:
        self.spools = spools

    def start(self, values: tuple[Any, ...]) -> None:
        """Write the start to every spool."""
        for spool in self.spools:
            spool.start(values)


def start_spool(log: Any, sinks: Iterable[Any]) -> StartSpool | None:
    """The spool (or `StartTee` of spools) a gateway with ``log`` and ``sinks`` writes its
    starts to; None when neither keeps one (an in-memory log, ``durability = "none"``)."""
    found = [getattr(log, "spool", None)]
    found += [getattr(sink, "start_spool", None) for sink in sinks]
    spools = tuple(spool for spool in found if spool is not None)
    if not spools:
        return None
    return spools[0] if len(spools) == 1 else StartTee(spools)
