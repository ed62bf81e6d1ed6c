"""Retries with backoff, fallback chains and circuit breaking, as one middleware: `Retry`.

    gateway = Gateway(providers, middleware=[
        Retry(
            max_attempts=3,                    # per target, the first try included
            deadline=30.0,                     # seconds for the whole call, fallbacks included
            fallbacks={"sim-openai/sim-small": ["sim-anthropic/sim-haikuish"]},
            health=HealthTracker(failure_threshold=5, cooldown=30.0),
        ),
    ])

For each target of the call's chain (the requested ``provider/model``, then its fallbacks),
`Retry` tries up to ``max_attempts`` times, waiting between tries with exponential backoff and
full jitter, and never less than a rate limit's Retry-After. It moves to the next target when
the retries are used up, or at once on an exhausted quota, an overloaded provider (when there
is a next target) or a prompt too long for the model. It never retries or falls back on a
request that is itself wrong (invalid, unauthorised, filtered, unknown model): that error
propagates unchanged. When every target failed it raises `AllAttemptsFailedError`.

Each attempt goes through the gateway's attempt stage, so each is a row of the call log, with
its ``attempt`` number and, after a fallback, ``fallback_from``. See ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aigw_lab.config_schema import Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.gateway._async.retry import retry_achat, retry_astream
from aigw_lab.gateway._sync.retry import retry_chat, retry_stream
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.middleware import Middleware

__all__ = ["Retry", "RetryPolicy", "Fallbacks", "check_fallback_targets", "check_targets"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry one target.

    ``max_attempts``: tries per target, the first included (1 = no retries).
    The wait before retry *n* is uniform in ``[0, min(max_delay, base_delay * multiplier **
    (n - 1))]`` (full jitter), raised to a rate limit's Retry-After; a Retry-After above
    ``max_retry_after`` means: give up on this target now rather than wait that long.
    ``attempt_timeout``: seconds each attempt may take (sets the request's ``timeout``).
    ``deadline``: seconds for the whole call, every retry and fallback included; no wait
    that would end past it is started, and each attempt's timeout is cut to what remains.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    attempt_timeout: float | None = None
    deadline: float | None = None

    def __post_init__(self) -> None:
        for name in ("base_delay", "multiplier", "max_delay", "max_retry_after"):
            _check_seconds(name, getattr(self, name), optional=False)
        for name in ("attempt_timeout", "deadline"):
            _check_seconds(name, getattr(self, name), optional=True)
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError(
                f"max_attempts={self.max_attempts!r} is invalid",
                hint="use an integer >= 1 (1 means no retries)",
            )
        for name in ("base_delay", "max_delay", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} is negative", hint="use >= 0")
        if self.multiplier < 1:
            raise ConfigError(f"multiplier={self.multiplier} is below 1", hint="use >= 1")
        for name in ("attempt_timeout", "deadline"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value} is invalid", hint="use seconds > 0, or None")

    def backoff_cap(self, retry: int) -> float:
        """The longest backoff before retry number ``retry`` (1 = the first retry)."""
        try:
            return min(self.max_delay, self.base_delay * self.multiplier ** (retry - 1))
        except OverflowError:
            return self.max_delay

    def delay(self, retry: int, error: BaseException, draw: float) -> float | None:
        """Seconds to wait before retry ``retry`` after ``error``, given a uniform ``draw`` in
        [0, 1); None when the provider asked to wait longer than ``max_retry_after``."""
        wait = draw * self.backoff_cap(retry)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, float(retry_after))
        return wait


def _check_seconds(name: str, value: Any, *, optional: bool) -> None:
    """A `ConfigError` when a setting (from a TOML file, say) is not a number, before it is
    compared with one: ``base_delay = "1"`` would otherwise be a TypeError traceback."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(
            f"{name}={value!r} must be a number{' or None' if optional else ''}",
            hint=f"write it without quotes, e.g. {name} = 2.0",
        )


@dataclass(frozen=True)
class Fallbacks:
    """Where a call goes when its target fails: ``chains`` maps a requested
    ``"provider/model"`` to the targets to try next, in order; ``default`` serves requested
    targets without a chain of their own. ``context_windows`` (tokens, by target) lets a
    prompt too long for one model skip fallbacks whose window is no larger."""

    chains: Mapping[str, Sequence[str]] = field(default_factory=lambda: _EMPTY)
    default: Sequence[str] = ()
    context_windows: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        chains = {_target(k, "fallbacks key"): _targets(v, k) for k, v in self.chains.items()}
        object.__setattr__(self, "chains", MappingProxyType(chains))
        object.__setattr__(self, "default", _targets(self.default, "default"))
        if not isinstance(self.context_windows, Mapping):
            raise ConfigError(
                f"fallbacks context_windows must be a table of target = tokens, got "
                f"{self.context_windows!r:.80}",
                hint='e.g. context_windows = { "sim-openai/sim-small" = 16384 }',
            )
        for target, tokens in self.context_windows.items():
            _target(target, "fallbacks context_windows")
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
                raise ConfigError(
                    f"fallbacks context_windows: {target!r} = {tokens!r:.40} is not a number "
                    "of tokens",
                    hint="give each target's context window as a positive integer",
                )
        object.__setattr__(self, "context_windows", MappingProxyType(dict(self.context_windows)))

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> Fallbacks:
        """Build from a ``[fallbacks]`` table: ``"provider/model" = [targets]`` entries, plus
        optional ``default = [targets]`` and ``context_windows = {target = tokens}``."""
        chains = {k: v for k, v in settings.items() if k not in ("default", "context_windows")}
        return cls(chains, settings.get("default", ()), settings.get("context_windows", _EMPTY))

    def chain(self, address: str) -> tuple[str, ...]:
        """The targets for a call to ``address``: itself first, then its fallbacks."""
        following = self.chains.get(address, self.default)
        return (address, *(t for t in dict.fromkeys(following) if t != address))


def check_fallback_targets(
    fallbacks: Fallbacks,
    known: Mapping[str, Sequence[str] | None],
    *,
    default_provider: str | None = None,
) -> None:
    """Check that every address in ``fallbacks`` (chain keys, their targets, ``default``,
    ``context_windows``) names something a call could reach, so a typo fails when the config
    loads rather than on the first outage, when the fallback is needed.

    ``known`` maps each provider name to its models, or to None when it accepts any model
    name (real HTTP APIs); routing policies are the models of provider ``"policy"``. An
    address resolves as a call's would: ``provider/model``, else, with ``default_provider``,
    the whole address is that provider's model. Raises `ConfigError` listing the known
    targets."""
    places: list[tuple[str, str]] = [(key, f"fallbacks key {key!r}") for key in fallbacks.chains]
    for key, chain in fallbacks.chains.items():
        places += [(target, f"fallbacks for {key!r}") for target in chain]
    places += [(target, "fallbacks default") for target in fallbacks.default]
    places += [(target, "fallbacks context_windows") for target in fallbacks.context_windows]
    check_targets(places, known, default_provider=default_provider)


def check_targets(
    places: Sequence[tuple[str, str]],
    known: Mapping[str, Sequence[str] | None],
    *,
    default_provider: str | None = None,
) -> None:
    """The check of `check_fallback_targets` for any ``(address, where it was found)`` pairs
    (a routing policy's targets, say)."""
    for address, where in places:
        problem = _unreachable(address, known, default_provider)
        if problem is not None:
            raise ConfigError(
                f"{where}: {address!r} {problem}",
                hint=f"known targets: {_known_targets(known)}",
            )


def _unreachable(
    address: str, known: Mapping[str, Sequence[str] | None], default_provider: str | None
) -> str | None:
    """Why ``address`` reaches no model (None when it reaches one)."""
    provider, _, model = address.partition("/")
    if provider not in known or not model:
        if default_provider is None or default_provider not in known:
            return f"names no configured provider ({provider!r})"
        provider, model = default_provider, address
    models = known[provider]
    if models is not None and model not in models:
        what = "routing policy" if provider == "policy" else f"model of provider {provider!r}"
        return f"is not a known {what}"
    return None


def _known_targets(known: Mapping[str, Sequence[str] | None]) -> str:
    parts = []
    for provider in sorted(known):
        models = known[provider]
        if models is None:
            parts.append(f"{provider}/<any model>")
        elif models:
            parts.append(f"{provider}/{{{', '.join(models)}}}")
    text = "; ".join(parts)
    return text if len(text) <= 600 else text[:597] + "..."


def _target(value: Any, where: str) -> str:
    if not isinstance(value, str) or "/" not in value.strip("/"):
        raise ConfigError(
            f"{where}: {value!r} is not a target",
            hint='write targets as "provider/model", e.g. "sim-anthropic/sim-haikuish"',
        )
    return value


def _targets(values: Any, where: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ConfigError(
            f"fallbacks for {where} must be a list of targets, got {values!r}",
            hint='e.g. ["sim-anthropic/sim-haikuish", "sim-workers/sim-llamaish-70b"]',
        )
    return tuple(_target(v, f"fallbacks for {where}") for v in values)


#: ``[gateway.retry]``: `RetryPolicy`'s fields (the policy checks their values, for Python
#: callers too).
RETRY_TABLE = Table(
    keys=tuple(
        Key(name=name, what=f"RetryPolicy's {name}", doc=doc)
        for name, doc in (
            ("max_attempts", "tries per target, the first included (default 3)"),
            ("base_delay", "seconds: the first backoff's ceiling (default 0.5)"),
            ("multiplier", "backoff growth per retry (default 2)"),
            ("max_delay", "seconds: the longest backoff (default 20)"),
            ("max_retry_after", "seconds: a longer Retry-After gives up the target (default 60)"),
            ("attempt_timeout", "seconds each attempt may take"),
            ("deadline", "seconds for the whole call, retries and fallbacks included"),
        )
    )
)


class Retry(Middleware):
    """Retries, fallbacks and circuit breaking for every call (kind ``"retry"``, innermost).

    Policy arguments are those of `RetryPolicy`. ``fallbacks``: a `Fallbacks`, or a mapping
    in the shape of `Fallbacks.from_mapping`. ``health``: a `HealthTracker` (share one
    between gateways to share what they learn), a mapping of its arguments, or None for no
    circuit breaking. ``clock`` (monotonic seconds), ``sleep``, ``async_sleep`` and ``rng``
    (anything with ``random()``) are injectable so tests never wait.
    """

    kind = "retry"

    def __init__(
        self,
        *,
        max_attempts: int = 3,
        base_delay: float = 0.5,
        multiplier: float = 2.0,
        max_delay: float = 20.0,
        max_retry_after: float = 60.0,
        attempt_timeout: float | None = None,
        deadline: float | None = None,
        fallbacks: Fallbacks | Mapping[str, Any] | None = None,
        health: HealthTracker | Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
        async_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            base_delay=base_delay,
            multiplier=multiplier,
            max_delay=max_delay,
            max_retry_after=max_retry_after,
            attempt_timeout=attempt_timeout,
            deadline=deadline,
        )
        if fallbacks is None:
            fallbacks = Fallbacks()
        elif not isinstance(fallbacks, Fallbacks):
            fallbacks = Fallbacks.from_mapping(fallbacks)
        self.fallbacks = fallbacks
        if health is not None and not isinstance(health, HealthTracker):
            health = HealthTracker.from_mapping(health, clock=clock)
        self.health = health
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._rng = rng or random.Random()
        # The request needs a new timeout per attempt only with one of these set.
        self._sets_timeout = attempt_timeout is not None or deadline is not None

    @property
    def health_io(self) -> Executor | None:
        """Where the async loops run the breakers' bookkeeping (their store's threads when it
        waits on the network, e.g. Redis); None: inline."""
        return None if self.health is None else self.health.io

    @classmethod
    def from_config(
        cls,
        retry: Mapping[str, Any] | None = None,
        *,
        fallbacks: Mapping[str, Any] | None = None,
        health: Mapping[str, Any] | None = None,
        **injected: Any,
    ) -> Retry:
        """Build from plain config tables: ``retry`` holds `RetryPolicy` keys (a
        ``[gateway.retry]`` table), ``fallbacks`` a ``[fallbacks]`` table, ``health`` a
        ``[health]`` table. ``injected`` passes ``clock``, ``sleep``, ... through."""
        settings = dict(retry or {})
        RETRY_TABLE.validate(settings, "[gateway.retry]")
        return cls(**settings, fallbacks=fallbacks or None, health=health or None, **injected)

    def describe(self) -> Mapping[str, Any]:
        return {
            "kind": self.kind,
            "type": type(self).__name__,
            "max_attempts": self.policy.max_attempts,
            "deadline": self.policy.deadline,
            "fallback_chains": len(self.fallbacks.chains) + bool(self.fallbacks.default),
            "health": self.health is not None,
        }

    def __repr__(self) -> str:
        return f"<Retry {self.policy} fallbacks={self.fallbacks} health={self.health}>"

    # --- hooks: the loops over attempts, written once (see aigw_lab.gateway._async.retry) ---

    handle = retry_chat  # type: ignore[assignment]
    ahandle = retry_achat  # type: ignore[assignment]
    handle_stream = retry_stream  # type: ignore[assignment]
    ahandle_stream = retry_astream  # type: ignore[assignment]
