"""The `Gateway`: one interface to every configured provider, with every call logged.

A gateway is itself a `Provider`, so it can be wrapped, routed to, or used as an experiment
target. Models are addressed as ``"provider/model"`` (``"sim-openai/sim-small"``,
``"openai/gpt-4o-mini"``, ``"workers/@cf/meta/llama-3.1-8b-instruct"``); the part before the
first ``/`` names a configured provider, the rest is that provider's own model name.

Each call runs through the middleware pipeline (see `aigw_lab.gateway.middleware`) into the
*attempt* stage, which calls the provider, prices the answer and appends one row to the
DuckDB call log. Failures are logged too, with their error type, before they are raised:
no call is ever missing from the log.

Time, wall clock and ids are injectable, so tests are deterministic.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import (
    AigwError,
    ConfigError,
    InvalidRequestError,
    UnknownModelError,
    UnknownProviderError,
)
from aigw_lab.gateway._async.attempt import AsyncAttempt
from aigw_lab.gateway._async.calls import AsyncCalls, aclose_all
from aigw_lab.gateway._sync.attempt import Attempt
from aigw_lab.gateway._sync.calls import Calls, close_all
from aigw_lab.gateway.middleware import PIPELINE_ORDER, CallContext, Middleware
from aigw_lab.gateway.recorder import Recorder
from aigw_lab.gateway.route import POLICY_PROVIDER, install_route_stage
from aigw_lab.gateway.shadow import Shadow
from aigw_lab.gateway.stream import AsyncChatStream, ChatStream
from aigw_lab.gateway.targets import Targets, choices_hint
from aigw_lab.pricing import PriceBook
from aigw_lab.providers.base import (
    HttpClients,
    PoolSettings,
    Price,
    Provider,
    ProviderSpec,
)
from aigw_lab.providers.registry import default_registry
from aigw_lab.store import CallLog
from aigw_lab.store.queries import summary_by_model
from aigw_lab.store.sanitize import DEFAULT_MAX_BODY_CHARS, check_max_body_chars
from aigw_lab.types import ChatRequest, ChatResponse, Message

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.policy import Policy
    from aigw_lab.store.dead_letter import LogHealth
    from aigw_lab.store.sink import CallSink, SinkHealth

__all__ = ["Gateway"]

_NO_LOG: Any = object()
#: What `Gateway.from_config` calls: the config layer's builder, by module path.
CONFIG_BUILDER = "aigw_lab.config:build_gateway"


class _IdFactory:
    """Unique ids without a system call per id: a random 64-bit prefix chosen once, then a
    counter. (``os.urandom`` per call releases the GIL, and with the log writer's thread
    waiting for it, every call would then queue behind the writer.)"""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class Gateway:
    """One interface to many providers, with a DuckDB call log.

    ``providers``: `ProviderSpec` objects (built lazily, on first use, so a missing API key
    only matters for the provider that needs it) and/or ready `Provider` objects (test
    doubles, custom adapters). ``log``: a path to a DuckDB file, ``":memory:"`` (default), a
    `CallLog`, or ``None`` for no logging. ``prices``: per-model price overrides keyed by
    ``"provider/model"``. ``default_provider`` serves models given without a provider.
    ``policies``: routing policies (``{name: Policy}`` or a list, named by ``policy.name``),
    addressed as model ``NAME`` or ``"policy/NAME"`` (see docs/routing.md).
    ``log_options``: keyword arguments for the `CallLog` opened from a ``log`` path
    (``bodies=``, ``encryption=``, ``durability=``; the config's ``[log]`` table; see
    docs/security.md and docs/call_log.md).
    ``max_body_chars``: longer text fields of a log row are cut (and flagged; see
    `aigw_lab.store.sanitize`).
    ``sinks``: more places for every log row besides the log (`aigw_lab.store.sink.CallSink`
    objects: OpenTelemetry, a team log, `aigw_lab.testing.MemorySink`); a sink's problem
    never fails a call and shows in `sink_health`. They are flushed, not closed, by `close`
    (unless handed over with `own`, as `from_config` does with the sinks it builds).
    ``pool``: the size of the upstream connection pool and its wait timeout (`PoolSettings`;
    ignored when ``clients`` is given).
    ``shadow``: a `aigw_lab.gateway.shadow.Shadow`: a sampled share of answered calls is
    also sent to a candidate target in the background, under its own budget, and logged
    linked to the live call (docs/routing.md, "Shadow traffic").
    """

    name = "gateway"

    def __init__(
        self,
        providers: Iterable[ProviderSpec | Provider] = (),
        *,
        log: str | os.PathLike[str] | CallLog | None = ":memory:",
        log_options: Mapping[str, Any] | None = None,
        prices: Mapping[str, Price] | None = None,
        default_provider: str | None = None,
        middleware: Sequence[Middleware] = (),
        policies: Mapping[str, Policy] | Iterable[Policy] | None = None,
        clients: HttpClients | None = None,
        pool: PoolSettings | None = None,
        env: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        experiment_id: str | None = None,
        clock: Any = time.time,
        perf_counter: Any = time.perf_counter,
        new_id: Any = None,
        max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
        sinks: Sequence[CallSink] = (),
        shadow: Shadow | None = None,
    ) -> None:
        self._clients = clients or HttpClients(pool=pool)
        self._owns_clients = clients is None
        self._targets = Targets(providers, clients=self._clients, env=env)
        # The same dicts, by the names the policy router registers its provider under.
        self._specs = self._targets.specs
        self._providers = self._targets.providers
        if default_provider is not None and default_provider not in self.provider_names:
            raise ConfigError(
                f"default_provider {default_provider!r} is not configured",
                hint=f"use one of {self.provider_names}",
            )
        self._default_provider = default_provider
        # Policy name -> Policy; `install_route_stage` registers them (and the "policy"
        # pseudo-provider) when there are any, before the price book lists providers.
        self._policies: Mapping[str, Policy] = {}
        if policies or any(m.kind == "route" for m in middleware):
            middleware = install_route_stage(self, list(middleware), policies or ())
        self._clock = clock
        self._perf = perf_counter
        self._new_id = new_id or _IdFactory()
        self._tags = dict(tags or {})
        self._experiment_id = experiment_id
        self._closed = False
        self._owned: list[Any] = []  # closed with the gateway (`own`)
        max_body_chars = check_max_body_chars(max_body_chars)

        overrides: dict[str, Price] = {}
        for spec in self._specs.values():
            for model, price in spec.prices.items():
                overrides[f"{spec.name}/{model}"] = price
        overrides.update(prices or {})
        self._prices = PriceBook(
            overrides,
            price_ids={s.name: Targets.price_id(s) for s in self._specs.values()},
            api_urls={s.name: s.base_url for s in self._specs.values()},
            known={name: partial(self._targets.own_price, name) for name in self.provider_names},
        )

        self._log: CallLog | None
        self._owns_log = False
        if log is None or log is False:
            self._log = None
        elif isinstance(log, (str, os.PathLike)):
            self._log = CallLog(log, **(log_options or {}))
            self._owns_log = True
        else:
            self._log = log
        self._recorder = Recorder(
            clock=clock,
            perf_counter=perf_counter,
            new_id=self._new_id,
            prices=self._prices,
            log=self._log,
            sinks=sinks,
            max_body_chars=max_body_chars,
            api_format=self._targets.api_format,
            is_simulated=self._targets.is_simulated,
        )

        order = {kind: i for i, kind in enumerate(PIPELINE_ORDER)}
        self._middleware = sorted(middleware, key=lambda m: order.get(m.kind, len(order)))
        self._targets.check_fallbacks(self._middleware, self._default_provider)
        target = self._targets.target
        self._sync = Calls(
            self._middleware, Attempt(target, self._recorder), self._recorder, shadow
        )
        self._async = AsyncCalls(
            self._middleware, AsyncAttempt(target, self._recorder), self._recorder, shadow
        )
        self._shadow = shadow
        if shadow is not None:
            # Shadow calls run the route stage (a policy may be the candidate) and the
            # attempt only: no live budget, rate limit, cache or retry (one row per call).
            routes = [m for m in self._middleware if m.kind == "route"]
            shadow.bind(self, Calls(routes, Attempt(target, self._recorder), self._recorder))

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Any = _NO_LOG,
        **kwargs: Any,
    ) -> Gateway:
        """Build a gateway from a TOML config file (see `aigw_lab.config`).

        ``log`` overrides the config's ``[gateway] db``; ``middleware`` and ``policies`` are
        added to the config's; other keyword arguments are this class's.

        Reading a file is the config layer's work (`aigw_lab.config.build_gateway`, which
        sits above the gateway); this entry point names it by module path and imports it on
        call, as the kind registry loads the simulated kinds, so the gateway layer never
        imports the layer above it (docs/architecture.md, "Layers").
        """
        if log is not _NO_LOG:
            kwargs["log"] = log
        build = _reference(CONFIG_BUILDER)
        return build(path, env=env, gateway_class=cls, **kwargs)

    @classmethod
    def simulated_fleet(
        cls,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: Mapping[str, float] | None = None,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> Gateway:
        """A gateway over the offline simulated fleet: providers ``sim-openai``,
        ``sim-anthropic`` and ``sim-workers`` (each speaking that wire format in-process).
        Everything it returns is simulated and logged with ``simulated = true``.

        ``timeout`` is the client timeout in seconds; a simulated timeout fault hangs until
        it expires."""
        # The fleet is the simulated kind's preset (its package sits above the gateway's).
        simulated = default_registry().get("simulated")
        specs = simulated.preset_specs(seed=seed, time_scale=time_scale, faults=faults)
        return cls([replace(s, timeout=timeout) for s in specs], **kwargs)

    # --- introspection ------------------------------------------------------------------

    def __repr__(self) -> str:
        log = "off" if self._log is None else getattr(self._log, "path", "on")
        return f"<Gateway providers={self.provider_names} log={str(log)!r}>"

    @property
    def provider_names(self) -> list[str]:
        return self._targets.names

    @property
    def log(self) -> CallLog | None:
        """The call log (a `aigw_lab.store.CallLog`), or None when logging is off."""
        return self._log

    @property
    def prices(self) -> PriceBook:
        return self._prices

    @property
    def recorder(self) -> Recorder:
        """This gateway's `Recorder`: prices, times and logs every call (to the log and the
        extra sinks); each call's context carries it as ``ctx.recorder``."""
        return self._recorder

    @property
    def max_body_chars(self) -> int:
        """Text fields of a log row longer than this many characters are cut and flagged
        (``[log] max_body_chars``); for code that builds rows itself, like batch jobs."""
        return self._recorder.max_body_chars

    def log_health(self) -> LogHealth | None:
        """The call log's own health (`aigw_lab.store.CallLog.health`: state, rows written,
        pending, dead-lettered, spilled, last problem), or None when logging is off."""
        return self._recorder.log_health()

    def sink_health(self) -> tuple[SinkHealth, ...]:
        """The health of each extra sink (``sinks=``): rows and flushes it refused, and the
        type of its last problem; empty without extra sinks."""
        return self._recorder.sink_health()

    def serve_without_provider(
        self,
        ctx: CallContext,
        response: ChatResponse,
        *,
        cache_status: str = "hit",
        similarity: float | None = None,
    ) -> ChatResponse:
        """`Recorder.serve_without_provider` (for middleware written against the gateway)."""
        return self._recorder.serve_without_provider(
            ctx, response, cache_status=cache_status, similarity=similarity
        )

    def log_refused(self, ctx: CallContext, exc: BaseException) -> None:
        """`Recorder.log_refused` (for middleware written against the gateway)."""
        self._recorder.log_refused(ctx, exc)

    @property
    def simulated(self) -> bool:
        """True when every configured provider is simulated (so is everything it answers)."""
        return all(self._targets.is_simulated(n) for n in self.provider_names)

    @property
    def shadow(self) -> Shadow | None:
        """The `Shadow` sending a share of calls to a candidate (None without one)."""
        return self._shadow

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middleware objects, outermost first (for their stats and snapshots)."""
        return tuple(self._middleware)

    @property
    def pipeline(self) -> list[str]:
        """The pipeline's stages, outermost first."""
        return [m.kind for m in self._middleware] + ["provider", "cost", "log"]

    def spec(self, name: str) -> ProviderSpec | None:
        """The `ProviderSpec` provider ``name`` was configured from (None for a provider
        passed in ready-made, or an unknown name)."""
        return self._specs.get(name)

    def resolve(self, address: str) -> tuple[str, str]:
        """``(provider name, model)`` for a model address, as a call would resolve it
        (``"provider/model"``, a bare model with a default provider, or a policy name);
        raises the error a call would get for an address that names nothing."""
        return self._resolve(address)

    def with_defaults(self, request: ChatRequest) -> ChatRequest:
        """``request`` with the gateway's default tags and experiment id, as its calls get
        them."""
        if not (self._tags or self._experiment_id):
            return request
        return self._with_defaults(request)

    def new_id(self) -> str:
        """A new id in the call log's id sequence (call and trace ids)."""
        return self._new_id()

    def list_models(self) -> dict[str, tuple[str, ...]]:
        """Known models per provider (empty when a provider accepts any model name); routing
        policies are listed as the models of provider ``"policy"``."""
        return {name: self._targets.known_models(name) for name in self.provider_names}

    def provider(self, name: str) -> Provider:
        """The provider called ``name``, built on first use."""
        return self._targets.provider(name)

    def summary(self, **filters: Any) -> pd.DataFrame:
        """Per provider/model: calls, errors, latency percentiles, tokens and cost, from the log."""
        return summary_by_model(self._require_log(), **filters)

    def query(self, sql: str, params: Any = None) -> pd.DataFrame:
        """Run SQL over the call log (table ``calls``) and return a DataFrame."""
        return self._require_log().query(sql, params)

    # --- calls --------------------------------------------------------------------------

    def chat(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatResponse:
        """Send one chat request and return the normalised response.

        ``model`` is ``"provider/model"`` (or a ready `ChatRequest`); ``messages`` is a prompt
        string or a list of message dicts; ``params`` are request fields (``temperature``,
        ``max_tokens``, ``system``, ``tags``, ``extra``, ``user``, ...).
        """
        return self._sync.chat(self._context(model, messages, params, stream=False))

    async def achat(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatResponse:
        """`chat` for asyncio code."""
        return await self._async.achat(self._context(model, messages, params, stream=False))

    def stream(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Stream the answer: iterate the result for text; ``.response`` holds the final
        response (usage, cost, latency with time to first token) once it ends."""
        return self._sync.stream(self._context(model, messages, params, stream=True))

    def astream(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """`stream` for asyncio code: ``async for text in gateway.astream(...)``."""
        return self._async.astream(self._context(model, messages, params, stream=True))

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close providers and HTTP clients this gateway created, and flush and close its
        log (a log passed in is flushed, not closed; extra sinks are flushed). Running
        shadow calls are waited for first (``Shadow.drain_timeout``), so their rows are
        logged."""
        if self._shadow is not None and not self._closed:
            self._shadow.close()
        close_all(self._built_providers(), self._clients if self._owns_clients else None)
        self._shut()

    async def aclose(self) -> None:
        """`close` for asyncio code (also closes the async pool of the running loop)."""
        if self._shadow is not None and not self._closed:
            await asyncio.to_thread(self._shadow.close)
        await aclose_all(self._built_providers(), self._clients if self._owns_clients else None)
        self._shut()

    def own(self, *resources: Any) -> None:
        """Close ``resources`` (anything with ``close()``: the sinks and the shared-state
        connection `from_config` built) when this gateway closes, after its sinks are
        flushed and its log closed, each exactly once, in the order given. Sinks passed as
        ``sinks=`` are only flushed unless handed over here."""
        if self._closed:
            raise RuntimeError("the gateway is closed; close the resource yourself")
        for resource in resources:
            if not any(resource is held for held in self._owned):
                self._owned.append(resource)

    def _built_providers(self) -> list[Provider]:
        """The providers this gateway built from specs; none once it is closed."""
        return [] if self._closed else self._targets.built()

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        for mw in self._middleware:
            close = getattr(mw, "close", None)
            if close is not None:
                close()
        try:
            self._recorder.close(owns_log=self._owns_log)
        finally:
            owned, self._owned = self._owned, []
            _close_each(owned)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # --- the pipeline's ends ------------------------------------------------------------

    def _context(
        self,
        model: str | ChatRequest,
        messages: Any,
        params: dict[str, Any],
        *,
        stream: bool,
    ) -> CallContext:
        started = self._perf()
        wall = self._clock()
        if isinstance(model, ChatRequest):
            request = model
            address = request.model
        else:
            address = model
            request = None
        try:
            provider_name, bare_model = self._resolve(address)
        except AigwError as exc:
            self._recorder.log_rejected(address, request or messages, exc, wall, stream)
            raise
        if request is None:
            try:
                # Built with the provider's own model name, so no copy is needed later.
                request = ChatRequest.create(
                    bare_model, messages if messages is not None else (), **params
                )
            except AigwError as exc:
                self._recorder.log_rejected(address, messages, exc, wall, stream)
                raise
        if self._tags or self._experiment_id:
            request = self._with_defaults(request)
        return CallContext(
            request,
            provider_name,
            bare_model,
            self._new_id(),
            stream=stream,
            started=started,
            started_wall=wall,
            gateway=self,
            recorder=self._recorder,
        )

    def _resolve(self, address: str) -> tuple[str, str]:
        if not isinstance(address, str) or not address.strip():
            raise InvalidRequestError(
                f"model must be a non-empty string, got {address!r}",
                hint='address models as "provider/model", e.g. "sim-openai/sim-small"',
            )
        provider_name, sep, model = address.partition("/")
        known = provider_name in self._specs or provider_name in self._providers
        if sep and known and model:
            return provider_name, model
        if address in self._policies:
            return POLICY_PROVIDER, address
        if self._default_provider is not None:
            return self._default_provider, address
        if not sep:
            raise UnknownProviderError(
                f"model {address!r} does not name a provider",
                hint='address models as "provider/model"; configured providers: '
                + ", ".join(self.provider_names),
            )
        if not model:
            raise UnknownModelError(f"model address {address!r} has no model after the '/'")
        raise UnknownProviderError(
            f"unknown provider {provider_name!r} in model {address!r}",
            hint=choices_hint(provider_name, self.provider_names, "configured providers"),
        )

    # --- helpers ------------------------------------------------------------------------

    def _with_defaults(self, request: ChatRequest) -> ChatRequest:
        changes: dict[str, Any] = {}
        if self._tags:
            changes["tags"] = MappingProxyType({**self._tags, **request.tags})
        if self._experiment_id and request.experiment_id is None:
            changes["experiment_id"] = self._experiment_id
        return replace(request, **changes)

    def _is_simulated(self, name: str) -> bool:
        # The policy router asks (a policy is simulated when all its targets are).
        return self._targets.is_simulated(name)

    def _require_log(self) -> CallLog:
        if self._log is None:
            raise AigwError(
                "this gateway has no call log", hint='create it with log="calls.duckdb"'
            )
        return self._log


def _reference(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names, its module imported now."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _close_each(resources: list[Any]) -> None:
    """Close every one of ``resources``, even when one fails; the first failure is raised
    once all were tried."""
    failure: BaseException | None = None
    for resource in resources:
        try:
            resource.close()
        except BaseException as exc:  # noqa: BLE001 - the others must close too
            failure = failure or exc
    if failure is not None:
        raise failure
