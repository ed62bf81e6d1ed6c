"""The circuit breakers' state behind a store (`aigw_lab.gateway.health_store`): the tracker
keeps the logic, a `CircuitStore` keeps the records, so another store (shared between
processes) can replace the memory one."""

from __future__ import annotations

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import AllAttemptsFailedError, ProviderServerError
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.health_store import Circuit, CircuitStore, MemoryCircuitStore
from aigw_lab.gateway.reliability import Retry
from aigw_lab.testing.fakes import MockProvider


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class CopyingStore:
    """A store that keeps records as plain dicts and hands the tracker a fresh `Circuit`
    per change, saving it back afterwards: the way a store in another process (Redis)
    works. Any state the tracker kept outside the store would be lost here."""

    def __init__(self):
        self.saved: dict[str, dict] = {}
        self.changes = 0

    def _load(self, target):
        data = self.saved[target]
        circuit = Circuit(data["window"])
        for name in Circuit.__slots__:
            if name != "outcomes":
                setattr(circuit, name, data[name])
        circuit.outcomes.extend(data["outcomes"])
        return circuit

    def _save(self, target, circuit):
        data = {name: getattr(circuit, name) for name in Circuit.__slots__}
        data["outcomes"] = list(circuit.outcomes)
        data["window"] = circuit.outcomes.maxlen
        self.saved[target] = data

    def peek(self, target):
        return self._load(target) if target in self.saved else None

    def update(self, target, change, create=None):
        if target in self.saved:
            circuit = self._load(target)
        elif create is None:
            return None
        else:
            circuit = create()
        self.changes += 1
        result = change(circuit)
        self._save(target, circuit)
        return result

    def view(self, read):
        return read({target: self._load(target) for target in self.saved})

    def clear(self, targets=None):
        for target in list(self.saved) if targets is None else targets:
            self.saved.pop(target, None)


def test_the_memory_store_and_a_copying_store_are_circuit_stores():
    assert isinstance(MemoryCircuitStore(), CircuitStore)
    assert isinstance(CopyingStore(), CircuitStore)


@pytest.mark.parametrize("make_store", [MemoryCircuitStore, CopyingStore])
def test_breaker_logic_runs_the_same_over_any_store(make_store):
    clock = Clock()
    store = make_store()
    health = HealthTracker(failure_threshold=2, cooldown=10.0, clock=clock, store=store)
    health.record_failure("a/m")
    assert health.state("a/m") == "closed" and health.allow("a/m")
    health.record_failure("a/m")
    assert health.state("a/m") == "open" and not health.allow("a/m")
    assert health.is_open("a/m") and health.retry_in("a/m") == 10.0
    clock.now += 10.0
    assert health.allow("a/m")  # the probe
    assert not health.allow("a/m")  # a second caller waits for the probe
    health.release("a/m")  # the probe said nothing: its slot is free again
    assert health.allow("a/m")
    health.record_success("a/m")
    snapshot = health.snapshot()["a/m"]
    assert snapshot["state"] == "closed" and snapshot["opens"] == 1
    assert snapshot["total_failures"] == 2 and snapshot["total_successes"] == 1
    health.reset()
    assert health.snapshot() == {} and health.state("a/m") == "closed"


def test_two_trackers_on_one_store_share_what_they_learn():
    clock = Clock()
    store = CopyingStore()
    first = HealthTracker(failure_threshold=1, cooldown=5.0, clock=clock, store=store)
    second = HealthTracker(failure_threshold=1, cooldown=5.0, clock=clock, store=store)
    first.record_failure("a/m")
    assert second.state("a/m") == "open" and not second.allow("a/m")
    clock.now += 5.0
    assert second.allow("a/m")  # second takes the probe ...
    assert not first.allow("a/m")  # ... so first may not send one too
    second.record_success("a/m")
    assert first.state("a/m") == "closed"


def test_reads_of_unknown_targets_create_no_records():
    store = CopyingStore()
    health = HealthTracker(store=store)
    assert health.allow("x/m") and not health.is_open("x/m")
    assert health.state("x/m") == "closed" and health.retry_in("x/m") == 0.0
    health.release("x/m")
    assert store.saved == {} and store.changes == 0


def test_a_gateway_with_a_shared_store_skips_the_target_another_tracker_opened(log):
    clock = Clock()
    store = CopyingStore()
    other = HealthTracker(failure_threshold=1, cooldown=60.0, clock=clock, store=store)
    other.record_failure("a/m")  # learned elsewhere (another process, say)
    a, b = MockProvider("a", models=("m",)), MockProvider("b", models=("m",))
    health = HealthTracker.from_mapping(
        {"failure_threshold": 1, "cooldown": 60.0}, clock=clock, store=store
    )
    retry = Retry(max_attempts=1, clock=clock, fallbacks={"a/m": ["b/m"]}, health=health)
    prices = {"a/m": Price(1.0, 2.0), "b/m": Price(1.0, 2.0)}
    gw = Gateway([a, b], log=log, middleware=[retry], prices=prices)
    assert gw.chat("a/m", "hi").provider == "b" and a.requests == []
    b.enqueue(ProviderServerError("down", provider="b", model="m", status=500))
    with pytest.raises(AllAttemptsFailedError) as info:
        gw.chat("a/m", "hi")
    assert [e.error_type for e in info.value.errors] == ["circuit_open", "server_error"]
    assert store.saved["b/m"]["state"] == "open"
