"""What every provider is: the `Provider` protocol, the `ProviderSpec` that configures one,
and the shared HTTP clients (one connection pool per gateway).

A provider receives a `ChatRequest` whose ``model`` is the provider's own model name (the
gateway strips the ``provider/`` prefix) and returns a `ChatResponse`, or raises an error
from `aigw_lab.errors`. Nothing else crosses this boundary: no httpx or SDK exception, no
provider-specific dict.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.extras import missing_modules
from aigw_lab.types import ChatRequest, ChatResponse, StreamEvent

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Provider",
    "ProviderSpec",
    "HttpClients",
    "PoolSettings",
    "POOL_KEYS",
    "TRANSPORTS",
    "Price",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in USD per million tokens (cache prices default to the input price)."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How to reach one provider: its kind (``kind``, a name in the registry of
    `aigw_lab.providers.registry`, which knows its API format) kept apart from where it lives
    (``base_url``) and how to authenticate (``api_key_env``).

    ``cf_gateway`` routes the calls through a Cloudflare AI Gateway named so (the account is
    ``account_id``): the provider's own format is sent to
    ``https://gateway.ai.cloudflare.com/v1/{account_id}/{cf_gateway}/{provider}``.
    ``cf_gateway_token_env`` names the variable with the gateway's own token (authenticated
    gateways); ``cf_headers`` adds ``cf-aig-*`` headers (cache TTL, skip cache, metadata).
    ``options`` holds kind-specific settings (the simulated fleet's seed, faults, format).
    """

    name: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    account_id: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    cf_gateway: str | None = None
    cf_gateway_token_env: str | None = None
    cf_headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    models: tuple[str, ...] = ()
    prices: Mapping[str, Price] = field(default_factory=lambda: _EMPTY)
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    price_provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The upstream connection pool of one gateway (``[gateway]`` ``pool_*`` keys).

    ``max_connections`` caps open upstream connections, ``max_keepalive`` the idle ones
    kept for reuse. ``pool_timeout`` is how long a call may wait for a free connection when
    all are busy: short on purpose and separate from a provider's read ``timeout``, so a
    burst larger than the pool fails fast with a `ProviderTimeoutError` instead of queueing
    for as long as an answer may take. ``transport`` is ``"httpx"`` (httpx's own pool,
    split into ``shards``), ``"lean"`` (`aigw_lab.providers.lean`: a LIFO pool without
    httpx's per-request scan, HTTP/1.1 only, needing the fast-serve extra) or ``"auto"``
    (the default: lean when httptools is installed and the pool is not sharded, else
    httpx's; either way httpx's when a proxy is set in the environment).
    """

    max_connections: int = 200
    max_keepalive: int = 50
    pool_timeout: float = 5.0
    shards: int = 1
    transport: str = "auto"

    def uses_lean(self) -> bool:
        """Whether clients of this pool take the lean transport: asked for by name, or
        ``"auto"`` with httptools installed and one shard (shards are httpx pools)."""
        if self.transport == "auto":
            return self.shards == 1 and not missing_modules(("httptools",))
        return self.transport == "lean"

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_keepalive", "shards"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"pool {name} = {value!r} must be a positive integer")
        value = self.pool_timeout
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"pool_timeout = {value!r} must be a positive number of seconds")
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"transport = {self.transport!r} must be one of "
                + ", ".join(repr(name) for name in TRANSPORTS)
            )
        if self.transport == "lean" and missing_modules(("httptools",)):
            raise MissingExtraError(
                'transport = "lean" needs httptools, from the fast-serve extra',
                hint='pip install "aigw-lab[fast-serve]"',
            )
        if self.transport == "lean" and self.shards != 1:
            raise ConfigError(
                f"pool shards = {self.shards} applies to the httpx transport only",
                hint='drop pool_shards with transport = "lean" (its pool does not scan)',
            )
        if self.shards > self.max_connections:
            raise ConfigError(
                f"pool shards = {self.shards} must not exceed"
                f" max_connections = {self.max_connections} (each shard needs a connection)"
            )

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str) -> PoolSettings | None:
        """The settings of a ``[gateway]`` table's ``pool_*`` keys (None without any); a
        `ConfigError` at ``where`` naming a bad value."""
        values = {name: table[key] for key, name in POOL_KEYS.items() if key in table}
        if not values:
            return None
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc

    @property
    def limits(self) -> httpx.Limits:
        """The pool sizes as httpx limits."""
        return _httpx().Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=min(self.max_keepalive, self.max_connections),
        )


#: The upstream transports `PoolSettings.transport` names.
TRANSPORTS: tuple[str, ...] = ("auto", "httpx", "lean")

#: ``[gateway]`` keys of the upstream pool -> `PoolSettings` fields.
POOL_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "pool_max_connections": "max_connections",
        "pool_max_keepalive": "max_keepalive",
        "pool_timeout": "pool_timeout",
        "pool_shards": "shards",
        "transport": "transport",
    }
)


@runtime_checkable
class Provider(Protocol):
    """Anything that answers chat requests: an HTTP adapter, the simulated fleet, a replay
    of a log, a test double, or a `Gateway` itself."""

    name: str
    simulated: bool

    def chat(self, request: ChatRequest) -> ChatResponse: ...

    async def achat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Yield `TextDelta` events, then exactly one `StreamEnd` with the full response."""
        ...

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class HttpClients:
    """The HTTP clients one gateway shares across its providers: one sync connection pool,
    and one async pool per running event loop (an async pool cannot outlive its loop, and
    notebooks often call ``asyncio.run`` many times), created on first use.

    ``pool`` sizes the pools and bounds the wait for a free connection (`PoolSettings`);
    ``limits`` (httpx's own) overrides its sizes. Pass your own ``client``/``async_client``
    (or ``transport``/``async_transport``) to inject a fake server or a proxy; clients
    passed in are never closed here, and their pools are theirs to size.
    """

    def __init__(
        self,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        pool: PoolSettings | None = None,
    ) -> None:
        self._client = client
        self._async_client = async_client
        self._transport = transport
        self._async_transport = async_transport
        self.pool = pool or PoolSettings()
        self._limits = limits or self.pool.limits
        self._owned_sync: httpx.Client | None = None
        self._owned_async: dict[int, tuple[Any, httpx.AsyncClient, Any]] = {}
        self._lean_sync: Any = None
        self._lock = threading.Lock()

    def _cap_sync(self, request: httpx.Request) -> None:
        _cap_pool_wait(request, self.pool.pool_timeout)

    async def _cap_async(self, request: httpx.Request) -> None:
        _cap_pool_wait(request, self.pool.pool_timeout)

    def _lean(self, *, async_: bool) -> Any:
        """The lean transport when the pool asks for it (None: httpx's own). httpx's own
        stays when a transport was injected or a proxy is set in the environment (the
        lean one speaks to origins directly; passing it would turn the proxy off)."""
        if not self.pool.uses_lean() or (self._transport if not async_ else self._async_transport):
            return None
        if _environment_proxies():
            return None
        if async_:
            # lazy: only the lean transport needs it (and httptools, an optional extra)
            from aigw_lab.providers.lean_async import AsyncLeanTransport

            return AsyncLeanTransport(self._limits)
        # lazy: only the lean transport needs it (and httptools, an optional extra)
        from aigw_lab.providers.lean import LeanTransport

        return LeanTransport(self._limits)

    def _sharded(self, *, async_: bool) -> dict[str, Any] | None:
        """A sharded transport for every URL when the pool asks for shards (None: httpx's
        own pool). Mounted rather than passed as ``transport``, which would turn off the
        ``HTTP(S)_PROXY`` environment variables: a proxy's more specific mount still wins."""
        if self.pool.shards == 1 or (self._transport if not async_ else self._async_transport):
            return None
        # lazy: only a sharded pool needs it (and it imports httpx, see _httpx)
        from aigw_lab.providers import sharded

        kind = sharded.AsyncShardedTransport if async_ else sharded.ShardedTransport
        return {"all://": kind.build(self._limits, self.pool.shards)}

    def sync(self) -> httpx.Client:
        """The shared sync client."""
        if self._client is not None:
            return self._client
        if self._owned_sync is None:
            with self._lock:
                if self._owned_sync is None:
                    self._lean_sync = self._lean(async_=False)
                    self._owned_sync = _httpx().Client(
                        transport=self._transport or self._lean_sync,
                        mounts=self._sharded(async_=False),
                        limits=self._limits,
                        timeout=None,
                        event_hooks={"request": [self._cap_sync]},
                    )
        return self._owned_sync

    def async_(self) -> httpx.AsyncClient:
        """The async client for the running event loop."""
        if self._async_client is not None:
            return self._async_client
        loop = asyncio.get_running_loop()
        entry = self._owned_async.get(id(loop))
        if entry is not None and entry[0]() is loop:
            return entry[1]
        with self._lock:
            entry = self._owned_async.get(id(loop))
            if entry is None or entry[0]() is not loop:
                # Forget pools of loops that are gone; their sockets died with them.
                for key in [k for k, (ref, *_) in self._owned_async.items() if ref() is None]:
                    del self._owned_async[key]
                lean = self._lean(async_=True)
                client = _httpx().AsyncClient(
                    transport=self._async_transport or lean,
                    mounts=self._sharded(async_=True),
                    limits=self._limits,
                    timeout=None,
                    event_hooks={"request": [self._cap_async]},
                )
                entry = (weakref.ref(loop), client, lean)
                self._owned_async[id(loop)] = entry
        return entry[1]

    def sync_lean(self) -> Any:
        """The lean transport under the shared sync client, for calls that skip httpx's
        client (`aigw_lab.providers.lean_direct`); None when that client is not ours over
        the lean transport (injected, httpx's transport, sharded, or a proxy in the
        environment), whose calls go through the client."""
        if self._owned_sync is None:
            self.sync()
        return self._lean_sync

    def async_lean(self) -> Any:
        """The lean transport under the running loop's async client, as `sync_lean`."""
        if self._async_client is not None:
            return None
        loop = asyncio.get_running_loop()
        entry = self._owned_async.get(id(loop))
        if entry is None or entry[0]() is not loop:
            self.async_()
            entry = self._owned_async[id(loop)]
        return entry[2]

    def close(self) -> None:
        """Close the sync client this object created (async ones need `aclose`)."""
        if self._owned_sync is not None:
            self._owned_sync.close()
            self._owned_sync = None
            self._lean_sync = None

    async def aclose(self) -> None:
        """Close the async client of the running loop and the sync one, if created here."""
        entry = self._owned_async.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()
        self.close()


def _httpx() -> Any:
    """The httpx module, imported when a pool is first needed rather than with this module:
    every config read, price and ``aigw-lab --help`` imports this module and never makes a
    request, and importing httpx costs 0.1 to 0.3 s of CPU (it also loads its own command
    line's click, rich and pygments when they are installed)."""
    # lazy: httpx loads in ~0.1-0.3 s; only a request needs it (see the docstring)
    import httpx

    return httpx


def _environment_proxies() -> bool:
    """Whether the environment sets a proxy httpx would use (HTTP(S)_PROXY, ALL_PROXY)."""
    # lazy: urllib.request is only needed when the lean transport is chosen
    from urllib.request import getproxies

    return any(key in ("http", "https", "all") for key in getproxies())


def _cap_pool_wait(request: httpx.Request, pool_timeout: float) -> None:
    """Bound the request's wait for a pooled connection by ``pool_timeout``. httpx's
    ``Timeout(t)`` uses ``t`` for the pool wait too, so without this a call would queue for
    as long as its read timeout (60 s) when the pool is exhausted. Run as an httpx request
    hook (not a wrapping transport, which would turn off httpx's proxy settings from the
    environment)."""
    timeout = request.extensions.get("timeout")
    if not isinstance(timeout, dict):
        return
    current = timeout.get("pool")
    if current is not None and current <= pool_timeout:
        return
    # A copy: the provider shares one timeout dict across all its requests.
    request.extensions = {**request.extensions, "timeout": {**timeout, "pool": pool_timeout}}
