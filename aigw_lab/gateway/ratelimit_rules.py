"""Rate-limit rules and the token buckets behind them: `RateLimitRule` (which calls a rule
covers, keyed how, at which rates), `estimate_tokens`, and the bucket and waiter records the
`RateLimiter` primitive (`aigw_lab.gateway.ratelimit`) and its bucket store
(`aigw_lab.gateway.ratelimit_store`) schedule with."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aigw_lab.config_schema import TABLE, Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.middleware import (
    CallContext,
)
from aigw_lab.types import ChatRequest

__all__ = ["RateLimitRule", "estimate_tokens", "CHARS_PER_TOKEN"]

#: The estimate's conversion: about four characters of English text make one token.
CHARS_PER_TOKEN = 4
_KEY_FIELDS = ("user", "tenant", "provider", "model")
_INTERVALS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_LIMIT_FIELDS = tuple(f"{d}_per_{u}" for d in ("requests", "tokens") for u in _INTERVALS)
#: One ``[[rate_limits.rule]]``: `RateLimitRule`'s fields (it checks their values).
RULE_TABLE = Table(
    keys=(
        Key(name="name", types=(str,), what="a string", doc="the rule's name in errors"),
        Key(
            name="key",
            what="call fields: user, tenant, provider, model",
            doc="one bucket per value of these fields",
        ),
        Key(
            name="match",
            types=TABLE,
            what="a table of field = values",
            doc="the calls the rule applies to",
        ),
        *(
            Key(name=name, what="a number > 0", doc=name.replace("_", " "))
            for name in _LIMIT_FIELDS
        ),
    ),
    hint='e.g. {key = ["tenant"], requests_per_minute = 60}',
)
#: ``[rate_limits]`` (docs/rate_limits.md); `RateLimiter` checks the values.
RATE_LIMITS_TABLE = Table(
    keys=(
        Key(
            name="mode", what='"wait" or "reject"', doc='"wait" (default) or "reject" over a limit'
        ),
        Key(name="timeout", what="seconds >= 0", doc="seconds a call may wait (default 30)"),
        Key(
            name="default_output_tokens",
            what="a positive integer",
            doc="output tokens assumed when a call sets no max_tokens",
        ),
        Key(
            name="pause_on_429",
            what='"provider", "model" or "off"',
            doc="what an upstream 429 pauses (default provider)",
        ),
        Key(name="max_pause", what="seconds >= 0", doc="longest such pause (default 300)"),
        Key(
            name="rule",
            types=(list, tuple, Mapping),
            array=True,
            table=RULE_TABLE,
            what="a list of tables",
            hint="write each rule as a [[rate_limits.rule]] table",
        ),
    )
)
# Float refills land a hair short of whole amounts; that much shortfall counts as enough.
_SLACK = 1e-9
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_FIELD_OF: dict[str, Callable[[CallContext], Any]] = {
    "user": lambda ctx: ctx.request.user,
    "tenant": lambda ctx: ctx.request.tenant,
    "provider": lambda ctx: ctx.provider_name,
    "model": lambda ctx: ctx.address,  # provider/model: one model name on two providers differs
}


def estimate_tokens(request: ChatRequest, default_output_tokens: int = 256) -> int:
    """The tokens a call is expected to use, reserved before it is sent: the messages' text
    at `CHARS_PER_TOKEN` characters a token (rounded up), plus ``max_tokens`` or, when the
    request sets none, ``default_output_tokens``. Images and tool schemas are not counted."""
    chars = 0
    for message in request.messages:
        chars += len(message.text)
    return -(-chars // CHARS_PER_TOKEN) + (request.max_tokens or default_output_tokens)


@dataclass(frozen=True)
class RateLimitRule:
    """One rule: its limits apply separately to each distinct value of ``key``.

    ``key``: fields among ``user``, ``tenant``, ``provider``, ``model`` (``model`` is the
    ``provider/model`` address); ``()`` makes one bucket for every call. Calls without a user
    or tenant share one bucket for "none". ``match`` restricts the rule to calls whose fields
    take the given values (``{"provider": ["openai"]}``). At least one ``*_per_*`` limit.
    """

    key: Sequence[str] = ()
    requests_per_second: float | None = None
    requests_per_minute: float | None = None
    requests_per_hour: float | None = None
    requests_per_day: float | None = None
    tokens_per_second: float | None = None
    tokens_per_minute: float | None = None
    tokens_per_hour: float | None = None
    tokens_per_day: float | None = None
    match: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    name: str | None = None

    def __post_init__(self) -> None:
        key = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        for part in key:
            if part not in _KEY_FIELDS:
                raise ConfigError(
                    f"rate limit key {part!r} is not a call field",
                    hint=f"key on any of {', '.join(_KEY_FIELDS)}",
                )
        object.__setattr__(self, "key", key)
        match: dict[str, tuple[Any, ...]] = {}
        for name, values in self.match.items():
            if name not in _KEY_FIELDS:
                raise ConfigError(
                    f"rate limit match field {name!r} is not a call field",
                    hint=f"match on any of {', '.join(_KEY_FIELDS)}",
                )
            values = (values,) if isinstance(values, str) else tuple(values)
            match[name] = values
        object.__setattr__(self, "match", MappingProxyType(match))
        for name in _LIMIT_FIELDS:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            ):
                raise ConfigError(f"{name}={value!r} is invalid", hint="use a number > 0")
        if not self.limits:
            raise ConfigError(
                f"rate limit rule {self.label!r} sets no limit",
                hint="set one of " + ", ".join(_LIMIT_FIELDS),
            )

    @classmethod
    def from_mapping(
        cls, settings: Mapping[str, Any], section: str = "rate_limits.rule"
    ) -> RateLimitRule:
        """Build from a ``[[rate_limits.rule]]`` table; unknown keys are a `ConfigError`."""
        RULE_TABLE.validate(settings, f"[{section}]")
        return cls(**settings)

    @property
    def label(self) -> str:
        """The rule's name, or its key fields joined by ``+`` (``"global"`` for no key)."""
        return self.name or "+".join(self.key) or "global"

    @property
    def limits(self) -> tuple[tuple[str, float, float], ...]:
        """``(limit name, amount, interval seconds)`` for each limit set."""
        return tuple(
            (name, float(getattr(self, name)), _INTERVALS[name.rpartition("_")[2]])
            for name in _LIMIT_FIELDS
            if getattr(self, name) is not None
        )


class _Bucket:
    """One token bucket; ``level`` may go below zero when a call used more than it reserved
    (the debt delays later calls). ``queue`` holds waiters in ticket order. Guarded by the
    limiter's lock."""

    __slots__ = (
        "rule",
        "key",
        "limit",
        "counts_tokens",
        "capacity",
        "rate",
        "level",
        "updated",
        "queue",
    )

    def __init__(self, rule: str, key: str, limit: tuple[str, float, float], now: float) -> None:
        self.rule = rule
        self.key = key
        self.limit = limit[0]
        self.counts_tokens = limit[0].startswith("tokens")
        self.capacity = limit[1]
        self.rate = limit[1] / limit[2]
        self.level = limit[1]
        self.updated = now
        self.queue: deque[_Waiter] = deque()

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def time_for(self, amount: float) -> float:
        """Seconds until the level reaches ``amount`` (call `refill` first)."""
        short = amount - self.level
        return 0.0 if short <= _SLACK else short / self.rate

    def describe(self) -> str:
        return describe_limit(self.rule, self.key, self.limit, self.capacity)


def describe_limit(rule: str, key: str, limit: str, capacity: float) -> str:
    """How a refusal names one bucket: ``rate limit 'user' (user=ann): 2 requests per hour``."""
    where = f" ({key})" if key else ""
    return f"rate limit {rule!r}{where}: {capacity:g} {limit.replace('_', ' ')}"


class _Waiter:
    """One call's claim on its buckets, from arrival until settled: the limiter fills in
    the call's facts, the bucket store ``needs`` (bucket, amount), ``ticket`` (arrival
    order) and ``queued``; ``wake`` is resolved when a waiting call should look again,
    ``delivered`` counts the characters a stream delivered."""

    __slots__ = (
        "ctx",
        "needs",
        "tokens",
        "output_allowance",
        "ticket",
        "queued",
        "granted",
        "deadline",
        "wake",
        "delivered",
    )

    def __init__(self, ctx: CallContext, tokens: int, output_allowance: int) -> None:
        self.ctx = ctx
        self.needs: list[tuple[_Bucket, float]] = []
        self.tokens = tokens
        self.output_allowance = output_allowance
        self.ticket = -1
        self.queued = False
        self.granted = False
        self.deadline = 0.0
        self.wake: Future[None] | None = None
        self.delivered = 0
