"""`RedisCircuitStore`: circuit breakers' records in Redis, so a target one gateway process
found failing is skipped by every process sharing the server and prefix.

Each record is one JSON string per target. `update` reads it, runs the tracker's change and
saves it with a compare-and-set script (saved only if the record is still what was read),
run again when another process changed the record meanwhile; the tracker's changes touch
only the record, so running one again is safe. The tracker's clock must be one the
processes share: `GatewayConfig` builds trackers with wall time (``time.time``) for that.

While Redis does not answer: failing open treats every circuit as closed (calls go to every
target, as without breakers); failing closed treats every circuit as open (calls go to no
target, so they fail over to nothing and are refused with `CircuitOpenError`s).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aigw_lab.gateway.health_store import Circuit
from aigw_lab.gateway.state.connection import Outage, SharedState, import_redis

__all__ = ["RedisCircuitStore"]

T = TypeVar("T")

# KEYS[1]: the record. ARGV[1]: the value it was read as ('' for none), ARGV[2]: the new
# value. Returns {1, new} when it was still the value read (and is now the new one), else
# {0, what is there now} (false: none).
_SWAP = r"""
local now = redis.call('GET', KEYS[1])
if (now or '') ~= ARGV[1] then return {0, now} end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
"""
_RETRIES = 50  # optimistic transactions lost to other processes before giving up
_DEFAULT_WINDOW = 20
_UNREAD = object()


class RedisCircuitStore:
    """`CircuitStore` on a Redis server (see the module doc). ``state``: the `SharedState`;
    ``outage``: fail open (default) or closed; ``clock``: the tracker's clock (an open
    circuit made up while failing closed opened "now")."""

    def __init__(
        self,
        state: SharedState,
        *,
        outage: Outage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = state.client
        self.io = state.io  # the async drivers wait on Redis from these threads
        self._outage = outage or Outage("circuit breakers", "open")
        self._prefix = state.key("circuit", "")
        self._clock = clock
        self._swap = self._client.register_script(_SWAP)
        # One change of a target at a time in this process: threads (the async drivers'
        # store threads, or a sync caller's) would otherwise lose compare-and-sets to each
        # other and run the change again, up to giving up; other processes still may.
        self._changing: dict[str, threading.Lock] = {}
        self._changing_lock = threading.Lock()
        self._seen: dict[str, Any] = {}  # target -> its record as last read (bytes or None)

    def peek(self, target: str) -> Circuit | None:
        raw = self._outage.run(
            lambda: self._client.get(self._prefix + target), self._offline_raw, admits=False
        )
        if raw is None:
            return None
        if isinstance(raw, Circuit):
            return raw
        self._seen[target] = raw
        return _load(raw)

    def update(
        self,
        target: str,
        change: Callable[[Circuit], T],
        create: Callable[[], Circuit] | None = None,
    ) -> T | None:
        name = self._prefix + target

        def run() -> T | None:
            # The record as last read here (a call's `allow` peeks before its outcome is
            # recorded): the compare-and-set checks it, so a stale one only costs a retry.
            raw = self._seen.get(target, _UNREAD)
            if raw is _UNREAD:
                raw = self._client.get(name)
            for _ in range(_RETRIES):
                if raw is None:
                    if create is None:
                        return None
                    circuit = create()
                else:
                    circuit = _load(raw)
                result = change(circuit)
                # Saved only if nobody changed the record since it was read (compare and
                # set, one script): else run the change again on what is there now.
                swapped, raw = self._swap(keys=[name], args=[raw or "", _dump(circuit)])
                self._seen[target] = raw
                if swapped:
                    return result
            raise import_redis().ConnectionError(
                f"circuit {target!r} kept changing under {_RETRIES} tries"
            )

        def offline() -> T | None:
            circuit = self._offline_raw()
            if circuit is None:
                if create is None:
                    return None
                circuit = create()
            return change(circuit)  # on a record nobody keeps

        lock = self._changing.get(target)
        if lock is None:
            with self._changing_lock:
                lock = self._changing.setdefault(target, threading.Lock())
        with lock:
            return self._outage.run(run, offline, admits=False)

    def view(self, read: Callable[[Mapping[str, Circuit]], T]) -> T:
        def run() -> T:
            names = list(self._client.scan_iter(match=self._prefix + "*", count=1000))
            raws = self._client.mget(names) if names else []
            start = len(self._prefix)
            return read(
                {
                    _text(n)[start:]: _load(raw)
                    for n, raw in zip(names, raws, strict=True)
                    if raw is not None
                }
            )

        return self._outage.run(run, lambda: read({}), admits=False)

    def clear(self, targets: Iterable[str] | None = None) -> None:
        def run() -> None:
            if targets is None:
                names = list(self._client.scan_iter(match=self._prefix + "*", count=1000))
            else:
                names = [self._prefix + t for t in targets]
            if names:
                self._client.delete(*names)

        self._seen.clear()
        self._outage.run(run, lambda: None, admits=False)

    def _offline_raw(self) -> Any:
        """The record every target has while Redis is unreachable: none (closed) when
        failing open, a circuit that opened just now when failing closed."""
        if self._outage.fail == "open":
            return None
        circuit = Circuit(_DEFAULT_WINDOW)
        circuit.state = "open"
        circuit.opened_at = self._clock()
        return circuit


def _dump(circuit: Circuit) -> str:
    record: dict[str, Any] = {name: getattr(circuit, name) for name in Circuit.__slots__}
    record["outcomes"] = list(circuit.outcomes)
    record["window"] = circuit.outcomes.maxlen
    return json.dumps(record, separators=(",", ":"))


def _load(raw: Any) -> Circuit:
    record = json.loads(raw)
    circuit = Circuit(record.get("window") or _DEFAULT_WINDOW)
    for name in Circuit.__slots__:
        if name != "outcomes" and name in record:
            setattr(circuit, name, record[name])
    circuit.outcomes.extend(bool(x) for x in record.get("outcomes", ()))
    return circuit


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
