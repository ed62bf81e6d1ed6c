"""Fixtures of the shared-state tests: a real redis-server (one per module; each test keeps
its own key prefix) and one per test for the tests that kill and restart it."""

from __future__ import annotations

import itertools

import pytest

from aigw_lab.gateway.state import SharedState
from aigw_lab.store import CallLog
from tests.state.redis_server import RedisServer

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path):
    """A server of this test alone (it may kill and restart it)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shared(redis_server, request):
    """A `SharedState` on the module's server, under a prefix of this test alone."""
    state = SharedState.from_url(redis_server.url, prefix=f"t{next(_prefixes)}:")
    yield state
    state.close()


@pytest.fixture
def log(new_log_path):
    """A real DuckDB call log in the test's temporary folder, closed (so flushed) after."""
    with CallLog(new_log_path) as call_log:
        yield call_log
