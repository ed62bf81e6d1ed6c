"""The primitive stacks of the conformance suite: each builds a gateway in front of one
`Upstream`, through public constructors only, and keeps handles on its primitives so the
invariants can read their public state (`Budget.snapshot`, `RateLimiter.snapshot`,
`ExactCache.stats`, `SemanticCache.stats`, `HealthTracker.snapshot`).

Every primitive is built with time frozen (clock returning a constant, sleeps that return
at once), so a test never waits and a bucket never refills behind its back: what a rate
limiter holds after a call is exactly what the call was charged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.gateway import (
    Budget,
    ExactCache,
    Gateway,
    HealthTracker,
    Limit,
    RateLimiter,
    Retry,
)
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.policy import Cascade, CascadeStep, WeightedSplit
from aigw_lab.providers.base import Price

from .doubles import Upstream

__all__ = ["STACKS", "Stack", "build", "REQUESTS_CAPACITY", "TOKENS_CAPACITY", "BUDGET_USD"]

#: Capacities of the rate limiter's two buckets: large enough that no call of the suite
#: is refused by accident, small enough to read exact charges.
REQUESTS_CAPACITY = 1000
TOKENS_CAPACITY = 100_000
BUDGET_USD = 100.0
#: One price for every target: every answer has a known, nonzero cost.
PRICE = Price(input_per_mtok=1_000.0, output_per_mtok=2_000.0)

STACKS = (
    "none",
    "budget",
    "ratelimit-wait",
    "ratelimit-reject",
    "exact-cache",
    "semantic-cache-hashing",
    "semantic-cache-minilm",
    "retry",
    "route-split",
    "route-cascade",
    "full",
)


async def _no_async_sleep(seconds: float) -> None:
    return None


def _frozen() -> float:
    return 1_000.0


@dataclass
class Stack:
    """A gateway in front of ``upstream`` and handles on its primitives. ``address`` is
    what the suite calls (a model, or a policy's name)."""

    name: str
    gateway: Gateway
    upstream: Upstream
    address: str
    budget: Budget | None = None
    limiter: RateLimiter | None = None
    cache: ExactCache | SemanticCache | None = None
    retry: Retry | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    # --- public state the invariants read ----------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        frame = self.gateway.query(
            "SELECT trace_id, attempt, status, error_type, cache_status, budget_usd, cost_usd,"
            " stream, provider_name, request_model, response_text FROM calls"
            " ORDER BY timestamp, attempt"
        )
        return [
            {k: (None if _isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")
        ]

    def budget_state(self) -> dict[str, Any]:
        assert self.budget is not None
        (row,) = self.budget.snapshot()
        return row

    def buckets(self) -> dict[str, float]:
        """Available capacity by limit (``requests_per_minute``, ``tokens_per_minute``);
        empty before the limiter met its first call."""
        assert self.limiter is not None
        return {b["limit"]: b["available"] for b in self.limiter.snapshot()["buckets"]}

    def cache_stats(self) -> Any:
        assert self.cache is not None
        return self.cache.stats()


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _limiter(mode: str) -> RateLimiter:
    return RateLimiter(
        [
            {
                "key": [],
                "requests_per_minute": REQUESTS_CAPACITY,
                "tokens_per_minute": TOKENS_CAPACITY,
            }
        ],
        mode=mode,
        timeout=None,
        clock=_frozen,
        sleep=lambda s: None,
        async_sleep=_no_async_sleep,
    )


def _retry() -> Retry:
    return Retry(
        max_attempts=2,
        base_delay=0.0,
        fallbacks={"up/m": ["up/fb"]},
        health=HealthTracker(failure_threshold=50, clock=_frozen),
        clock=_frozen,
        sleep=lambda s: None,
        async_sleep=_no_async_sleep,
    )


def _reject_first(request: Any, response: Any) -> float:
    return 0.0  # the cheap step's answer is never good enough: every call escalates


def build(
    name: str,
    log: Path,
    *,
    embedder: Callable[[], Any] | None = None,
    upstream: Any = None,
    **gateway_options: Any,
) -> Stack:
    """The stack called ``name`` over ``upstream`` (a provider or spec named ``up``; default
    a fresh `Upstream`), logging to ``log``; ``gateway_options`` go to `Gateway`."""
    upstream = Upstream() if upstream is None else upstream
    middleware: list[Any] = []
    policies: list[Any] = []
    address = "up/m"
    handles: dict[str, Any] = {}
    if name in ("budget", "full"):
        handles["budget"] = Budget([Limit("gateway", BUDGET_USD, "total")], tokenizer="estimate")
    if name in ("ratelimit-wait", "ratelimit-reject", "full"):
        handles["limiter"] = _limiter("reject" if name == "ratelimit-reject" else "wait")
    if name in ("exact-cache", "full"):
        handles["cache"] = ExactCache()
    if name == "semantic-cache-hashing":
        handles["cache"] = SemanticCache(HashingEmbedder(), threshold=0.95)
    if name == "semantic-cache-minilm":
        assert embedder is not None
        handles["cache"] = SemanticCache(embedder(), threshold=0.95)
    if name in ("retry", "full"):
        handles["retry"] = _retry()
    if name in ("route-split", "full"):
        policies.append(WeightedSplit("split", {"up/m": 1, "up/m2": 1}, seed=0))
        address = "split"
    if name == "route-cascade":
        policies.append(
            Cascade("cascade", [CascadeStep("up/m", _reject_first, 0.5), CascadeStep("up/m2")])
        )
        address = "cascade"
    if name not in STACKS:
        raise ValueError(f"unknown stack {name!r}")
    # Handed over in reverse of the documented order: the gateway must sort them.
    middleware = [m for m in handles.values()][::-1]
    gateway = Gateway(
        [upstream],
        log=str(log),
        middleware=middleware,
        policies=policies or None,
        prices={f"up/{m}": PRICE for m in ("m", "m2", "fb")},
        **gateway_options,
    )
    return Stack(name=name, gateway=gateway, upstream=upstream, address=address, **handles)
