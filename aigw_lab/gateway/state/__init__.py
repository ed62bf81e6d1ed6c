"""Shared state on Redis (or Valkey): the primitives' stores in one server, so several
gateway processes (``aigw-lab serve`` on several machines, or workers) share their rate
limits, budgets, exact cache and circuit breakers (issue 14, docs/deployment.md).

Each store implements its primitive's store protocol (`BucketStore`, `BudgetStore`,
`CacheStore`, `CircuitStore`) with atomic server-side operations, and rides out an outage as
its `Outage` says (fail open or closed, one log line per outage). ``[state]`` in a config
file builds them (`StateSettings`). redis-py is the optional ``redis`` extra; nothing here
imports it until a store is built. The semantic cache's store,
`aigw_lab.gateway.state.semantic.RedisSemanticStore`, is imported from its module (it needs
numpy, which nothing else here loads).
"""

from aigw_lab.errors import SharedStateUnavailableError
from aigw_lab.gateway.state.buckets import RedisBucketStore
from aigw_lab.gateway.state.budgets import RedisBudgetStore
from aigw_lab.gateway.state.cache import RedisCacheStore
from aigw_lab.gateway.state.circuits import RedisCircuitStore
from aigw_lab.gateway.state.connection import (
    REDIS_INSTALL,
    Outage,
    SharedState,
)
from aigw_lab.gateway.state.settings import STATE_TABLE, SharedStores, StateSettings

__all__ = [
    "REDIS_INSTALL",
    "Outage",
    "RedisBucketStore",
    "RedisBudgetStore",
    "RedisCacheStore",
    "RedisCircuitStore",
    "SharedState",
    "SharedStores",
    "STATE_TABLE",
    "StateSettings",
    "SharedStateUnavailableError",
]
