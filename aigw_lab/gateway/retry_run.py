"""One call's way through its retry and fallback targets (`RetryRun`): the state the `Retry`
middleware's loops keep between attempts, and the decisions they ask of it (which target
next, how long to wait, when it is over). It never waits or calls: the loops over attempts
(`aigw_lab.gateway._async.retry`, and the sync ones generated from it) do.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from aigw_lab.errors import (
    AigwError,
    AllAttemptsFailedError,
    ContextLengthExceededError,
    OverloadedError,
    QuotaExceededError,
)
from aigw_lab.gateway.health import CircuitOpenError, HealthTracker, counts_against_health
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.gateway.reliability import Retry

__all__ = ["RetryRun"]


class RetryRun:
    """One call's way through its targets: the current target and its tries, the failures
    so far, the deadline. `begin` before each attempt; then `succeeded`, `failed` (which
    says how long to wait, or raises when it is over) or `abandoned`."""

    __slots__ = (
        "retry",
        "request",
        "chain",
        "index",
        "tries",
        "moving_on",
        "failures",
        "given_up",
        "min_window",
        "deadline_at",
        "reason",
    )

    def __init__(self, retry: Retry, ctx: CallContext) -> None:
        self.retry = retry
        self.request: ChatRequest = ctx.request  # restored after each attempt
        self.chain: tuple[str, ...] | None = None  # built only when needed
        self.index = 0
        self.tries = 0
        self.moving_on = False
        self.failures: list[tuple[str, AigwError]] = []
        self.given_up: str | None = None
        self.min_window: int | None = None
        deadline = retry.policy.deadline
        self.deadline_at = None if deadline is None else retry._clock() + deadline
        self.reason = "no fallback target left"

    def begin(self, ctx: CallContext) -> None:
        """Point ``ctx`` at the target of the next attempt, with its timeout; raise when
        there is none (chain used up, circuits open, deadline reached)."""
        health = self.retry.health
        if self.moving_on:
            self.moving_on = False
            self._next_target(ctx)
        elif health is not None and not health.allow(ctx.address):
            self._skip(ctx.address, health)
            self._next_target(ctx)
        if self.retry._sets_timeout:
            timeout = self._timeout()
            if timeout is not None and timeout <= 0.0:
                self.reason = f"deadline of {self.retry.policy.deadline}s reached"
                self._give_up(ctx)
            ctx.request = replace(self.request, timeout=timeout)
        self.tries += 1

    def succeeded(self, ctx: CallContext) -> None:
        if self.retry.health is not None:
            self.retry.health.record_success(ctx.address)

    def abandoned(self, ctx: CallContext) -> None:
        if self.retry.health is not None:
            self.retry.health.release(ctx.address)

    def failed(self, ctx: CallContext, error: AigwError, *, text_delivered: bool = False) -> float:
        """Record ``error`` from the current target; return seconds to wait before the next
        attempt (0.0 to go on at once), or raise when the call is over."""
        target = ctx.address
        policy = self.retry.policy
        health = self.retry.health
        self.failures.append((target, error))
        if health is not None:
            if counts_against_health(error):
                health.record_failure(target)
            else:
                health.release(target)
        if text_delivered:
            raise error
        if isinstance(error, ContextLengthExceededError):
            window = self.retry.fallbacks.context_windows.get(target)
            if window is not None:
                self.min_window = max(self.min_window or 0, window)
            return self._move_on(target)
        if not error.retryable:
            if isinstance(error, QuotaExceededError):
                return self._move_on(target)
            raise error  # the request (or the set-up) is wrong: another try cannot help
        if isinstance(error, OverloadedError) and self._has_next(ctx):
            return self._move_on(target)  # don't queue on a busy provider with others free
        if self.tries >= policy.max_attempts:
            return self._move_on(target)
        if health is not None and health.is_open(target):
            return self._move_on(target)
        wait = policy.delay(self.tries, error, self.retry._rng.random())
        if wait is None:
            return self._move_on(
                target, f"Retry-After above max_retry_after={policy.max_retry_after}s"
            )
        if self.deadline_at is not None and self.retry._clock() + wait >= self.deadline_at:
            return self._move_on(target, f"deadline of {policy.deadline}s reached")
        return wait

    # --- internals ------------------------------------------------------------------------

    def _chain(self, ctx: CallContext) -> tuple[str, ...]:
        if self.chain is None:
            self.chain = self.retry.fallbacks.chain(ctx.address)
        return self.chain

    def _has_next(self, ctx: CallContext) -> bool:
        return self.index + 1 < len(self._chain(ctx))

    def _move_on(self, target: str, reason: str = "no fallback target left") -> float:
        self.moving_on = True
        self.given_up = target
        self.reason = reason
        return 0.0

    def _skip(self, target: str, health: HealthTracker) -> None:
        self.failures.append((target, CircuitOpenError(target, retry_in=health.retry_in(target))))
        self.given_up = target

    def _next_target(self, ctx: CallContext) -> None:
        """Advance to the next target the circuit breakers and context windows allow."""
        chain = self._chain(ctx)
        health = self.retry.health
        windows = self.retry.fallbacks.context_windows
        while True:
            self.index += 1
            if self.index >= len(chain):
                self._give_up(ctx)
            target = chain[self.index]
            if self.min_window is not None and windows.get(target, self.min_window + 1) <= (
                self.min_window
            ):
                continue  # no larger window than one the prompt already did not fit
            if health is not None and not health.allow(target):
                self._skip(target, health)
                continue
            break
        provider_name, _, model = target.partition("/")
        ctx.provider_name = provider_name
        ctx.model = model
        ctx.fallback_from = self.given_up
        self.tries = 0

    def _timeout(self) -> float | None:
        policy = self.retry.policy
        candidates = [policy.attempt_timeout, self.request.timeout]
        if self.deadline_at is not None:
            # The first attempt always gets the whole deadline, so it always goes out.
            started = bool(self.failures)
            candidates.append(
                self.deadline_at - self.retry._clock() if started else policy.deadline
            )
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def _give_up(self, ctx: CallContext) -> None:
        """Raise the error that ends the call."""
        failures = self.failures
        attempted = [e for _, e in failures if not isinstance(e, CircuitOpenError)]
        if len(failures) == 1 and attempted:
            raise attempted[0]  # a single attempt: its own error says it best
        errors = [e for _, e in failures]
        by_target: dict[str, list[str]] = {}
        for target, error in failures:
            by_target.setdefault(target, []).append(error.error_type)
        listed = "; ".join(f"{t}: {', '.join(kinds)}" for t, kinds in by_target.items())
        requested = (self.chain or (ctx.address,))[0]
        exc = AllAttemptsFailedError(
            f"{requested}: {len(attempted)} attempt(s) failed ({self.reason}): {listed}",
            errors=errors,
            hint=f"each attempt is in the call log with trace_id {ctx.trace_id!r}; add fallback "
            "targets, raise max_attempts or the deadline, or check health.snapshot()",
        )
        if not attempted:
            ctx.recorder.log_refused(ctx, exc)
        raise exc from (errors[-1] if errors else None)
