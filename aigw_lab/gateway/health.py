"""Per-target health: a circuit breaker for each ``provider/model`` a gateway calls.

A target's circuit is *closed* while it answers. Too many provider-side failures in a row
(``failure_threshold``), or too high a share of failures among its recent calls
(``failure_rate`` over the last ``window`` outcomes, once ``min_calls`` are in), *open* it:
for ``cooldown`` seconds the `Retry` middleware skips it without sending a request. After the
cooldown it is *half-open*: one request goes through as a probe; success closes the circuit,
failure opens it for another cooldown.

Only failures that say something about the target count (the provider errors that are
retryable, and quota): a user's invalid request, a bad key or a cancelled call never opens a
circuit.

    health = HealthTracker(failure_threshold=5, cooldown=30)
    gateway = Gateway(providers, middleware=[Retry(fallbacks=..., health=health)])
    health.snapshot()   # {"sim-openai/sim-small": {"state": "open", "failures": 5, ...}}

The tracker is thread-safe and may be shared by several gateways; time comes from the
injected ``clock`` (monotonic seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

from aigw_lab.config_schema import Key, Table
from aigw_lab.errors import (
    AigwError,
    AllAttemptsFailedError,
    ConfigError,
    ContextLengthExceededError,
    QuotaExceededError,
)
from aigw_lab.gateway.health_store import (
    Circuit,
    CircuitState,
    CircuitStore,
    MemoryCircuitStore,
)

__all__ = [
    "HealthTracker",
    "CircuitStore",
    "MemoryCircuitStore",
    "CircuitOpenError",
    "CircuitState",
    "counts_against_health",
    "should_fall_back",
]


class CircuitOpenError(AigwError):
    """A target was skipped, without a request, because its circuit is open.

    It appears in `AllAttemptsFailedError.errors` for each target skipped that way;
    ``target`` names it and ``retry_in`` says how many seconds remain of its cooldown.
    """

    error_type = "circuit_open"

    def __init__(self, target: str, *, retry_in: float) -> None:
        self.target = target
        self.retry_in = retry_in
        super().__init__(
            f"{target} was skipped: its circuit is open after repeated failures",
            hint=f"it gets a probe request in {retry_in:.1f}s; see HealthTracker.snapshot()",
        )


def counts_against_health(error: BaseException) -> bool:
    """True for failures that say the target is unwell: retryable provider errors (rate
    limits, 5xx, overload, network, timeouts, broken answers) and an exhausted quota."""
    return isinstance(error, AigwError) and (
        error.retryable or isinstance(error, QuotaExceededError)
    )


def should_fall_back(error: BaseException) -> bool:
    """True when another target may succeed where this one failed: the retry stage's own
    classification (`counts_against_health`: retryable errors and an exhausted quota), a
    prompt too long for this model, or the retry stage having given up on the target.
    (A routing policy's fallback chain and the route stage's streams move on by it.)"""
    if isinstance(error, AllAttemptsFailedError):
        return True
    if isinstance(error, ContextLengthExceededError):
        return True
    return counts_against_health(error)


def _check_number(name: str, value: Any, *, integer: bool) -> None:
    """A `ConfigError` when a setting from a file is not a (finite) number, before it is
    compared with one (a TOML ``failure_threshold = "5"`` would be a TypeError there)."""
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
        raise ConfigError(
            f"{name}={value!r} must be {'an integer' if integer else 'a number'}",
            hint=f"write {name} without quotes, e.g. {name} = {5 if integer else 0.5}",
        )


class HealthTracker:
    """Circuit breakers keyed by target (``"provider/model"``).

    ``failure_threshold``: consecutive failures that open a circuit (None: not used).
    ``failure_rate``: share of failures among the last ``window`` outcomes that opens it,
    judged once ``min_calls`` outcomes are in (None: not used). ``cooldown``: seconds a
    circuit stays open before a probe; a probe that never reports back is given up after
    another ``cooldown``, so a lost probe cannot keep a target out forever.
    ``store``: where the circuits are kept (a `CircuitStore`; None: in this process).
    """

    def __init__(
        self,
        *,
        failure_threshold: int | None = 5,
        failure_rate: float | None = None,
        window: int = 20,
        min_calls: int = 10,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        store: CircuitStore | None = None,
    ) -> None:
        for name, value in (
            ("failure_threshold", failure_threshold),
            ("failure_rate", failure_rate),
            ("window", window),
            ("min_calls", min_calls),
            ("cooldown", cooldown),
        ):
            _check_number(name, value, integer=name in ("failure_threshold", "window", "min_calls"))
        if failure_threshold is None and failure_rate is None:
            raise ConfigError(
                "a HealthTracker needs failure_threshold or failure_rate",
                hint="e.g. HealthTracker(failure_threshold=5)",
            )
        if failure_threshold is not None and failure_threshold < 1:
            raise ConfigError(
                f"failure_threshold={failure_threshold} is invalid", hint="use 1 or more"
            )
        if failure_rate is not None and not 0.0 < failure_rate <= 1.0:
            raise ConfigError(f"failure_rate={failure_rate} is invalid", hint="use (0, 1]")
        if window < 1 or min_calls < 1 or min_calls > window:
            raise ConfigError(
                f"window={window}, min_calls={min_calls} is invalid",
                hint="use 1 <= min_calls <= window",
            )
        if cooldown < 0:
            raise ConfigError(f"cooldown={cooldown} is negative", hint="use seconds >= 0")
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.window = window
        self.min_calls = min_calls
        self.cooldown = float(cooldown)
        self._clock = clock
        self._store: CircuitStore = MemoryCircuitStore() if store is None else store
        # A store that waits on the network (Redis) names the threads to wait on.
        self.io: Executor | None = getattr(self._store, "io", None)

    @classmethod
    def from_mapping(
        cls,
        settings: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        store: CircuitStore | None = None,
    ) -> HealthTracker:
        """Build from a plain mapping of this class's keyword arguments (a ``[health]`` table);
        an unknown key is a `ConfigError` naming it."""
        HEALTH_TABLE.validate(settings, "[health]")
        return cls(**settings, clock=clock, store=store)

    def __repr__(self) -> str:
        return (
            f"<HealthTracker threshold={self.failure_threshold} rate={self.failure_rate} "
            f"cooldown={self.cooldown}s targets={self._store.view(len)}>"
        )

    # --- used by the Retry middleware ---------------------------------------------------

    def allow(self, target: str) -> bool:
        """Whether a request may go to ``target`` now. While open after the cooldown, the
        first caller gets True (it is the probe) and the others False until it reports."""
        circuit = self._store.peek(target)
        if circuit is None or circuit.state == "closed":
            return True  # the common case, without taking the lock
        return self._store.update(target, self._claim) is not False

    def is_open(self, target: str) -> bool:
        """True while ``target`` must not be sent a request (open, or half-open with its
        probe in flight). Unlike `allow` it never claims the probe."""
        circuit = self._store.peek(target)
        if circuit is None or circuit.state == "closed":
            return False
        return bool(self._store.update(target, self._retry_in_now))

    def record_success(self, target: str) -> None:
        """``target`` answered: close its circuit."""
        self._store.update(target, _succeeded, self._new_circuit)

    def record_failure(self, target: str) -> None:
        """``target`` failed on its side: count it, and open the circuit when a threshold is
        reached (or at once when the failure was a half-open probe)."""
        self._store.update(target, self._failed, self._new_circuit)

    def release(self, target: str) -> None:
        """A request to ``target`` ended without saying anything about its health (the
        user's invalid request, a cancelled call): free the probe slot if it held it."""
        circuit = self._store.peek(target)
        if circuit is None or circuit.state != "half_open":
            return
        self._store.update(target, _released)

    # --- for people -----------------------------------------------------------------------

    def state(self, target: str) -> CircuitState:
        """``target``'s state now; an open circuit past its cooldown reads as half-open."""
        found = self._store.update(target, lambda c: self._state(c, self._clock()))
        return "closed" if found is None else found

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every known target's circuit, for notebooks: ``state``, ``failures`` (consecutive),
        ``failure_rate`` (recent window, None while empty), ``opened_at`` (clock seconds, None
        when closed), ``retry_in`` (seconds until a probe may go), ``opens`` (times opened),
        ``total_failures``, ``total_successes``."""
        return self._store.view(self._snapshot)

    def retry_in(self, target: str) -> float:
        """Seconds until ``target`` may be sent a request (0.0 when it may now)."""
        return self._store.update(target, self._retry_in_now) or 0.0

    def reset(self, targets: Iterable[str] | None = None) -> None:
        """Forget the given targets' history (all targets when None): their circuits close."""
        self._store.clear(targets)

    # --- changes and reads of one circuit, run by the store atomically --------------------

    def _new_circuit(self) -> Circuit:
        return Circuit(self.window)

    def _claim(self, circuit: Circuit) -> bool:
        now = self._clock()
        if circuit.state == "closed":
            return True
        if circuit.state == "open":
            assert circuit.opened_at is not None
            if now - circuit.opened_at < self.cooldown:
                return False
            circuit.state = "half_open"
        elif circuit.probe_started is not None and now - circuit.probe_started < self.cooldown:
            return False  # a probe is in flight
        circuit.probe_started = now
        return True

    def _failed(self, circuit: Circuit) -> None:
        now = self._clock()
        circuit.total_failures += 1
        circuit.consecutive += 1
        if circuit.state == "half_open":
            self._open(circuit, now)
            return
        if circuit.state == "open":
            return  # a request that started before the circuit opened
        circuit.outcomes.append(True)
        if self._tripped(circuit):
            self._open(circuit, now)

    def _retry_in_now(self, circuit: Circuit) -> float:
        return self._retry_in(circuit, self._clock())

    def _snapshot(self, circuits: Mapping[str, Circuit]) -> dict[str, dict[str, Any]]:
        now = self._clock()
        return {
            target: {
                "state": self._state(c, now),
                "failures": c.consecutive,
                "failure_rate": (sum(c.outcomes) / len(c.outcomes)) if c.outcomes else None,
                "opened_at": c.opened_at,
                "retry_in": self._retry_in(c, now),
                "opens": c.opens,
                "total_failures": c.total_failures,
                "total_successes": c.total_successes,
            }
            for target, c in sorted(circuits.items())
        }

    def _tripped(self, circuit: Circuit) -> bool:
        if self.failure_threshold is not None and circuit.consecutive >= self.failure_threshold:
            return True
        if self.failure_rate is None or len(circuit.outcomes) < self.min_calls:
            return False
        return sum(circuit.outcomes) / len(circuit.outcomes) >= self.failure_rate

    @staticmethod
    def _open(circuit: Circuit, now: float) -> None:
        circuit.state = "open"
        circuit.opened_at = now
        circuit.probe_started = None
        circuit.opens += 1

    def _state(self, circuit: Circuit, now: float) -> CircuitState:
        if circuit.state == "open" and circuit.opened_at is not None:
            if now - circuit.opened_at >= self.cooldown:
                return "half_open"
        return circuit.state

    def _retry_in(self, circuit: Circuit, now: float) -> float:
        if circuit.state == "open" and circuit.opened_at is not None:
            return max(0.0, circuit.opened_at + self.cooldown - now)
        if circuit.state == "half_open" and circuit.probe_started is not None:
            return max(0.0, circuit.probe_started + self.cooldown - now)
        return 0.0


#: ``[health]``: `HealthTracker`'s keyword arguments (it checks their values).
HEALTH_TABLE = Table(
    keys=tuple(
        Key(name=name, what=f"HealthTracker's {name}", doc=doc)
        for name, doc in (
            ("failure_threshold", "failures in a row that open a target's circuit (default 5)"),
            ("failure_rate", "or: the failed share of the last `window` calls that opens it"),
            ("window", "calls the failure rate is measured over (default 20)"),
            ("min_calls", "calls in the window before the rate counts (default 10)"),
            ("cooldown", "seconds an open circuit waits before one trial call (default 30)"),
        )
    )
)


def _succeeded(circuit: Circuit) -> None:
    circuit.total_successes += 1
    circuit.consecutive = 0
    if circuit.state != "closed":
        # A fresh start: failures before the outage must not re-open it at once.
        circuit.state = "closed"
        circuit.outcomes.clear()
        circuit.opened_at = None
        circuit.probe_started = None
    circuit.outcomes.append(False)


def _released(circuit: Circuit) -> None:
    circuit.probe_started = None
