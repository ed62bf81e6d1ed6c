"""The exact cache: a gateway middleware that answers a request it has already seen from a
store, without calling the provider.

    gateway = Gateway(providers, middleware=[ExactCache(store=MemoryStore(), ttl=3600)])

A request's key is the SHA-256 of canonical JSON of its target (provider and model), every
field that changes the answer, and a namespace (its tenant, else its user, else a shared
one), so one tenant never sees another's answers. A hit is logged as its own row (attempt 0,
cost 0, ``cache_status = 'hit'``); a miss goes on to the provider and its attempt rows say
``'miss'``. Identical requests in flight at the same time are coalesced into one upstream
call, whatever their call mode (threads and tasks wait on one flight). Per-request options,
in the manner of Cloudflare AI Gateway's ``cf-aig-skip-cache``, ``cf-aig-cache-ttl`` and
``cf-aig-cache-key`` headers, go in ``metadata={"cache": {...}}``.
See docs/caching.md.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from aigw_lab.config_schema import NUMBER, TABLE, Key, Table
from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.gateway.cache_common import read_cache_options, stored_answer
from aigw_lab.gateway.cache_stores import CacheStore, DuckDBStore, MemoryStore, check_ttl
from aigw_lab.gateway.effects import offloaded_from
from aigw_lab.gateway.middleware import CallContext, Primitive
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Serve, Verdict, Wait
from aigw_lab.types import ChatRequest, ChatResponse

__all__ = ["ExactCache", "CacheStats", "CacheWarning", "cache_key", "namespace_for"]

#: Part of every key: bump it when the key's recipe changes, so persistent stores written
#: by an older recipe miss instead of answering wrongly.
_KEY_VERSION = 1
_SHARED_NAMESPACE = "shared"
#: ``[cache]`` (docs/caching.md); `ExactCache` and its stores check the values they take.
CACHE_TABLE = Table(
    keys=(
        Key(name="store", types=(str,), what='"memory" or "duckdb"', doc="where entries live"),
        Key(name="max_bytes", types=(int,), what="a number of bytes", doc="memory store size"),
        Key(
            name="path",
            types=(str,),
            nonempty=True,
            what="a file path string",
            doc="duckdb store file, relative to the config file",
        ),
        Key(name="ttl", types=NUMBER, what="a number of seconds", doc="entry lifetime"),
        Key(
            name="model_ttls",
            types=TABLE,
            what="a table of model = seconds",
            doc="lifetimes per model",
        ),
        Key(
            name="coalesce",
            types=(bool,),
            what="true or false",
            doc="identical calls in flight share one upstream call",
        ),
        # Read by `aigw-lab serve` (cli/warm.py: warm_at_startup), not by the cache itself.
        Key(
            name="warm_from",
            types=(str,),
            nonempty=True,
            what='"log", a dataset name or a .jsonl path',
            doc="serve: warm the caches at start-up from the call log or a dataset",
        ),
        Key(
            name="warm_top",
            types=(int,),
            low=1,
            what="a positive integer",
            doc="serve: the most frequent N logged prompts (first N dataset items)",
        ),
        Key(
            name="warm_target",
            types=(str,),
            nonempty=True,
            what='"provider/model"',
            doc="serve: the model whose answers warm the caches (a dataset needs one)",
        ),
        Key(
            name="warm_max_usd",
            types=NUMBER,
            low=0,
            what="a number of dollars >= 0",
            doc="serve: the most start-up warming may spend (default 0: free answers only)",
        ),
    )
)
_STORE_KINDS = ("memory", "duckdb")


class CacheWarning(UserWarning):
    """The cache's store failed; the call went on without the cache."""


def _canonical_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    # Not JSON: keyed by its type and repr. An object whose repr carries its id never hits,
    # which is safe; sharing a key with a different value would not be.
    return f"<{type(value).__qualname__}>{value!r}"


_CANONICAL = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_canonical_default
)


def namespace_for(request: ChatRequest) -> str:
    """The part of the key that keeps callers apart: ``tenant:<id>``, else ``user:<id>``,
    else ``shared``."""
    if request.tenant:
        return f"tenant:{request.tenant}"
    if request.user:
        return f"user:{request.user}"
    return _SHARED_NAMESPACE


def cache_key(
    request: ChatRequest, *, provider: str, model: str, custom_key: str | None = None
) -> str:
    """The exact-cache key (64 hex digits) of ``request`` sent to ``provider``/``model``.

    It hashes the namespace (`namespace_for`), the target, and every field that changes the
    answer: messages (multi-part content, names, tool calls and tool results included, so
    the system prompt too), temperature, top_p, max_tokens, stop, seed, tools, tool_choice
    and the provider-specific ``extra``. Tags, metadata, experiment id and timeout are not
    part of it. A ``custom_key`` stands in for the request's fields (namespace and target
    still apply).
    """
    if custom_key is not None:
        identity: dict[str, Any] = {"custom": custom_key}
    else:
        body = request.to_dict()
        del body["model"]  # the target below is the resolved one
        for name in ("temperature", "top_p"):  # temperature=0 and 0.0 ask the same thing
            if name in body:
                body[name] = float(body[name])
        identity = {"request": body}
    identity["v"] = _KEY_VERSION
    identity["namespace"] = namespace_for(request)
    identity["provider"] = provider
    identity["model"] = model
    encoded = _CANONICAL.encode(identity).encode("utf-8", "surrogatepass")
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """What a cache has done since it was created, and what its store holds now.

    ``hits``: answered from the store; ``coalesced``: answered by sharing an identical
    request's upstream call that was in flight; ``misses``: sent upstream; ``bypasses``:
    skipped on request. ``saved_usd`` sums the original cost of the answers served (hits and
    coalesced) where it was known. ``in_flight``/``waiting``: upstream calls that identical
    requests wait on right now, and the callers waiting.
    """

    hits: int
    misses: int
    bypasses: int
    coalesced: int
    saved_usd: float
    entries: int
    bytes: int
    evictions: int
    expired: int
    in_flight: int
    waiting: int

    @property
    def hit_rate(self) -> float:
        """The share of looked-up calls answered without their own upstream call."""
        served = self.hits + self.coalesced
        looked_up = served + self.misses
        return served / looked_up if looked_up else 0.0


_SLOTS = 64  # landing counters (see ExactCache._landed)


class _Plan(NamedTuple):
    key: str
    ttl: float | None


class _Flight:
    """An upstream call that identical requests wait on, from threads and tasks alike:
    ``future`` is resolved with the stored answer, or None when the call failed (a waiter
    then tries itself); it is made when the first waiter comes (most flights have none).
    ``thread``/``loop``: where the leader runs, so a caller that would block the leader
    never waits on it."""

    __slots__ = ("key", "future", "thread", "loop")

    def __init__(self, key: str) -> None:
        self.key = key
        self.future: Future[ChatResponse | None] | None = None
        self.thread = threading.get_ident()
        # The caller's loop, also when a driver runs this on a store's thread (Redis).
        self.loop = offloaded_from()


class _Ticket(NamedTuple):
    """A call that went upstream: where to store its answer, and the flight it leads."""

    plan: _Plan
    flight: _Flight | None


class _Waiting(NamedTuple):
    """A call waiting on an identical call's flight, until ``landed`` resolves."""

    plan: _Plan
    landed: Future[ChatResponse | None]


class ExactCache(Primitive):
    """Answers repeated identical requests from ``store`` (default: a 64 MiB `MemoryStore`).

    ``ttl``: seconds an answer stays fresh (None: no expiry). ``model_ttls``: per-model
    TTLs keyed by ``"provider/model"``. A request's own ``metadata["cache"]["ttl"]`` wins over
    both. ``coalesce``: share one upstream call among identical requests in flight.

    A sans-IO `Primitive`: ``admit`` serves a hit, waits on a flight or lets the call go
    upstream; ``settle`` stores the answer and lands the flight. The gateway's drivers do
    the waiting, the replaying as a stream and the closing in each call mode.

    Only complete answers are stored: never errors, answers that finished with ``"error"``,
    or streams that did not reach their end. When the store fails, the call goes on without
    it and a `CacheWarning` is issued.
    """

    kind = "cache"

    def __init__(
        self,
        store: CacheStore | None = None,
        *,
        ttl: float | None = None,
        model_ttls: Mapping[str, float] | None = None,
        coalesce: bool = True,
    ) -> None:
        if store is not None and not isinstance(store, CacheStore):
            raise ConfigError(
                f"cache store {store!r} is not a CacheStore",
                hint="pass a MemoryStore, a DuckDBStore, or an object with get, set, delete, "
                "clear, __len__, stats and close",
            )
        check_ttl(ttl)
        for address, seconds in (model_ttls or {}).items():
            if "/" not in address:
                raise ConfigError(
                    f"cache model_ttls key {address!r} does not name a provider",
                    hint='key per-model TTLs by "provider/model"',
                )
            check_ttl(seconds, f"cache model_ttls[{address!r}]")
        if not isinstance(coalesce, bool):
            raise ConfigError(f"cache coalesce={coalesce!r} is invalid", hint="use true or false")
        self.store: CacheStore = store if store is not None else MemoryStore()
        # A store that waits on the network (Redis): the drivers run this off the loop.
        self.io = getattr(self.store, "io", None)
        self.ttl = ttl
        self.model_ttls = dict(model_ttls or {})
        self.coalesce = coalesce
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}  # shared by every call mode
        # Flights landed, counted per slot of the key's hash: a new leader looks in the
        # store again only if one landed in its slot since its first look (a round trip
        # less per miss on a shared store, and no answer missed that landed in between).
        self._landed = [0] * _SLOTS
        self._waiting = 0
        self._hits = self._misses = self._bypasses = self._coalesced = 0
        self._saved_usd = 0.0

    @classmethod
    def from_config(
        cls,
        settings: Mapping[str, Any],
        *,
        base_dir: str | Path | None = None,
        clock: Any = time.time,
        encryption: Any = None,
        shared: CacheStore | None = None,
    ) -> ExactCache:
        """Build a cache from the keys of a ``[cache]`` config table (see docs/caching.md):
        ``store`` (``"memory"`` or ``"duckdb"``), ``max_bytes`` (memory), ``path`` (duckdb,
        relative to ``base_dir``), ``ttl``, ``model_ttls``, ``coalesce``. ``encryption``
        (``[log] encryption_key_env``) encrypts a duckdb store's file. ``shared``: the
        ``[state]`` shared store, used unless ``store`` names a store of this process."""
        CACHE_TABLE.validate(settings, "[cache]")
        if shared is not None and "store" not in settings:
            if "max_bytes" in settings or "path" in settings:
                raise ConfigError(
                    "cache settings max_bytes and path do not apply to the [state] shared store",
                    hint='remove them, or set store = "memory" or "duckdb" for a local cache',
                )
            return cls(
                shared,
                ttl=settings.get("ttl"),
                model_ttls=settings.get("model_ttls"),
                coalesce=settings.get("coalesce", True),
            )
        kind = settings.get("store", "memory")
        if kind not in _STORE_KINDS:
            raise ConfigError(f"unknown cache store {kind!r}", hint='use "memory" or "duckdb"')
        misplaced = "path" if kind == "memory" else "max_bytes"
        if misplaced in settings:
            raise ConfigError(
                f"cache setting {misplaced!r} does not apply to store = {kind!r}",
                hint="max_bytes bounds the memory store; path locates the duckdb store",
            )
        store: CacheStore
        if kind == "memory":
            store = MemoryStore(settings.get("max_bytes", 64 * 1024 * 1024), clock=clock)
        else:
            path = Path(settings.get("path", "cache.duckdb")).expanduser()
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
            store = DuckDBStore(path, clock=clock, encryption=encryption)
        try:
            return cls(
                store,
                ttl=settings.get("ttl"),
                model_ttls=settings.get("model_ttls"),
                coalesce=settings.get("coalesce", True),
            )
        except BaseException:
            store.close()
            raise

    # --- for notebooks ----------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Counts since creation, and the store's current size."""
        store = self.store.stats()
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                bypasses=self._bypasses,
                coalesced=self._coalesced,
                saved_usd=self._saved_usd,
                entries=store.entries,
                bytes=store.bytes,
                evictions=store.evictions,
                expired=store.expired,
                in_flight=len(self._flights),
                waiting=self._waiting,
            )

    def lookup(self, request: ChatRequest, *, provider: str, model: str) -> ChatResponse | None:
        """The answer this cache holds for ``request`` sent to ``provider``/``model`` (None:
        a miss), under the key a live call computes, without counting or logging it."""
        return self._get(cache_key(request, provider=provider, model=model))

    def add(
        self, request: ChatRequest, response: ChatResponse, *, provider: str, model: str
    ) -> bool:
        """Store ``response`` as the answer to ``request`` sent to ``provider``/``model``
        (warming the cache), under the key and TTL a live call would use; returns whether it
        was stored (an answer that ended in ``"error"`` is not)."""
        ttl = self.model_ttls.get(f"{provider}/{model}", self.ttl)
        key = cache_key(request, provider=provider, model=model)
        return self._remember(_Plan(key, ttl), response) is not None

    def clear(self) -> None:
        """Forget every stored answer."""
        self.store.clear()

    def close(self) -> None:
        """Close the store (a `DuckDBStore` releases its file)."""
        self.store.close()

    def describe(self) -> Mapping[str, Any]:
        return {
            "kind": self.kind,
            "type": type(self).__name__,
            "store": type(self.store).__name__,
            "ttl": self.ttl,
            "coalesce": self.coalesce,
        }

    def __repr__(self) -> str:
        return f"<ExactCache store={self.store!r} ttl={self.ttl}>"

    # --- the primitive (the gateway's drivers run it in every call mode) --------------------

    def admit(self, ctx: CallContext, state: Any) -> Verdict:
        """Serve the call from the store or from an identical call in flight, wait for that
        call, or let it go upstream (leading a flight when it is a chat call).

        Only chat calls lead a flight: a stream's pace is its consumer's, who may stop
        reading, even in the very thread that would then wait on it. Streams still wait for
        a chat call in flight."""
        if state is None:
            plan = self._plan(ctx)
            if plan is None:
                return PROCEED
            slot = hash(plan.key) % _SLOTS
            seen = self._landed[slot]
            cached = self._get(plan.key)
            if cached is not None:
                return Serve(self._serve(ctx, cached, coalesced=False))
            if not self.coalesce:
                return self._go(ctx, plan, None)
            return self._join(ctx, plan, seen)
        # Back from waiting on a flight.
        plan, landed = state
        self._unwait()
        if not landed.done():  # the wait could not block (see `_join`): go alone
            return self._go(ctx, plan, None)
        answer = landed.result()
        if answer is not None:
            return Serve(self._serve(ctx, answer, coalesced=True))
        # The call we waited on failed: one of its waiters now tries, the others wait.
        return self._join(ctx, plan)

    def withdraw(self, ctx: CallContext, state: Any) -> None:
        """A waiter was cancelled: it no longer waits (the flight goes on for the others)."""
        if isinstance(state, _Waiting):
            self._unwait()

    def settle(self, ctx: CallContext, ticket: _Ticket, outcome: Outcome) -> None:
        """Store a complete answer and hand it to the flight's waiters (None when there is
        none to store: they then try themselves)."""
        answer = None
        try:
            if outcome.response is not None and outcome.error is None:
                answer = self._remember(ticket.plan, outcome.response)
        finally:
            if ticket.flight is not None:
                self._land(ticket.flight, answer)

    # --- the steps ----------------------------------------------------------------------

    def _plan(self, ctx: CallContext) -> _Plan | None:
        """The key and TTL of this call, or None (and status ``bypass``) when it asks to
        skip the cache."""
        request = ctx.request
        ttl = custom_key = None
        options = request.metadata.get("cache") if request.metadata else None
        if options is not None:
            skip, ttl, custom_key = read_cache_options(options)
            if skip:
                ctx.cache_status = "bypass"
                with self._lock:
                    self._bypasses += 1
                return None
        if ttl is None:
            ttl = self.model_ttls.get(ctx.address, self.ttl)
        key = cache_key(request, provider=ctx.provider_name, model=ctx.model, custom_key=custom_key)
        return _Plan(key, ttl)

    def _join(self, ctx: CallContext, plan: _Plan, seen: int | None = None) -> Verdict:
        """Lead a new flight for ``plan`` (chat calls), wait on the one in flight, or go
        upstream alone (a stream with no flight to wait on). ``seen``: the key's landing
        count before the caller's look in the store (None: unknown, look again)."""
        with self._lock:
            flight = self._flights.get(plan.key)
            if flight is None:
                if ctx.stream:
                    flight = None
                else:
                    flight = self._flights[plan.key] = _Flight(plan.key)
                    leading = True
                    landed = seen is None or self._landed[hash(plan.key) % _SLOTS] != seen
            elif flight.loop is None and flight.thread == threading.get_ident():
                flight = None  # led from this very thread (a re-entrant call): never wait
            else:
                if flight.future is None:
                    flight.future = Future()
                wake = flight.future
                self._waiting += 1
                leading = False
        if flight is None:
            return self._go(ctx, plan, None)
        if leading:
            return self._lead(ctx, plan, flight) if landed else self._go(ctx, plan, flight)
        # A flight led by a task can only land on its loop: a blocking wait on a thread that
        # runs that loop returns at once (``wake_loop``), and `admit` goes on alone.
        return Wait(None, state=_Waiting(plan, wake), wake=wake, wake_loop=flight.loop)

    def _unwait(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _lead(self, ctx: CallContext, plan: _Plan, flight: _Flight) -> Verdict:
        """Look again now that this call leads: a leader that finished between our first
        look and our joining has stored its answer."""
        try:
            cached = self._get(plan.key)
        except BaseException:
            self._land(flight, None)
            raise
        if cached is None:
            return self._go(ctx, plan, flight)
        self._land(flight, cached)
        return Serve(self._serve(ctx, cached, coalesced=False))

    def _land(self, flight: _Flight, answer: ChatResponse | None) -> None:
        """End a flight: its waiters get ``answer``, or try themselves when it is None."""
        with self._lock:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            self._landed[hash(flight.key) % _SLOTS] += 1
            future = flight.future  # no waiter can join once the flight is gone
        if future is not None and not future.done():
            future.set_result(answer)

    def _go(self, ctx: CallContext, plan: _Plan, flight: _Flight | None) -> Proceed:
        """A miss: the call goes upstream, its answer to be stored when it settles."""
        self._miss(ctx)
        return Proceed(_Ticket(plan, flight))

    def _miss(self, ctx: CallContext) -> None:
        ctx.cache_status = "miss"
        with self._lock:
            self._misses += 1

    def _serve(self, ctx: CallContext, answer: ChatResponse, *, coalesced: bool) -> ChatResponse:
        with self._lock:
            if coalesced:
                self._coalesced += 1
            else:
                self._hits += 1
            if answer.cost_usd:
                self._saved_usd += answer.cost_usd
        return ctx.recorder.serve_without_provider(ctx, answer, cache_status="hit")

    def _remember(self, plan: _Plan, response: ChatResponse) -> ChatResponse | None:
        """Store a complete answer; returns what was stored (None: not cacheable)."""
        if response.finish_reason == "error":
            return None
        answer = stored_answer(response)
        try:
            self.store.set(plan.key, answer, plan.ttl)
        except StoreError as exc:
            warnings.warn(f"{exc.message}; the answer was not cached", CacheWarning, stacklevel=2)
        return answer

    def _get(self, key: str) -> ChatResponse | None:
        try:
            return self.store.get(key)
        except StoreError as exc:
            warnings.warn(f"{exc.message}; calling the provider", CacheWarning, stacklevel=2)
            return None
