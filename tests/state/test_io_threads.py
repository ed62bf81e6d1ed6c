"""``[state] io_threads``: how many threads the async modes wait on Redis from; 0 runs the
stores' calls on the event loop (less CPU on a nearby Redis, but the loop waits)."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.state.settings import StateSettings

ENV = {"AIGW_REDIS_URL": "redis://127.0.0.1:1/0"}  # never connected: nothing is called


def _every_store(stores):
    return [stores.buckets(), stores.budgets(), stores.cache(), stores.circuits()]


def _stores(**extra):
    table = {"backend": "redis", "url_env": "AIGW_REDIS_URL", **extra}
    return StateSettings.from_table(table, ENV).stores()


def test_the_default_is_sixteen_threads_shared_by_every_store():
    stores = _stores()
    try:
        assert stores.state.io is not None and stores.state.io._max_workers == 16
        assert all(store.io is stores.state.io for store in _every_store(stores))
    finally:
        stores.state.close()


def test_zero_threads_runs_the_stores_on_the_loop():
    stores = _stores(io_threads=0)
    try:
        assert stores.state.io is None
        assert all(store.io is None for store in _every_store(stores))
    finally:
        stores.state.close()  # no threads to stop: closing still works


def test_a_chosen_count_is_used():
    stores = _stores(io_threads=3)
    try:
        assert stores.state.io._max_workers == 3
    finally:
        stores.state.close()


@pytest.mark.parametrize("bad", [-1, 257, 2.5, "4", True])
def test_a_bad_count_is_a_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match="io_threads"):
        _stores(io_threads=bad)


def test_io_threads_without_redis_is_refused():
    with pytest.raises(ConfigError, match="io_threads applies only"):
        StateSettings.from_table({"io_threads": 4}, ENV)
