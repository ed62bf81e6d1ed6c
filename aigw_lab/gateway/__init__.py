"""The gateway: one interface to every provider, middleware primitives, streams."""

from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.cache_stores import DuckDBStore, MemoryStore
from aigw_lab.gateway.call_end import CallEnd, CallObserver
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.gateway.health import CircuitOpenError, HealthTracker
from aigw_lab.gateway.metrics_sink import MetricsSink
from aigw_lab.gateway.middleware import CallContext, Middleware
from aigw_lab.gateway.otel_sink import OtelSink
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.gateway.ratelimit_rules import RateLimitRule
from aigw_lab.gateway.reliability import Fallbacks, Retry, RetryPolicy
from aigw_lab.gateway.shadow import Shadow, ShadowStats
from aigw_lab.gateway.stream import AsyncChatStream, ChatStream

__all__ = [
    "Gateway",
    "CallContext",
    "Middleware",
    "ChatStream",
    "AsyncChatStream",
    "Retry",
    "RetryPolicy",
    "Fallbacks",
    "HealthTracker",
    "CircuitOpenError",
    "ExactCache",
    "MemoryStore",
    "DuckDBStore",
    "Budget",
    "Limit",
    "RateLimiter",
    "RateLimitRule",
    "Shadow",
    "ShadowStats",
    "CallEnd",
    "CallObserver",
    "OtelSink",
    "MetricsSink",
]
