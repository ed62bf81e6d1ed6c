"""Where a `HealthTracker` keeps its circuit breakers' state: the `CircuitStore` interface,
and the in-process store (`MemoryCircuitStore`) used unless another is given.

The tracker holds the breaker logic (when a circuit opens, who gets the probe); a store only
keeps one `Circuit` record per target and runs the tracker's reads and changes of a record
atomically. So a store shared between processes (Redis, say) can replace the memory one
without touching the logic: it loads a record, applies the change and saves it in one
transaction.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, Protocol, TypeVar, runtime_checkable

__all__ = ["Circuit", "CircuitState", "CircuitStore", "MemoryCircuitStore"]

CircuitState = Literal["closed", "open", "half_open"]

T = TypeVar("T")


class Circuit:
    """One target's breaker record: its state, consecutive failures, recent outcomes (True
    for a failure, at most ``window`` of them), when it opened, when its probe started, and
    totals for people."""

    __slots__ = (
        "state",
        "consecutive",
        "outcomes",
        "opened_at",
        "probe_started",
        "opens",
        "total_failures",
        "total_successes",
    )

    def __init__(self, window: int) -> None:
        self.state: CircuitState = "closed"
        self.consecutive = 0
        # Recent outcomes while closed, True for a failure; feeds the failure rate.
        self.outcomes: deque[bool] = deque(maxlen=window)
        self.opened_at: float | None = None
        self.probe_started: float | None = None
        self.opens = 0
        self.total_failures = 0
        self.total_successes = 0


@runtime_checkable
class CircuitStore(Protocol):
    """The circuits of a `HealthTracker`, by target (``"provider/model"``)."""

    def peek(self, target: str) -> Circuit | None:
        """``target``'s record as last seen, without waiting for a lock (None: no record).
        Only for the fast path: a closed circuit lets a call through without more ado."""
        ...

    def update(
        self,
        target: str,
        change: Callable[[Circuit], T],
        create: Callable[[], Circuit] | None = None,
    ) -> T | None:
        """Run ``change`` on ``target``'s record atomically (it may read and modify it) and
        return what it returns. Without a record: make one with ``create`` first, or return
        None without calling ``change`` when ``create`` is None."""
        ...

    def view(self, read: Callable[[Mapping[str, Circuit]], T]) -> T:
        """Run ``read`` over every record at once (a consistent snapshot)."""
        ...

    def clear(self, targets: Iterable[str] | None = None) -> None:
        """Forget the records of ``targets`` (every record when None)."""
        ...


class MemoryCircuitStore:
    """Circuits in this process, guarded by one lock (shared by the trackers and gateways
    that share the store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._circuits: dict[str, Circuit] = {}

    def peek(self, target: str) -> Circuit | None:
        return self._circuits.get(target)

    def update(
        self,
        target: str,
        change: Callable[[Circuit], T],
        create: Callable[[], Circuit] | None = None,
    ) -> T | None:
        with self._lock:
            circuit = self._circuits.get(target)
            if circuit is None:
                if create is None:
                    return None
                circuit = self._circuits[target] = create()
            return change(circuit)

    def view(self, read: Callable[[Mapping[str, Circuit]], T]) -> T:
        with self._lock:
            return read(self._circuits)

    def clear(self, targets: Iterable[str] | None = None) -> None:
        with self._lock:
            if targets is None:
                self._circuits.clear()
            else:
                for target in targets:
                    self._circuits.pop(target, None)

    def __len__(self) -> int:
        return len(self._circuits)
