"""Where a `RateLimiter` keeps its state: the token buckets (levels, first-come-first-served
queues) and the upstream 429 pauses, behind `BucketStore`.

The limiter (`aigw_lab.gateway.ratelimit`) decides which buckets a call needs, how long it
may wait and what it is charged afterwards; the store does the bucket arithmetic, each
operation atomic on its own, so a store shared by several processes (issue 14: Redis, one
script per operation) can replace `MemoryBucketStore` without touching the limiter.

A store tells the limiter when queued calls should look again (capacity came back, the
queue moved, a pause changed) through the callback given to ``subscribe``: the calls now at
the head of a queue that moved (only they can go; a call behind them keeps its own timer),
or None for every waiting call. It never waits.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from itertools import count
from typing import Any, Protocol

from aigw_lab.gateway.ratelimit_rules import RateLimitRule, _Bucket, _Waiter

__all__ = ["BucketStore", "MemoryBucketStore", "Claim"]

#: One rule a call falls under: (rule index, key values, the rule).
Claim = tuple[int, tuple[Any, ...], RateLimitRule]
#: Told which waiting calls should look again (None: all of them).
Wake = Callable[[Collection[_Waiter] | None], None]


class BucketStore(Protocol):
    """The state of one rate limiter. Every method is atomic; ``now`` is the limiter's clock.

    ``_Waiter`` is the limiter's record of one call (its context, token estimate, and the
    ``needs``, ``ticket`` and ``queued`` fields the store fills in and keeps)."""

    def subscribe(self, wake: Wake) -> None:
        """Call ``wake(waiters)`` whenever queued calls should look again: the new heads
        of queues that moved, or None (all) when a pause changed."""

    def has_pauses(self) -> bool:
        """Whether any upstream pause may still hold (a cheap check before claiming)."""

    def arrive(
        self, waiter: _Waiter, claims: Sequence[Claim], now: float, *, join: bool
    ) -> float | None:
        """Fill ``waiter.needs`` (one bucket per limit of each claim, made on first use),
        give it a ticket, then `step` it."""

    def step(self, waiter: _Waiter, now: float, *, join: bool = True) -> float | None:
        """Take what ``waiter`` needs if it may now (0.0); else the seconds until it could,
        or None while it waits behind others. ``join``: queue it (first come, first
        served, per bucket) when it cannot go at once."""

    def leave(self, waiter: _Waiter) -> None:
        """Give up ``waiter``'s queue positions (no-op if it holds none)."""

    def wait_for(self, waiter: _Waiter, now: float) -> tuple[float, float, str, str]:
        """Why ``waiter`` cannot go, for a refusal: ``(paused seconds, bucket seconds,
        paused target, the description of its slowest bucket)``; bucket seconds count the
        calls queued ahead of it."""

    def charge(self, waiter: _Waiter, requests: float, tokens: float, now: float) -> None:
        """Settle ``waiter``'s reservation: its buckets are charged ``requests`` or
        ``tokens`` instead of what they reserved (a refund or a debt, capped at capacity)."""

    def pause(self, target: str, until: float) -> None:
        """Hold every call to ``target`` (a provider or provider/model) until ``until``,
        unless a longer pause holds it already."""

    def snapshot(self, now: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """The bucket rows and the pauses left (target -> seconds), for notebooks."""


class MemoryBucketStore:
    """`BucketStore` in this process: one lock for all buckets, so taking several is
    atomic and waiters join every queue in one global ticket order (no two calls can wait
    on each other). Idle buckets are forgotten once there are many."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[int, tuple[Any, ...]], tuple[_Bucket, ...]] = {}
        self._prune_at = 10_000
        self._pauses: dict[str, float] = {}
        self._tickets = count()
        self._wakes: list[Wake] = []

    def subscribe(self, wake: Wake) -> None:
        self._wakes.append(wake)

    def has_pauses(self) -> bool:
        return bool(self._pauses)

    def arrive(
        self, waiter: _Waiter, claims: Sequence[Claim], now: float, *, join: bool
    ) -> float | None:
        needs = waiter.needs
        tokens = float(waiter.tokens)
        with self._lock:
            for index, key, rule in claims:
                buckets = self._buckets.get((index, key))
                if buckets is None:
                    buckets = self._new_buckets(index, rule, key, now)
                for bucket in buckets:
                    needs.append((bucket, tokens if bucket.counts_tokens else 1.0))
            waiter.ticket = next(self._tickets)
            wait, heads = self._step(waiter, now, join)
        if heads:
            self._wake(heads)
        return wait

    def step(self, waiter: _Waiter, now: float, *, join: bool = True) -> float | None:
        with self._lock:
            wait, heads = self._step(waiter, now, join)
        if heads:
            self._wake(heads)
        return wait

    def leave(self, waiter: _Waiter) -> None:
        if not waiter.queued:
            return
        with self._lock:
            heads = self._leave(waiter)
        if heads:
            self._wake(heads)

    def wait_for(self, waiter: _Waiter, now: float) -> tuple[float, float, str, str]:
        with self._lock:
            paused, target = self._paused_for(waiter, now)
            needs = waiter.needs
            for bucket, _ in needs:
                bucket.refill(now)
            wait = 0.0
            for bucket, amount in needs:
                ahead = 0.0
                for other in bucket.queue:
                    if other is waiter:
                        break
                    ahead += next(a for b, a in other.needs if b is bucket)
                wait = max(wait, bucket.time_for(ahead + amount))
            slowest = max(needs, key=lambda n: n[0].time_for(n[1]))[0].describe() if needs else ""
        return paused, wait, target, slowest

    def charge(self, waiter: _Waiter, requests: float, tokens: float, now: float) -> None:
        heads: list[_Waiter] = []
        with self._lock:
            for bucket, reserved in waiter.needs:
                extra = (tokens if bucket.counts_tokens else requests) - reserved
                if extra:
                    bucket.refill(now)
                    bucket.level = min(bucket.capacity, bucket.level - extra)
                    if extra < 0 and bucket.queue:  # capacity came back to a queue
                        heads.append(bucket.queue[0])
        if heads:
            self._wake(heads)

    def pause(self, target: str, until: float) -> None:
        with self._lock:
            longer = until > self._pauses.get(target, -math.inf)
            if longer:
                self._pauses[target] = until
        if longer:
            self._wake(None)  # a queued call to the target steps out of its queues

    def snapshot(self, now: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
        with self._lock:
            rows = []
            for buckets in self._buckets.values():
                for b in buckets:
                    b.refill(now)
                    rows.append(
                        {
                            "rule": b.rule,
                            "key": b.key,
                            "limit": b.limit,
                            "capacity": b.capacity,
                            "available": b.level,
                            "waiting": len(b.queue),
                            "full_in": b.time_for(b.capacity),
                        }
                    )
            paused = {t: until - now for t, until in self._pauses.items() if until > now}
        return rows, paused

    # --- under the lock ---------------------------------------------------------------------

    def _wake(self, waiters: Collection[_Waiter] | None) -> None:
        for wake in self._wakes:
            wake(waiters)

    def _new_buckets(
        self, index: int, rule: RateLimitRule, key: tuple[Any, ...], now: float
    ) -> tuple[_Bucket, ...]:
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        where = ", ".join(
            f"{f}={'-' if v is None else v}" for f, v in zip(rule.key, key, strict=True)
        )
        buckets = tuple(_Bucket(rule.label, where, limit, now) for limit in rule.limits)
        self._buckets[(index, key)] = buckets
        return buckets

    def _prune(self, now: float) -> None:
        """Forget idle buckets (full, nobody queued): a new one would start the same."""
        for k, buckets in list(self._buckets.items()):
            for b in buckets:
                b.refill(now)
            if all(b.level >= b.capacity and not b.queue for b in buckets):
                del self._buckets[k]
        self._prune_at = max(10_000, 2 * len(self._buckets))

    def _step(self, waiter: _Waiter, now: float, join: bool) -> tuple[float | None, list[_Waiter]]:
        """`step`, and the new heads of the queues it left (the lock held)."""
        if self._pauses:
            paused, _ = self._paused_for(waiter, now)
            if paused > 0.0:
                # Don't hold up calls to other providers that share a bucket.
                return paused, self._leave(waiter)
        needs = waiter.needs
        for bucket, _ in needs:
            bucket.refill(now)
        if not waiter.queued:
            if all(not b.queue and b.time_for(a) == 0.0 for b, a in needs):
                self._take(waiter)
                return 0.0, _NONE
            if not join:
                return None, _NONE  # the caller refuses; `wait_for` says how long
            for bucket, _ in needs:
                _enqueue(bucket.queue, waiter)
            waiter.queued = True
        if any(b.queue[0] is not waiter for b, _ in needs):
            return None, _NONE
        wait = max(b.time_for(a) for b, a in needs)
        if wait == 0.0:
            return 0.0, self._take(waiter)
        return wait, _NONE

    def _take(self, waiter: _Waiter) -> list[_Waiter]:
        queued = waiter.queued
        for bucket, amount in waiter.needs:
            bucket.level -= amount
            if queued:
                bucket.queue.popleft()
        waiter.granted = True
        waiter.queued = False
        return _heads(waiter) if queued else _NONE  # they lead now and start their own timer

    def _leave(self, waiter: _Waiter) -> list[_Waiter]:
        if not waiter.queued:
            return _NONE
        waiter.queued = False
        for bucket, _ in waiter.needs:
            bucket.queue.remove(waiter)
        return _heads(waiter)

    def _paused_for(self, waiter: _Waiter, now: float) -> tuple[float, str]:
        """Seconds left of an upstream pause covering the call's target, and the paused
        target (the provider/model when both are paused)."""
        pauses = self._pauses
        ctx = waiter.ctx
        provider = ctx.provider_name
        if not pauses:
            return 0.0, provider
        left = 0.0
        address = ctx.address
        for target in (provider, address):
            until = pauses.get(target)
            if until is not None:
                if until <= now:
                    del pauses[target]
                else:
                    left = max(left, until - now)
        return left, address if address in pauses else provider


_NONE: list[_Waiter] = []  # never appended to: "nobody to wake", without a new list


def _heads(waiter: _Waiter) -> list[_Waiter]:
    """Who leads the queues ``waiter`` just left, each once (the lock held)."""
    heads: list[_Waiter] = []
    for bucket, _ in waiter.needs:
        if bucket.queue and bucket.queue[0] not in heads:
            heads.append(bucket.queue[0])
    return heads


def _enqueue(queue: deque[_Waiter], waiter: _Waiter) -> None:
    """Join ``queue`` in ticket order (a call rejoining after a pause keeps its place)."""
    if not queue or queue[-1].ticket < waiter.ticket:
        queue.append(waiter)
        return
    for i, other in enumerate(queue):
        if other.ticket > waiter.ticket:
            queue.insert(i, waiter)
            return
