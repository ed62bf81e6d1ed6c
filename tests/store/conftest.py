"""Shared helpers for the call-log tests: a CallRecord factory, an injectable insert hook,
and the two backends every test of a module using `CallLog` runs on (``log_backend``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aigw_lab.store.records import CallRecord
from tests._log_engine import open_logs_on

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

#: "own": each `CallLog` starts a DuckDB instance of its own (the default); "engine": it is
#: attached to the suite's shared `LogEngine` (``log_engine``), as ``engine=`` does.
LOG_BACKENDS = ("own", "engine")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of a module that uses `CallLog` runs once per backend (ibis style: one
    suite, both open paths); other store modules (batches, the spool's format) run once."""
    if getattr(metafunc.module, "CallLog", None) is None:
        return
    own_only = metafunc.definition.get_closest_marker("own_instance") is not None
    metafunc.parametrize("log_backend", ("own",) if own_only else LOG_BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def log_backend(request, monkeypatch) -> str:
    """The backend this test's logs open on: with "engine", a `CallLog` opened without
    ``engine=`` or ``config=`` (a config is an own instance's) is attached to the suite's
    engine; the rest of the test is unchanged."""
    backend = getattr(request, "param", "own")
    if backend == "engine":
        open_logs_on(request.getfixturevalue("log_engine"), monkeypatch)
    return backend


@pytest.fixture(autouse=True)
def _batches_without_pyarrow(monkeypatch):
    """``AIGW_LAB_TEST_NO_PYARROW=1 pytest tests/store`` runs every store test on the pandas
    batches a core install uses (pyarrow is optional; dev installs it, so Arrow is the
    default here)."""
    if os.environ.get("AIGW_LAB_TEST_NO_PYARROW") == "1":
        from aigw_lab.store import batches

        monkeypatch.setattr(batches, "arrow_installed", lambda: False)


def make_record(i: int = 0, **overrides: Any) -> CallRecord:
    """A successful call row, numbered ``i`` (ids and timestamp derive from it)."""
    values: dict[str, Any] = {
        "call_id": f"call-{i:07d}",
        "trace_id": f"trace-{i:07d}",
        "timestamp": _EPOCH + timedelta(milliseconds=i),
        "provider_name": "openai",
        "request_model": "gpt-4o-mini",
    }
    values.update(overrides)
    return CallRecord(**values)


@pytest.fixture
def record() -> Callable[..., CallRecord]:
    return make_record


class InsertGate:
    """A ``before_insert`` hook: can hold the writer at the next insert, or make inserts fail.

    ``hold()`` makes the writer block before inserting until ``release()``; ``entered`` is set
    once it is blocked. ``fail_with`` set to an exception makes every attempt raise it.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self.fail_with: BaseException | None = None
        self.attempts: list[int] = []

    def hold(self) -> None:
        self.entered.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __call__(self, rows: int) -> None:
        self.attempts.append(rows)
        if not self._open.is_set():
            self.entered.set()
            assert self._open.wait(10), "test never released the writer"
        if self.fail_with is not None:
            raise self.fail_with


@pytest.fixture
def gate() -> InsertGate:
    return InsertGate()
