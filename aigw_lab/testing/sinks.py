"""`MemorySink`: a call sink (`aigw_lab.store.sink.CallSink`) that keeps rows in a list, for
tests of code that adds sinks to a gateway, or that wants to see rows without a database.

    sink = MemorySink()
    gateway = Gateway(providers, log=None, sinks=[sink])
    gateway.chat("mock/m", "hi")
    sink.rows[0].status   # "ok"
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aigw_lab.store.records import CallRecord

__all__ = ["MemorySink"]


class MemorySink:
    """Keeps every row appended to it, in order (thread-safe). ``fail``: an exception that
    `append` raises instead (a broken sink, for tests that a sink's problem never fails a
    call); ``flushes`` counts `flush` calls; ``closed`` says whether `close` was called."""

    def __init__(self, *, name: str = "memory", fail: BaseException | None = None) -> None:
        self.name = name
        self.fail = fail
        self.flushes = 0
        self.closed = False
        self._rows: list[CallRecord] = []
        self._lock = threading.Lock()

    def append(self, record: CallRecord) -> None:
        if self.fail is not None:
            raise self.fail
        with self._lock:
            self._rows.append(record)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    @property
    def rows(self) -> list[CallRecord]:
        """A copy of the rows received so far."""
        with self._lock:
            return list(self._rows)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)
