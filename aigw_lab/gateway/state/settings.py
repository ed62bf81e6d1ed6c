"""``[state]``: where a gateway's primitives keep their state, and what each does while the
shared state does not answer.

    [state]
    backend = "redis"             # "memory" (default): each process its own
    url_env = "AIGW_REDIS_URL"    # the variable holding redis://HOST:PORT/DB
    prefix = "aigw:prod:"         # every key starts with it
    rate_limits = "open"          # Redis unreachable: "open" admits, "closed" refuses
    budgets = "closed"
    cache = "open"
    health = "open"
    io_threads = 16               # async modes wait on Redis from these (0: on the loop)

`StateSettings` checks the table (the URL is read from the environment and checked when the
config is loaded, so a mistake fails at start-up); `SharedStores` builds one store per
primitive on one connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aigw_lab.config_schema import NUMBER, Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.state.buckets import RedisBucketStore
from aigw_lab.gateway.state.budgets import RedisBudgetStore
from aigw_lab.gateway.state.cache import RedisCacheStore
from aigw_lab.gateway.state.circuits import RedisCircuitStore
from aigw_lab.gateway.state.connection import (
    FailMode,
    Outage,
    SharedState,
    check_env_name,
    check_prefix,
    check_url,
)

if TYPE_CHECKING:
    from aigw_lab.gateway.state.semantic import RedisSemanticStore

__all__ = ["STATE_TABLE", "SharedStores", "StateSettings"]

_FAIL = ("open", "closed")
_PRIMITIVES = {
    "rate_limits": ("rate limits", "open"),
    "budgets": ("budgets", "closed"),
    "cache": ("the exact cache", "open"),
    "health": ("circuit breakers", "open"),
}
_SEMANTIC = ("the semantic cache", "open")  # not configurable yet: [semantic_cache] wiring


def _fail_key(name: str, default: str) -> Key:
    return Key(
        name=name,
        types=(str,),
        choices=_FAIL,
        what='"open" or "closed"',
        doc=f'while Redis is unreachable: "open" goes on without it, "closed" refuses '
        f"(default {default})",
    )


#: ``[state]`` (docs/deployment.md, "Shared state on Redis or Valkey").
STATE_TABLE = Table(
    keys=(
        Key(
            name="backend",
            types=(str,),
            choices=("memory", "redis"),
            what='"memory" or "redis"',
            doc='"redis": rate limits, budgets, exact cache and breakers shared by processes',
        ),
        Key(
            name="url_env",
            types=(str,),
            what="an environment variable name",
            hint='e.g. url_env = "AIGW_REDIS_URL" (never the URL itself: it may hold a password)',
            doc="the environment variable holding the redis:// (or rediss://) URL",
        ),
        Key(name="prefix", types=(str,), what="a key prefix", doc='prefix of every key ("aigw:")'),
        Key(
            name="timeout",
            types=NUMBER,
            low=0,
            low_open=True,
            what="a positive number of seconds",
            doc="seconds to wait for Redis before counting it unreachable (default 1)",
        ),
        Key(
            name="retry_every",
            types=NUMBER,
            low=0,
            low_open=True,
            what="a positive number of seconds",
            doc="while unreachable, seconds between tries (default 1)",
        ),
        Key(
            name="io_threads",
            types=(int,),
            low=0,
            high=256,
            what="an integer from 0 to 256",
            doc="threads the async modes wait on Redis from (default 16; 0: on the event loop)",
        ),
        *(_fail_key(name, default) for name, (_, default) in _PRIMITIVES.items()),
    ),
    hint='backend = "redis", url_env = "AIGW_REDIS_URL"',
)


@dataclass(frozen=True, kw_only=True)
class StateSettings:
    """A checked ``[state]`` table. ``url`` is the URL read from ``url_env`` (kept out of
    the repr: it may hold a password); ``fail`` maps each primitive to open or closed."""

    backend: str = "memory"
    url_env: str | None = None
    url: str | None = field(default=None, repr=False)
    prefix: str = "aigw:"
    timeout: float = 1.0
    retry_every: float = 1.0
    io_threads: int = 16
    fail: Mapping[str, FailMode] = field(
        default_factory=lambda: {name: d for name, (_, d) in _PRIMITIVES.items()}  # type: ignore[misc]
    )

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], env: Mapping[str, str], where: str = "[state]"
    ) -> StateSettings:
        """Check ``table`` (a ``[state]``) and, for Redis, read and check its URL."""
        STATE_TABLE.validate(table, where)
        backend = table.get("backend", "memory")
        fail = {name: table.get(name, default) for name, (_, default) in _PRIMITIVES.items()}
        prefix = check_prefix(table.get("prefix", "aigw:"), f"{where} prefix")
        if backend == "memory":
            extra = [k for k in ("url_env", "io_threads", *_PRIMITIVES) if k in table]
            if extra:
                raise ConfigError(
                    f'{where} {extra[0]} applies only to backend = "redis"',
                    hint='add backend = "redis", or remove the key',
                )
            return cls(prefix=prefix, fail=fail)
        if "url_env" not in table:
            raise ConfigError(
                f'{where} backend = "redis" needs url_env',
                hint='url_env = "AIGW_REDIS_URL", and export AIGW_REDIS_URL=redis://HOST:6379/0',
            )
        name = check_env_name(table["url_env"], f"{where} url_env")
        url = env.get(name)
        if not url:
            raise ConfigError(
                f"{where} url_env names {name}, which is not set",
                hint=f"export {name}=redis://HOST:PORT/0 before starting the gateway",
            )
        return cls(
            backend="redis",
            url_env=name,
            url=check_url(url, f"${name} ({where} url_env)"),
            prefix=prefix,
            timeout=float(table.get("timeout", 1.0)),
            retry_every=float(table.get("retry_every", 1.0)),
            io_threads=table.get("io_threads", 16),
            fail=fail,
        )

    def stores(self) -> SharedStores | None:
        """The shared stores (None for the memory backend). Nothing connects until a store
        is first used."""
        if self.backend != "redis" or self.url is None:
            return None
        state = SharedState.from_url(
            self.url,
            prefix=self.prefix,
            timeout=self.timeout,
            where=f"${self.url_env}",
            io_threads=self.io_threads,
        )
        return SharedStores(state, self)


class SharedStores:
    """One store per primitive on one `SharedState`, each with its own `Outage` (its own
    fail mode and log lines)."""

    def __init__(self, state: SharedState, settings: StateSettings) -> None:
        self.state = state
        self.settings = settings

    def outage(self, primitive: str, clock: Callable[[], float] = time.monotonic) -> Outage:
        what, _ = _PRIMITIVES[primitive]
        return Outage(
            what,
            self.settings.fail[primitive],
            retry_every=self.settings.retry_every,
            clock=clock,
        )

    def buckets(self) -> RedisBucketStore:
        return RedisBucketStore(self.state, outage=self.outage("rate_limits"))

    def budgets(self) -> RedisBudgetStore:
        return RedisBudgetStore(self.state, outage=self.outage("budgets"))

    def cache(self) -> RedisCacheStore:
        return RedisCacheStore(self.state, outage=self.outage("cache"))

    def circuits(self, clock: Callable[[], float] = time.time) -> RedisCircuitStore:
        return RedisCircuitStore(self.state, outage=self.outage("health"), clock=clock)

    def semantic(self, max_entries: int, **options: Any) -> RedisSemanticStore:
        """The semantic cache's entries (fails open: a miss). ``options`` go to
        `RedisSemanticStore` (``index_factory``)."""
        # lazy: numpy (the semantic store's vectors) is loaded only when one is built
        from aigw_lab.gateway.state.semantic import RedisSemanticStore

        what, fail = _SEMANTIC
        outage = Outage(what, fail, retry_every=self.settings.retry_every)  # type: ignore[arg-type]
        return RedisSemanticStore(self.state, max_entries, outage=outage, **options)
