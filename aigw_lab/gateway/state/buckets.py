"""`RedisBucketStore`: a `RateLimiter`'s token buckets in Redis, shared by every process (and
machine) whose limiter uses the same server and prefix, so a limit of 10 a minute admits 10 a
minute in all of them together, not 10 in each.

Each operation is one Lua script (`aigw_lab.gateway.state.buckets_lua`), atomic on the
server. Waiting is fair across processes: a call that must wait joins each bucket's queue
under a ticket drawn from one counter on the server, and only the head of every queue it is
in may take. A process learns that a queue moved at once for its own calls (the store wakes
them, as the memory store does) and by looking again every ``poll`` seconds for the calls of
other processes. A queued call whose process died stops looking and is dropped after
``lease`` seconds. Time is the server's clock (``TIME``), so the processes' clocks need not
agree; ``times="caller"`` uses the limiter's ``now`` instead (tests pass explicit times).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

from aigw_lab.gateway.ratelimit_rules import _Waiter, describe_limit
from aigw_lab.gateway.ratelimit_store import Claim, Wake
from aigw_lab.gateway.state import buckets_lua as lua
from aigw_lab.gateway.state.connection import Outage, SharedState

__all__ = ["RedisBucketStore"]


class _SharedBucket:
    """One bucket of the server, as a waiter's ``needs`` names it."""

    __slots__ = ("key", "rule", "where", "limit", "capacity", "rate", "counts_tokens")

    def __init__(self, key: str, rule: str, where: str, limit: tuple[str, float, float]) -> None:
        self.key = key
        self.rule = rule
        self.where = where
        self.limit = limit[0]
        self.capacity = limit[1]
        self.rate = limit[1] / limit[2]
        self.counts_tokens = limit[0].startswith("tokens")

    def describe(self) -> str:
        return describe_limit(self.rule, self.where, self.limit, self.capacity)


class RedisBucketStore:
    """`BucketStore` on a Redis server (see the module doc).

    ``state``: the `SharedState` (client and key prefix). ``outage``: what to do while Redis
    does not answer (default: fail open, i.e. admit calls unlimited and log it once).
    ``poll``: seconds between looks of a call queued behind another process's call (None:
    wait to be woken, for a store only one process uses). ``lease``: seconds after which a
    queued call that stopped looking loses its place. ``times``: ``"server"`` (the server's
    clock) or ``"caller"`` (the ``now`` the limiter passes). ``clock``: the limiter's clock,
    to turn its pause deadlines into durations.
    """

    def __init__(
        self,
        state: SharedState,
        *,
        outage: Outage | None = None,
        poll: float | None = 0.05,
        lease: float = 10.0,
        times: Literal["server", "caller"] = "server",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._client = state.client
        self.io = state.io  # the async drivers wait on Redis from these threads
        self._outage = outage or Outage("rate limits", "open")
        self._poll = poll
        self._lease = lease
        self._caller_time = times == "caller"
        self._clock = clock
        self._pauses = state.key("rl", "pauses")
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("step", lua.STEP),
                ("leave", lua.LEAVE),
                ("wait_for", lua.WAIT_FOR),
                ("charge", lua.CHARGE),
                ("pause", lua.PAUSE),
            )
        }
        self._lock = threading.Lock()
        self._wakes: list[Wake] = []
        self._buckets: dict[tuple[int, tuple[Any, ...], str], _SharedBucket] = {}
        # This process's queued calls by ticket, to wake the ones a script names (a call
        # leaves it when it stops queueing: it goes, leaves, or steps out for a pause).
        self._mine: dict[str, _Waiter] = {}

    # --- the protocol ---------------------------------------------------------------------

    def subscribe(self, wake: Wake) -> None:
        self._wakes.append(wake)

    def has_pauses(self) -> bool:
        return bool(
            self._outage.run(lambda: self._client.exists(self._pauses), lambda: 0, admits=False)
        )

    def arrive(
        self, waiter: _Waiter, claims: Sequence[Claim], now: float, *, join: bool
    ) -> float | None:
        tokens = float(waiter.tokens)
        needs = waiter.needs
        for index, key, rule in claims:
            for limit in rule.limits:
                bucket = self._bucket(index, key, rule, limit)
                needs.append((bucket, tokens if bucket.counts_tokens else 1.0))  # type: ignore[arg-type]
        return self.step(waiter, now, join=join)

    def step(self, waiter: _Waiter, now: float, *, join: bool = True) -> float | None:
        def run() -> float | None:
            ticket = "" if waiter.ticket < 0 else str(waiter.ticket)
            reply = self._scripts["step"](
                keys=[b.key for b, _ in waiter.needs],
                args=[
                    self._now(now),
                    self._lease,
                    ticket,
                    "1" if join else "0",
                    "1" if waiter.queued else "0",
                    self._pauses,
                    waiter.ctx.provider_name,
                    waiter.ctx.address,
                    *self._bucket_args(waiter.needs),
                ],
            )
            return self._after_step(waiter, reply)

        def fail_open() -> float | None:
            waiter.needs.clear()  # nothing reserved: nothing to charge afterwards
            waiter.granted = True
            waiter.queued = False
            return 0.0

        return self._outage.run(run, fail_open, admits=True)

    def leave(self, waiter: _Waiter) -> None:
        if not waiter.queued:
            return
        waiter.queued = False
        self._mine.pop(str(waiter.ticket), None)
        heads = self._outage.run(
            lambda: self._scripts["leave"](
                keys=[b.key for b, _ in waiter.needs],
                args=[self._now(0.0), self._lease, str(waiter.ticket)],
            ),
            list,
            admits=False,
        )
        self._wake_heads(heads)

    def wait_for(self, waiter: _Waiter, now: float) -> tuple[float, float, str, str]:
        needs = waiter.needs

        def run() -> tuple[float, float, str, str]:
            paused, wait, target, slowest = self._scripts["wait_for"](
                keys=[b.key for b, _ in needs],
                args=[
                    self._now(now),
                    self._lease,
                    str(waiter.ticket),
                    self._pauses,
                    waiter.ctx.provider_name,
                    waiter.ctx.address,
                    *self._bucket_args(needs),
                ],
            )
            described = needs[int(slowest) - 1][0].describe() if needs else ""
            return float(paused), float(wait), _text(target), described

        return self._outage.run(
            run, lambda: (0.0, self._outage.retry_every, "", "shared rate limits"), admits=False
        )

    def charge(self, waiter: _Waiter, requests: float, tokens: float, now: float) -> None:
        deltas = [
            (bucket, (tokens if bucket.counts_tokens else requests) - reserved)
            for bucket, reserved in waiter.needs
        ]
        if not any(delta for _, delta in deltas):
            return
        args: list[Any] = [self._now(now), self._lease]
        for bucket, delta in deltas:
            args += [_num(bucket.capacity), _num(bucket.rate), _num(delta)]
        heads = self._outage.run(
            lambda: self._scripts["charge"](keys=[b.key for b, _ in deltas], args=args),
            list,
            admits=False,
        )
        self._wake_heads(heads)

    def pause(self, target: str, until: float) -> None:
        if self._caller_time:  # the limiter's clock is the store's: store the deadline
            args = ["0", target, _num(until)]
        else:
            args = ["", target, _num(until - self._clock())]
        longer = self._outage.run(
            lambda: self._scripts["pause"](keys=[self._pauses], args=args), lambda: 0, admits=False
        )
        if longer:
            self._wake(None)

    def snapshot(self, now: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """The rows of the buckets this process has used (their levels as the server has
        them now), and the pauses every process set."""
        with self._lock:
            buckets = list(self._buckets.values())

        def run() -> tuple[list[dict[str, Any]], dict[str, float]]:
            pipe = self._client.pipeline(transaction=True)
            pipe.time()
            for b in buckets:
                pipe.hmget(b.key, "level", "updated")
                pipe.zcard(b.key + ":q")
            pipe.hgetall(self._pauses)
            replies = pipe.execute()
            server = replies[0][0] + replies[0][1] / 1e6
            at = now if self._caller_time else server
            rows = []
            for i, b in enumerate(buckets):
                (level, updated), waiting = replies[1 + 2 * i], replies[2 + 2 * i]
                available = b.capacity
                if level is not None:
                    gap = max(0.0, at - float(updated))
                    available = min(b.capacity, float(level) + gap * b.rate)
                rows.append(
                    {
                        "rule": b.rule,
                        "key": b.where,
                        "limit": b.limit,
                        "capacity": b.capacity,
                        "available": available,
                        "waiting": waiting,
                        "full_in": max(0.0, (b.capacity - available) / b.rate),
                    }
                )
            paused = {_text(t): float(u) - at for t, u in replies[-1].items() if float(u) > at}
            return rows, paused

        return self._outage.run(run, lambda: ([], {}), admits=False)

    # --- helpers ------------------------------------------------------------------------------

    def _now(self, now: float) -> str:
        return _num(now) if self._caller_time else ""

    def _bucket(
        self, index: int, key: tuple[Any, ...], rule: Any, limit: tuple[str, float, float]
    ) -> _SharedBucket:
        with self._lock:
            found = self._buckets.get((index, key, limit[0]))
            if found is not None:
                return found
            # Key values come from clients (user, tenant): hashed, never spliced into a key.
            # The rule and its amounts are in the name, so a changed limit starts afresh.
            ident = json.dumps([rule.label, list(rule.key), [str(v) for v in key], limit])
            digest = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
            where = ", ".join(
                f"{f}={'-' if v is None else v}" for f, v in zip(rule.key, key, strict=True)
            )
            bucket = _SharedBucket(self._state.key("rl", "b", digest), rule.label, where, limit)
            if len(self._buckets) < 10_000:  # only for snapshots: bounded
                self._buckets[(index, key, limit[0])] = bucket
            return bucket

    @staticmethod
    def _bucket_args(needs: Sequence[tuple[Any, float]]) -> list[str]:
        args: list[str] = []
        for bucket, amount in needs:
            args += [_num(bucket.capacity), _num(bucket.rate), _num(amount)]
        return args

    def _after_step(self, waiter: _Waiter, reply: list[Any]) -> float | None:
        status, ticket, value, queued, *heads = (_text(part) for part in reply)
        waiter.ticket = int(ticket)
        waiter.queued = queued == "1"
        if waiter.queued:
            self._mine[ticket] = waiter
        else:
            self._mine.pop(ticket, None)
        self._wake_heads(heads)
        if status == "go":
            waiter.granted = True
            return 0.0
        if status == "no":
            return None
        if status == "behind":
            # Another process's call may lead: look again (its process cannot wake this one).
            return self._poll
        wait = float(value)
        if waiter.queued and self._poll is not None:
            wait = min(wait, self._lease / 3)  # keep looking, or lose the place
        return wait

    def _wake_heads(self, heads: Collection[Any]) -> None:
        if not heads:
            return
        tickets = dict.fromkeys(_text(h) for h in heads)  # each once, in order
        mine = [w for w in (self._mine.get(t) for t in tickets) if w is not None]
        if mine:
            self._wake(mine)

    def _wake(self, waiters: Collection[_Waiter] | None) -> None:
        for wake in self._wakes:
            wake(waiters)


def _num(value: float) -> str:
    return repr(float(value))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
