"""Rate limits as one sans-IO primitive: `RateLimiter` (kind ``"rate_limit"``).

    limiter = RateLimiter(
        [
            {"key": ["tenant", "model"], "requests_per_minute": 60, "tokens_per_minute": 100_000},
            {"key": ["user"], "requests_per_second": 2},
        ],
        mode="wait",        # or "reject"
        timeout=30.0,       # seconds a call may wait for capacity
    )
    gateway = Gateway(providers, middleware=[limiter])
    limiter.snapshot()      # bucket levels, queues and paused providers, for notebooks

Each rule keeps one token bucket per distinct value of its ``key`` (any of ``user``,
``tenant``, ``provider``, ``model``) and per limit it sets: a bucket holds up to the limit's
amount and refills continuously at amount/interval, so over any window of W seconds it admits
at most ``amount + amount * W / interval``. A call must pass every rule that applies to it.

Token limits count input plus output tokens. Before the call they take an estimate (see
`estimate_tokens`); afterwards the buckets are charged what the call really used: the
answer's ``usage.total_tokens``, one request per attempt that was sent, nothing for a call
that never reached a provider (a cache hit). A failed call gives back its token estimate.

When a bucket is empty, mode ``"wait"`` queues the call (first come, first served, per
bucket) for up to ``timeout`` seconds; mode ``"reject"`` refuses it at once. Either way a
refused call raises `RateLimitedError` with ``retry_after``. An upstream HTTP 429 with a
Retry-After pauses that provider (or provider/model) for every caller. See docs/rate_limits.md.

The limiter never waits itself: ``admit`` answers `Proceed` (carrying the call's claim),
`Wait` (with a future resolved when capacity comes back, so threads and tasks share one
queue in arrival order) or raises the refusal, and the gateway's drivers do the waiting. The
buckets and pauses live in a `BucketStore` (`aigw_lab.gateway.ratelimit_store`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any

from aigw_lab.errors import AllAttemptsFailedError, ConfigError, RateLimitedError
from aigw_lab.gateway.middleware import CallContext, Primitive
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Verdict, Wait
from aigw_lab.gateway.ratelimit_rules import (  # split out for size
    _FIELD_OF,
    CHARS_PER_TOKEN,
    RATE_LIMITS_TABLE,
    RateLimitRule,
    _Waiter,
    describe_limit,
    estimate_tokens,
)
from aigw_lab.gateway.ratelimit_store import BucketStore, Claim, MemoryBucketStore
from aigw_lab.types import ChatRequest, StreamEvent, TextDelta

__all__ = [
    "RateLimiter",
    "RateLimitRule",
    "estimate_tokens",
    "CHARS_PER_TOKEN",
    "BucketStore",
    "MemoryBucketStore",
]

#: The ticket of a call no rule covers: nothing to charge, but an upstream 429 it meets
#: still pauses its provider.
_UNCLAIMED = object()


class RateLimiter(Primitive):
    """Token-bucket rate limits for every call (kind ``"rate_limit"``).

    ``rules``: `RateLimitRule` objects or mappings of their fields. ``mode``: ``"wait"``
    (queue up to ``timeout`` seconds; None waits as long as it takes) or ``"reject"``.
    ``default_output_tokens``: the output allowance of a request without ``max_tokens``.
    ``estimate``: replaces `estimate_tokens` (a function of the request). ``pause_on_429``:
    ``"provider"``, ``"model"`` (provider/model) or ``"off"``: what an upstream 429 with
    Retry-After pauses, for at most ``max_pause`` seconds. ``clock`` (monotonic seconds),
    ``sleep`` and ``async_sleep`` are injectable so tests never wait; by default a waiting
    call (thread or task) waits on a future that is resolved early when capacity comes back.
    ``store``: where the buckets and pauses live (a new `MemoryBucketStore` by default).
    """

    kind = "rate_limit"

    def __init__(
        self,
        rules: Sequence[RateLimitRule | Mapping[str, Any]] = (),
        *,
        mode: str = "wait",
        timeout: float | None = 30.0,
        default_output_tokens: int = 256,
        estimate: Callable[[ChatRequest], int] | None = None,
        pause_on_429: str = "provider",
        max_pause: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
        async_sleep: Callable[[float], Awaitable[Any]] | None = None,
        store: BucketStore | None = None,
    ) -> None:
        if mode not in ("wait", "reject"):
            raise ConfigError(f"rate limit mode {mode!r} is unknown", hint='use "wait" or "reject"')
        if timeout is not None and not timeout >= 0:
            raise ConfigError(f"timeout={timeout!r} is invalid", hint="use seconds >= 0, or None")
        if not isinstance(default_output_tokens, int) or default_output_tokens < 0:
            raise ConfigError(
                f"default_output_tokens={default_output_tokens!r} is invalid",
                hint="use an integer >= 0",
            )
        if pause_on_429 not in ("provider", "model", "off"):
            raise ConfigError(
                f"pause_on_429={pause_on_429!r} is unknown", hint='use "provider", "model" or "off"'
            )
        if not max_pause >= 0:
            raise ConfigError(f"max_pause={max_pause!r} is invalid", hint="use seconds >= 0")
        self.rules = tuple(
            r if isinstance(r, RateLimitRule) else RateLimitRule.from_mapping(r) for r in rules
        )
        self.mode = mode
        self.timeout = timeout
        self.default_output_tokens = default_output_tokens
        self.pause_on_429 = pause_on_429
        self.max_pause = max_pause
        self._estimate = estimate
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._reject = mode == "reject"
        self._counts_tokens = any(
            b.startswith("tokens") for r in self.rules for b, _, _ in r.limits
        )
        # Only token limits care what a stream delivered before it was cut off.
        self.observes = self._counts_tokens
        # A call no rule covers needs settling only to learn an upstream 429's pause.
        self._unclaimed = PROCEED if pause_on_429 == "off" else Proceed(_UNCLAIMED)
        # Per rule: its index, the getters of its key and match fields, the rule, and its
        # token limits (name, amount), which no single request may exceed.
        self._plans = tuple(
            (
                i,
                tuple(_FIELD_OF[f] for f in r.key),
                tuple((_FIELD_OF[f], set(v)) for f, v in r.match.items()),
                r,
                tuple((name, amount) for name, amount, _ in r.limits if name.startswith("tok")),
            )
            for i, r in enumerate(self.rules)
        )
        self._store: BucketStore = MemoryBucketStore() if store is None else store
        # A store that waits on the network (Redis): the drivers run this off the loop.
        self.io = getattr(self._store, "io", None)
        # The calls waiting now, each with the future that wakes it; guarded by `_lock`,
        # which is never held while the store is asked (the store calls `_wake`).
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._store.subscribe(self._wake)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], **injected: Any) -> RateLimiter:
        """Build from a ``[rate_limits]`` table: ``mode``, ``timeout``,
        ``default_output_tokens``, ``pause_on_429``, ``max_pause`` and a list of rules under
        ``rule`` (``[[rate_limits.rule]]``). ``injected`` passes ``clock``, ``sleep``,
        ``async_sleep`` and ``estimate`` through."""
        RATE_LIMITS_TABLE.validate(settings, "[rate_limits]")
        options = dict(settings)
        rules = options.pop("rule", ())
        if isinstance(rules, Mapping):
            rules = [rules]
        built = [
            RateLimitRule.from_mapping(r, f"rate_limits.rule #{i + 1}") for i, r in enumerate(rules)
        ]
        return cls(built, **options, **injected)

    def describe(self) -> Mapping[str, Any]:
        return {
            "kind": self.kind,
            "type": type(self).__name__,
            "mode": self.mode,
            "rules": [r.label for r in self.rules],
        }

    def __repr__(self) -> str:
        return f"<RateLimiter mode={self.mode!r} rules={[r.label for r in self.rules]}>"

    def snapshot(self) -> dict[str, Any]:
        """The limiter's state now, for notebooks: ``buckets`` (one row per bucket: ``rule``,
        ``key``, ``limit``, ``capacity``, ``available``, ``waiting``, ``full_in`` seconds),
        ``paused`` (target -> seconds left of an upstream 429 pause) and ``waiting`` calls."""
        rows, paused = self._store.snapshot(self._clock())
        return {"mode": self.mode, "buckets": rows, "paused": paused, "waiting": len(self._waiters)}

    # --- admission (sans-IO: the drivers wait) ----------------------------------------------

    def admit(self, ctx: CallContext, state: Any) -> Verdict:
        """`Proceed` with the call's claim once its buckets gave what it needs; `Wait` while
        it queues (wait mode); raises `RateLimitedError` when refused (reject mode, a
        timeout, a request no bucket could ever hold)."""
        if state is not None:
            return self._look(state, self._clock())
        tokens = self._estimate_call(ctx.request)
        now = self._clock()
        claims = self._claims(ctx, tokens)
        if not claims and not self._store.has_pauses():
            return self._unclaimed
        waiter = _Waiter(ctx, tokens, ctx.request.max_tokens or self.default_output_tokens)
        reject = self._reject
        if self._store.arrive(waiter, claims, now, join=not reject) == 0.0:
            return Proceed(waiter)
        if reject:
            raise self._refusal(waiter, now, waited=False)
        waiter.deadline = math.inf if self.timeout is None else now + self.timeout
        return self._look(waiter, now)

    def withdraw(self, ctx: CallContext, state: Any) -> None:
        """The caller stopped waiting (cancelled, interrupted): give up its queue position."""
        self._done_waiting(state)

    def _look(self, waiter: _Waiter, now: float) -> Verdict:
        """A queued call looks again: goes, is refused (its time is up) or waits more."""
        wake = waiter.wake
        if wake is None or wake.done():  # else the one it waited on is still armed
            wake = Future()
            with self._lock:  # armed before the store is asked, so no wake-up is missed
                waiter.wake = wake
                self._waiters.add(waiter)
        wait = self._store.step(waiter, now)
        if wait == 0.0:
            self._done_waiting(waiter)
            return Proceed(waiter)
        remaining = waiter.deadline - now
        if remaining <= 0.0:
            refusal = self._refusal(waiter, now, waited=True)  # while it still holds its place
            self._done_waiting(waiter)
            raise refusal
        if wait is None:  # behind others: until the queue moves (an injected sleep would miss it)
            return Wait(
                seconds=None if remaining == math.inf else remaining,
                state=waiter,
                wake=wake,
                async_sleep=self._async_sleep,
            )
        return Wait(
            seconds=min(wait, remaining),
            state=waiter,
            wake=wake,
            sleep=self._sleep,
            async_sleep=self._async_sleep,
        )

    def _done_waiting(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)
            waiter.wake = None
        if not waiter.granted:
            self._store.leave(waiter)

    def _wake(self, waiters: Collection[_Waiter] | None) -> None:
        """Wake ``waiters`` (None: every waiting call) to look again; the store calls it,
        from any thread. Calls waiting on another limiter of a shared store are not ours."""
        if not self._waiters:
            return
        with self._lock:
            mine = self._waiters
            for waiter in mine if waiters is None else (w for w in waiters if w in mine):
                wake = waiter.wake
                if wake is not None and not wake.done():
                    try:
                        wake.set_result(None)
                    except InvalidStateError:  # cancelled by its waiter meanwhile
                        pass

    def _estimate_call(self, request: ChatRequest) -> int:
        if not self._counts_tokens:
            return 0
        if self._estimate is not None:
            return int(self._estimate(request))
        return estimate_tokens(request, self.default_output_tokens)

    def _claims(self, ctx: CallContext, tokens: int) -> list[Claim]:
        """The rules that apply to the call, keyed; refuses a request larger than a token
        limit (it could never pass)."""
        claims: list[Claim] = []
        for index, key_of, match, rule, token_limits in self._plans:
            if match and not all(get(ctx) in allowed for get, allowed in match):
                continue
            key = tuple(get(ctx) for get in key_of)
            claims.append((index, key, rule))
            if tokens:
                for limit, amount in token_limits:
                    if tokens > amount:
                        where = ", ".join(
                            f"{f}={'-' if v is None else v}"
                            for f, v in zip(rule.key, key, strict=True)
                        )
                        raise RateLimitedError(
                            f"the request's estimated {tokens} tokens exceed "
                            f"{describe_limit(rule.label, where, limit, amount)}, "
                            "so it can never pass",
                            provider=ctx.provider_name,
                            model=ctx.model,
                            hint="lower max_tokens or shorten the prompt, or raise the limit",
                        )
        return claims

    def _refusal(self, waiter: _Waiter, now: float, *, waited: bool) -> RateLimitedError:
        ctx = waiter.ctx
        paused, wait, target, slowest = self._store.wait_for(waiter, now)
        after = f" after waiting {self.timeout:g}s" if waited else ""
        if paused >= wait:
            message = (
                f"{target} is paused for {paused:.2f}s more{after}: the provider answered "
                "HTTP 429 with a Retry-After"
            )
            hint = f"retry after {paused:.2f}s; every caller of {target} waits for it"
        else:
            message = f"{slowest} reached{after}"
            hint = (
                f"retry after {wait:.2f}s, raise the limit, or use mode='wait' with a "
                "longer timeout"
            )
        return RateLimitedError(
            message,
            retry_after=max(paused, wait),
            provider=ctx.provider_name,
            model=ctx.model,
            hint=hint,
        )

    # --- after the call ---------------------------------------------------------------------

    def observe(self, ctx: CallContext, ticket: Any, event: StreamEvent) -> None:
        """Count the text a stream delivers, so a stream cut short pays for what it got."""
        if isinstance(event, TextDelta) and ticket is not _UNCLAIMED:
            ticket.delivered += len(event.text)

    def settle(self, ctx: CallContext, ticket: Any, outcome: Outcome) -> None:
        """Charge the buckets what the call really used, and pause a provider that answered
        429 with a Retry-After."""
        error = outcome.error
        if ticket is not _UNCLAIMED and ticket.needs:
            response = outcome.response
            attempts = ctx.attempt  # 0: it never reached a provider (a cache hit, a refusal)
            if response is not None and not response.usage.known:
                # The provider reported no usage: count the estimate, never 0 tokens.
                used_tokens = ticket.tokens if attempts else 0
            elif response is not None:
                used_tokens = response.usage.total_tokens if attempts else 0
            elif ticket.delivered and attempts:
                # A stream cut short: the provider counts the prompt and the text it sent.
                prompt = max(0, ticket.tokens - ticket.output_allowance)
                used_tokens = min(ticket.tokens, prompt + -(-ticket.delivered // CHARS_PER_TOKEN))
            else:
                used_tokens = 0  # a failed call gives its token estimate back
            self._store.charge(ticket, float(attempts), float(used_tokens), self._clock())
        if error is not None and self.pause_on_429 != "off":
            self._pause_after(ctx, error)

    def _pause_after(self, ctx: CallContext, error: BaseException) -> None:
        errors = error.errors if isinstance(error, AllAttemptsFailedError) else (error,)
        for err in errors:
            if not (isinstance(err, RateLimitedError) and err.status == 429 and err.retry_after):
                continue
            provider = err.provider or ctx.provider_name
            target = (
                provider
                if self.pause_on_429 == "provider"
                else (f"{provider}/{err.model or ctx.model}")
            )
            until = self._clock() + min(float(err.retry_after), self.max_pause)
            self._store.pause(target, until)
