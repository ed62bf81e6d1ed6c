"""Rate limits as one middleware: `RateLimiter` (kind ``"rate_limit"``).

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
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from itertools import count
from typing import Any

from aigw_lab.errors import AllAttemptsFailedError, ConfigError, RateLimitedError
from aigw_lab.gateway.middleware import (
    AsyncNext,
    AsyncStreamNext,
    CallContext,
    Middleware,
    Next,
    StreamNext,
)
from aigw_lab.gateway.ratelimit_rules import (  # split out for size
    _FIELD_OF,
    CHARS_PER_TOKEN,
    RATE_LIMITS_TABLE,
    RateLimitRule,
    _Bucket,
    _Waiter,
    estimate_tokens,
)
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta

__all__ = ["RateLimiter", "RateLimitRule", "estimate_tokens", "CHARS_PER_TOKEN"]


class RateLimiter(Middleware):
    """Token-bucket rate limits for every call (kind ``"rate_limit"``).

    ``rules``: `RateLimitRule` objects or mappings of their fields. ``mode``: ``"wait"``
    (queue up to ``timeout`` seconds; None waits as long as it takes) or ``"reject"``.
    ``default_output_tokens``: the output allowance of a request without ``max_tokens``.
    ``estimate``: replaces `estimate_tokens` (a function of the request). ``pause_on_429``:
    ``"provider"``, ``"model"`` (provider/model) or ``"off"``: what an upstream 429 with
    Retry-After pauses, for at most ``max_pause`` seconds. ``clock`` (monotonic seconds),
    ``sleep`` and ``async_sleep`` are injectable so tests never wait; by default a waiting
    thread sleeps on a `threading.Condition` and a waiting task on a timer, both woken early
    when capacity comes back.
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
        # Per rule: its index, the getters of its key and match fields, and its limits.
        self._plans = tuple(
            (
                i,
                tuple(_FIELD_OF[f] for f in r.key),
                tuple((_FIELD_OF[f], set(v)) for f, v in r.match.items()),
                r,
            )
            for i, r in enumerate(self.rules)
        )
        # One lock for all state: acquiring several buckets is then atomic, and waiters join
        # every queue in one global ticket order, so no two calls can wait on each other.
        self._cond = threading.Condition(threading.Lock())
        self._buckets: dict[tuple[int, tuple[Any, ...]], tuple[_Bucket, ...]] = {}
        self._prune_at = 10_000
        self._pauses: dict[str, float] = {}
        self._tickets = count()
        self._waiting = 0
        self._async_waiters: set[_Waiter] = set()

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
        with self._cond:
            now = self._clock()
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
            return {"mode": self.mode, "buckets": rows, "paused": paused, "waiting": self._waiting}

    # --- hooks ------------------------------------------------------------------------------

    def handle(self, ctx: CallContext, call_next: Next) -> ChatResponse:
        waiter = self._acquire(ctx)
        try:
            response = call_next(ctx)
        except BaseException as exc:
            self._settle(waiter, ctx, None, exc)
            raise
        if waiter is not None:
            self._settle(waiter, ctx, response, None)
        return response

    async def ahandle(self, ctx: CallContext, call_next: AsyncNext) -> ChatResponse:
        waiter = await self._aacquire(ctx)
        try:
            response = await call_next(ctx)
        except BaseException as exc:
            self._settle(waiter, ctx, None, exc)
            raise
        if waiter is not None:
            self._settle(waiter, ctx, response, None)
        return response

    def handle_stream(self, ctx: CallContext, call_next: StreamNext) -> Iterator[StreamEvent]:
        # Capacity is taken on the first iteration, so a stream never read takes none.
        meter = _Meter(self, self._acquire(ctx), ctx)
        events = call_next(ctx)
        try:
            for event in events:
                meter.see(event)
                yield event
        except BaseException as exc:
            meter.end(exc)
            raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:  # an abandoned stream stops (and logs) its attempt now
                close()
            meter.end()

    async def ahandle_stream(  # type: ignore[override]
        self, ctx: CallContext, call_next: AsyncStreamNext
    ) -> AsyncIterator[StreamEvent]:
        meter = _Meter(self, await self._aacquire(ctx), ctx)
        events = call_next(ctx)
        try:
            async for event in events:
                meter.see(event)
                yield event
        except BaseException as exc:
            meter.end(exc)
            raise
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            meter.end()

    # --- acquiring --------------------------------------------------------------------------

    def _acquire(self, ctx: CallContext) -> _Waiter | None:
        """Take what the call needs, waiting (on this thread) if the mode allows; None when no
        rule applies and nothing is paused."""
        tokens = self._estimate_call(ctx.request)
        with self._cond:
            now = self._clock()
            waiter, wait = self._arrive(ctx, tokens, now)
            if waiter is None or wait == 0.0:
                return waiter
            deadline = math.inf if self.timeout is None else now + self.timeout
            try:
                while True:
                    remaining = deadline - now
                    if remaining <= 0.0:
                        raise self._refusal(waiter, now, waited=True)
                    self._wait_thread(wait, remaining)
                    now = self._clock()
                    wait = self._step(waiter, now, join=True)
                    if wait == 0.0:
                        return waiter
            finally:
                self._waiting -= 1
                if not waiter.granted:
                    self._leave(waiter)

    async def _aacquire(self, ctx: CallContext) -> _Waiter | None:
        """`_acquire` for tasks: waiting awaits instead of blocking the event loop."""
        tokens = self._estimate_call(ctx.request)
        with self._cond:
            now = self._clock()
            waiter, wait = self._arrive(ctx, tokens, now)
            if waiter is None or wait == 0.0:
                return waiter
            deadline = math.inf if self.timeout is None else now + self.timeout
            waiter.loop = asyncio.get_running_loop()
            self._async_waiters.add(waiter)
        try:
            while True:
                with self._cond:
                    remaining = deadline - now
                    if remaining <= 0.0:
                        raise self._refusal(waiter, now, waited=True)
                    # Made under the lock, so a wake-up between here and the await is kept.
                    future = waiter.future = waiter.loop.create_future()
                timer = remaining if wait is None else min(wait, remaining)
                await self._wait_task(future, timer)
                with self._cond:
                    now = self._clock()
                    wait = self._step(waiter, now, join=True)
                    if wait == 0.0:
                        return waiter
        finally:
            with self._cond:
                self._waiting -= 1
                self._async_waiters.discard(waiter)
                waiter.future = None
                if not waiter.granted:  # cancelled or timed out: give up the queue position
                    self._leave(waiter)

    def _arrive(
        self, ctx: CallContext, tokens: int, now: float
    ) -> tuple[_Waiter | None, float | None]:
        """A call's first look (lock held): no waiter when nothing limits it, wait 0.0 when it
        took what it needs, else the wait ahead of it, queued; raises in reject mode."""
        waiter = self._prepare(ctx, tokens, now)
        if waiter is None:
            return None, 0.0
        wait = self._step(waiter, now, join=not self._reject)
        if wait != 0.0:
            if self._reject:
                raise self._refusal(waiter, now, waited=False)
            self._waiting += 1
        return waiter, wait

    def _wait_thread(self, wait: float | None, remaining: float) -> None:
        """Block this thread (lock held on entry and exit) until woken, or ``wait`` seconds
        (None: until the queue moves) within ``remaining``."""
        if wait is None or self._sleep is None:
            seconds = remaining if wait is None else min(wait, remaining)
            self._cond.wait(None if seconds == math.inf else seconds)
            return
        self._cond.release()
        try:
            self._sleep(min(wait, remaining))
        finally:
            self._cond.acquire()

    async def _wait_task(self, future: asyncio.Future[None], seconds: float) -> None:
        if self._async_sleep is None:
            loop = asyncio.get_running_loop()
            handle = None if seconds == math.inf else loop.call_later(seconds, _wake, future)
            try:
                await future
            finally:
                if handle is not None:
                    handle.cancel()
            return
        sleeper = asyncio.ensure_future(self._async_sleep(seconds))
        try:
            await asyncio.wait((sleeper, future), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    def _estimate_call(self, request: ChatRequest) -> int:
        if not self._counts_tokens:
            return 0
        if self._estimate is not None:
            return int(self._estimate(request))
        return estimate_tokens(request, self.default_output_tokens)

    def _prepare(self, ctx: CallContext, tokens: int, now: float) -> _Waiter | None:
        """The buckets the call needs, and how much of each (lock held)."""
        needs: list[tuple[_Bucket, float]] = []
        for index, key_of, match, rule in self._plans:
            if match and not all(get(ctx) in allowed for get, allowed in match):
                continue
            key = tuple(get(ctx) for get in key_of)
            buckets = self._buckets.get((index, key))
            if buckets is None:
                buckets = self._new_buckets(index, rule, key, now)
            for bucket in buckets:
                if not bucket.counts_tokens:
                    needs.append((bucket, 1.0))
                    continue
                if tokens > bucket.capacity:
                    raise RateLimitedError(
                        f"the request's estimated {tokens} tokens exceed {bucket.describe()}, "
                        "so it can never pass",
                        provider=ctx.provider_name,
                        model=ctx.model,
                        hint="lower max_tokens or shorten the prompt, or raise the limit",
                    )
                needs.append((bucket, float(tokens)))
        if not needs and not self._pauses:
            return None
        allowance = ctx.request.max_tokens or self.default_output_tokens
        return _Waiter(ctx, needs, tokens, allowance, next(self._tickets))

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

    def _step(self, waiter: _Waiter, now: float, *, join: bool) -> float | None:
        """Take what ``waiter`` needs if it may now (returns 0.0); else the seconds until it
        could, or None while it waits behind others (lock held)."""
        paused = self._paused_for(waiter.ctx, now)
        if paused > 0.0:
            if waiter.queued:  # don't hold up calls to other providers that share a bucket
                self._leave(waiter)
            return paused
        needs = waiter.needs
        for bucket, _ in needs:
            bucket.refill(now)
        if not waiter.queued:
            if all(not b.queue and b.time_for(a) == 0.0 for b, a in needs):
                self._take(waiter)
                return 0.0
            if not join:
                return self._time_for(waiter)
            for bucket, _ in needs:
                _enqueue(bucket.queue, waiter)
            waiter.queued = True
        if any(b.queue[0] is not waiter for b, _ in needs):
            return None
        wait = max(b.time_for(a) for b, a in needs)
        if wait == 0.0:
            self._take(waiter)
        return wait

    def _take(self, waiter: _Waiter) -> None:
        for bucket, amount in waiter.needs:
            bucket.level -= amount
            if waiter.queued:
                bucket.queue.popleft()
        waiter.granted = True
        if waiter.queued:
            waiter.queued = False
            self._notify()  # the next in line leads now and starts its own timer

    def _leave(self, waiter: _Waiter) -> None:
        if waiter.queued:
            waiter.queued = False
            for bucket, _ in waiter.needs:
                bucket.queue.remove(waiter)
            self._notify()

    def _time_for(self, waiter: _Waiter) -> float:
        """Seconds until every bucket holds what ``waiter`` and the calls ahead of it need."""
        wait = 0.0
        for bucket, amount in waiter.needs:
            ahead = 0.0
            for other in bucket.queue:
                if other is waiter:
                    break
                ahead += next(a for b, a in other.needs if b is bucket)
            wait = max(wait, bucket.time_for(ahead + amount))
        return wait

    def _notify(self) -> None:
        """Wake every waiter to look again (lock held)."""
        if not self._waiting:
            return
        self._cond.notify_all()
        for waiter in self._async_waiters:
            future, loop = waiter.future, waiter.loop
            if future is not None and loop is not None and not future.done():
                try:
                    loop.call_soon_threadsafe(_wake, future)
                except RuntimeError:  # its loop is closed; the task is gone with it
                    pass

    def _refusal(self, waiter: _Waiter, now: float, *, waited: bool) -> RateLimitedError:
        ctx = waiter.ctx
        paused = self._paused_for(ctx, now)
        for bucket, _ in waiter.needs:
            bucket.refill(now)
        wait = self._time_for(waiter)
        after = f" after waiting {self.timeout:g}s" if waited else ""
        if paused >= wait:
            target = ctx.address if ctx.address in self._pauses else ctx.provider_name
            message = (
                f"{target} is paused for {paused:.2f}s more{after}: the provider answered "
                "HTTP 429 with a Retry-After"
            )
            hint = f"retry after {paused:.2f}s; every caller of {target} waits for it"
        else:
            bucket = max(waiter.needs, key=lambda n: n[0].time_for(n[1]))[0]
            message = f"{bucket.describe()} reached{after}"
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

    def _settle(
        self,
        waiter: _Waiter | None,
        ctx: CallContext,
        response: ChatResponse | None,
        error: BaseException | None,
        delivered_chars: int = 0,
    ) -> None:
        """Charge the buckets what the call really used, and pause a provider that answered
        429 with a Retry-After."""
        if waiter is not None and waiter.needs:
            attempts = ctx.attempt  # 0: it never reached a provider (a cache hit, a refusal)
            if response is not None and not response.usage.known:
                # The provider reported no usage: count the estimate, never 0 tokens.
                used_tokens = waiter.tokens if attempts else 0
            elif response is not None:
                used_tokens = response.usage.total_tokens if attempts else 0
            elif delivered_chars and attempts:
                # A stream cut short: the provider counts the prompt and the text it sent.
                prompt = max(0, waiter.tokens - waiter.output_allowance)
                used_tokens = min(waiter.tokens, prompt + -(-delivered_chars // CHARS_PER_TOKEN))
            else:
                used_tokens = 0  # a failed call gives its token estimate back
            self._charge(waiter, float(attempts), float(used_tokens))
        if error is not None and self.pause_on_429 != "off":
            self._pause_after(ctx, error)

    def _charge(self, waiter: _Waiter, requests: float, tokens: float) -> None:
        with self._cond:
            now = self._clock()
            refunded = False
            for bucket, reserved in waiter.needs:
                extra = (tokens if bucket.counts_tokens else requests) - reserved
                if extra:
                    bucket.refill(now)
                    bucket.level = min(bucket.capacity, bucket.level - extra)
                    refunded = refunded or extra < 0
            if refunded:
                self._notify()

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
            with self._cond:
                until = self._clock() + min(float(err.retry_after), self.max_pause)
                if until > self._pauses.get(target, -math.inf):
                    self._pauses[target] = until
                    self._notify()

    def _paused_for(self, ctx: CallContext, now: float) -> float:
        """Seconds left of an upstream pause covering the call's target (lock held)."""
        pauses = self._pauses
        if not pauses:
            return 0.0
        left = 0.0
        for target in (ctx.provider_name, ctx.address):
            until = pauses.get(target)
            if until is not None:
                if until <= now:
                    del pauses[target]
                else:
                    left = max(left, until - now)
        return left


class _Meter:
    """Follows one stream to settle its call once: at its `StreamEnd`, or when it ends
    without one (counting the text delivered)."""

    __slots__ = ("limiter", "waiter", "ctx", "delivered", "settled")

    def __init__(self, limiter: RateLimiter, waiter: _Waiter | None, ctx: CallContext) -> None:
        self.limiter = limiter
        self.waiter = waiter
        self.ctx = ctx
        self.delivered = 0
        self.settled = False

    def see(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.delivered += len(event.text)
        elif isinstance(event, StreamEnd) and not self.settled:
            self.settled = True
            self.limiter._settle(self.waiter, self.ctx, event.response, None)

    def end(self, error: BaseException | None = None) -> None:
        if not self.settled:
            self.settled = True
            self.limiter._settle(self.waiter, self.ctx, None, error, self.delivered)


def _enqueue(queue: deque[_Waiter], waiter: _Waiter) -> None:
    """Join ``queue`` in ticket order (a call rejoining after a pause keeps its place)."""
    if not queue or queue[-1].ticket < waiter.ticket:
        queue.append(waiter)
        return
    for i, other in enumerate(queue):
        if other.ticket > waiter.ticket:
            queue.insert(i, waiter)
            return


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
