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

import difflib
import itertools
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import (
    AigwError,
    ConfigError,
    InvalidRequestError,
    MalformedResponseError,
    UnknownModelError,
    UnknownProviderError,
)
from aigw_lab.gateway.middleware import PIPELINE_ORDER, CallContext, Middleware, compose
from aigw_lab.gateway.recording import CallRecording
from aigw_lab.gateway.route import install_route_stage, merge_policies
from aigw_lab.gateway.stream import AsyncChatStream, ChatStream
from aigw_lab.pricing import PriceBook
from aigw_lab.providers.base import (
    HttpClients,
    PoolSettings,
    Price,
    Provider,
    ProviderSpec,
)
from aigw_lab.providers.base_provider import traits
from aigw_lab.providers.kinds import ProviderKind
from aigw_lab.providers.registry import default_registry
from aigw_lab.store.sanitize import DEFAULT_MAX_BODY_CHARS, check_max_body_chars
from aigw_lab.types import (
    ChatRequest,
    ChatResponse,
    Message,
    StreamEnd,
    StreamEvent,
    TextDelta,
)

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.policy import Policy
    from aigw_lab.store import CallLog

__all__ = ["Gateway"]

_NO_LOG: Any = object()


class _IdFactory:
    """Unique ids without a system call per id: a random 64-bit prefix chosen once, then a
    counter. (``os.urandom`` per call releases the GIL, and with the log writer's thread
    waiting for it, every call would then queue behind the writer.)"""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class Gateway(CallRecording):
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
    ``pool``: the size of the upstream connection pool and its wait timeout (`PoolSettings`;
    ignored when ``clients`` is given).
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
    ) -> None:
        self._specs: dict[str, ProviderSpec] = {}
        self._providers: dict[str, Provider] = {}
        for item in providers:
            name = item.name
            if name in self._specs or name in self._providers:
                raise ConfigError(
                    f"provider name {name!r} is used twice", hint="give each provider its own name"
                )
            if isinstance(item, ProviderSpec):
                self._specs[name] = item
            else:
                self._providers[name] = item
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
        self._env = env
        self._clients = clients or HttpClients(pool=pool)
        self._owns_clients = clients is None
        self._lock = threading.Lock()
        self._clock = clock
        self._perf = perf_counter
        self._new_id = new_id or _IdFactory()
        self._tags = dict(tags or {})
        self._experiment_id = experiment_id
        self._closed = False
        self._max_body_chars = check_max_body_chars(max_body_chars)

        overrides: dict[str, Price] = {}
        for spec in self._specs.values():
            for model, price in spec.prices.items():
                overrides[f"{spec.name}/{model}"] = price
        overrides.update(prices or {})
        self._prices = PriceBook(
            overrides,
            price_ids={s.name: self._price_id(s) for s in self._specs.values()},
            api_urls={s.name: s.base_url for s in self._specs.values()},
            known={name: partial(self._provider_price, name) for name in self.provider_names},
        )

        self._log: CallLog | None
        self._owns_log = False
        if log is None or log is False:
            self._log = None
        elif isinstance(log, (str, os.PathLike)):
            from aigw_lab.store import CallLog

            self._log = CallLog(log, **(log_options or {}))
            self._owns_log = True
        else:
            self._log = log
        # Where each attempt's start is written before its request leaves (None: no spool).
        self._spool = getattr(self._log, "spool", None)

        order = {kind: i for i, kind in enumerate(PIPELINE_ORDER)}
        self._middleware = sorted(middleware, key=lambda m: order.get(m.kind, len(order)))
        self._check_fallbacks()
        self._run = compose(self._middleware, self._attempt, "handle")
        self._arun = compose(self._middleware, self._aattempt, "ahandle")
        self._run_stream = compose(self._middleware, self._attempt_stream, "handle_stream")
        self._arun_stream = compose(self._middleware, self._aattempt_stream, "ahandle_stream")

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

        ``log`` overrides the config's ``[gateway] db``.
        """
        from aigw_lab.config import load_config

        config = load_config(path, env=env)
        if log is _NO_LOG:
            log = (config.db or ":memory:") if config.log else None
        middleware = [*config.middleware(), *kwargs.pop("middleware", ())]
        policies = config.load_policies()
        extra_policies = kwargs.pop("policies", None)
        if extra_policies:
            policies = merge_policies(policies, extra_policies)
        return cls(
            config.providers,
            log=log,
            log_options=config.log_options,
            prices=config.prices,
            default_provider=config.default_provider,
            env=env,
            tags=config.tags,
            experiment_id=config.experiment_id,
            max_body_chars=config.max_body_chars,
            pool=config.pool,
            middleware=middleware,
            policies=policies,
            **kwargs,
        )

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
        return sorted({*self._specs, *self._providers})

    @property
    def log(self) -> CallLog | None:
        """The call log (a `aigw_lab.store.CallLog`), or None when logging is off."""
        return self._log

    @property
    def prices(self) -> PriceBook:
        return self._prices

    @property
    def simulated(self) -> bool:
        """True when every configured provider is simulated (so is everything it answers)."""
        return all(self._is_simulated(n) for n in self.provider_names)

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
        return {name: self._known_models(name) for name in self.provider_names}

    def provider(self, name: str) -> Provider:
        """The provider called ``name``, built on first use."""
        found = self._providers.get(name)
        if found is not None:
            return found
        spec = self._specs.get(name)
        if spec is None:
            raise UnknownProviderError(
                f"unknown provider {name!r}",
                hint=_choices_hint(name, self.provider_names, "configured providers"),
            )
        with self._lock:
            found = self._providers.get(name)
            if found is None:
                from aigw_lab.providers.registry import build_provider

                found = build_provider(spec, self._clients, env=self._env)
                self._providers[name] = found
        return found

    def summary(self, **filters: Any) -> pd.DataFrame:
        """Per provider/model: calls, errors, latency percentiles, tokens and cost, from the log."""
        from aigw_lab.store.queries import summary_by_model

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
        ctx = self._context(model, messages, params, stream=False)
        try:
            return self._run(ctx)
        except BaseException as exc:
            self._log_if_unlogged(ctx, exc)
            raise

    async def achat(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatResponse:
        """`chat` for asyncio code."""
        ctx = self._context(model, messages, params, stream=False)
        try:
            return await self._arun(ctx)
        except BaseException as exc:
            self._log_if_unlogged(ctx, exc)
            raise

    def stream(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Stream the answer: iterate the result for text; ``.response`` holds the final
        response (usage, cost, latency with time to first token) once it ends."""
        ctx = self._context(model, messages, params, stream=True)
        return ChatStream(self._guard_stream(ctx))

    def astream(
        self,
        model: str | ChatRequest,
        messages: str | Iterable[Message | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """`stream` for asyncio code: ``async for text in gateway.astream(...)``."""
        ctx = self._context(model, messages, params, stream=True)
        return AsyncChatStream(self._aguard_stream(ctx))

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close providers and HTTP clients this gateway created, and flush and close its
        log (a log passed in is flushed, not closed)."""
        if self._closed:
            return
        self._closed = True
        for mw in self._middleware:
            close = getattr(mw, "close", None)
            if close is not None:
                close()
        for name, provider in list(self._providers.items()):
            if name in self._specs:
                provider.close()
        if self._owns_clients:
            self._clients.close()
        if self._log is not None:
            if self._owns_log:
                self._log.close()
            else:
                self._log.flush()

    async def aclose(self) -> None:
        for name, provider in list(self._providers.items()):
            if name in self._specs:
                await provider.aclose()
        if self._owns_clients:
            await self._clients.aclose()
        self.close()

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
            self._log_rejected(address, request or messages, exc, wall, stream)
            raise
        if request is None:
            try:
                # Built with the provider's own model name, so no copy is needed later.
                request = ChatRequest.create(
                    bare_model, messages if messages is not None else (), **params
                )
            except AigwError as exc:
                self._log_rejected(address, messages, exc, wall, stream)
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
            return "policy", address
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
            hint=_choices_hint(provider_name, self.provider_names, "configured providers"),
        )

    def _target(self, ctx: CallContext) -> tuple[Provider, ChatRequest]:
        provider = self.provider(ctx.provider_name)
        known = self._known_models(ctx.provider_name)
        if known and ctx.model not in known:
            raise UnknownModelError(
                f"{ctx.provider_name} has no model {ctx.model!r}",
                hint=_choices_hint(ctx.model, list(known), f"models of {ctx.provider_name}"),
            )
        request = ctx.request
        if request.model != ctx.model:
            request = replace(request, model=ctx.model)
        return provider, request

    def _begin_attempt(self, ctx: CallContext) -> None:
        ctx.attempt += 1
        if ctx.attempt > 1:
            ctx.attempt_started = self._perf()

    def _attempt(self, ctx: CallContext) -> ChatResponse:
        self._begin_attempt(ctx)
        upstream_start = ctx.attempt_started
        call_id = self._new_id()
        try:
            provider, request = self._target(ctx)
            if self._spool is not None:
                self._spool_start(ctx, call_id, provider)  # on file before the request leaves
            upstream_start = self._perf()
            response = provider.chat(request)
        except BaseException as exc:
            self._log_failure(ctx, exc, upstream_start, call_id=call_id)
            raise
        return self._complete(ctx, response, upstream_start, call_id)

    async def _aattempt(self, ctx: CallContext) -> ChatResponse:
        self._begin_attempt(ctx)
        upstream_start = ctx.attempt_started
        call_id = self._new_id()
        try:
            provider, request = self._target(ctx)
            if self._spool is not None:
                self._spool_start(ctx, call_id, provider)  # on file before the request leaves
            upstream_start = self._perf()
            response = await provider.achat(request)
        except BaseException as exc:
            self._log_failure(ctx, exc, upstream_start, call_id=call_id)
            raise
        return self._complete(ctx, response, upstream_start, call_id)

    def _attempt_stream(self, ctx: CallContext) -> Iterator[StreamEvent]:
        self._begin_attempt(ctx)
        upstream_start = ctx.attempt_started
        call_id = self._new_id()
        parts: list[str] = []
        try:
            provider, request = self._target(ctx)
            if self._spool is not None:
                self._spool_start(ctx, call_id, provider)  # on file before the request leaves
            upstream_start = self._perf()
            for event in provider.stream(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    yield event
                else:
                    yield StreamEnd(self._complete(ctx, event.response, upstream_start, call_id))
                    return
            raise MalformedResponseError(
                "the stream ended without its final event",
                provider=ctx.provider_name,
                model=ctx.model,
            )
        except BaseException as exc:
            self._log_failure(ctx, exc, upstream_start, "".join(parts), call_id=call_id)
            raise

    async def _aattempt_stream(self, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        self._begin_attempt(ctx)
        upstream_start = ctx.attempt_started
        call_id = self._new_id()
        parts: list[str] = []
        try:
            provider, request = self._target(ctx)
            if self._spool is not None:
                self._spool_start(ctx, call_id, provider)  # on file before the request leaves
            upstream_start = self._perf()
            async for event in provider.astream(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    yield event
                else:
                    yield StreamEnd(self._complete(ctx, event.response, upstream_start, call_id))
                    return
            raise MalformedResponseError(
                "the stream ended without its final event",
                provider=ctx.provider_name,
                model=ctx.model,
            )
        except BaseException as exc:
            self._log_failure(ctx, exc, upstream_start, "".join(parts), call_id=call_id)
            raise

    # --- helpers ------------------------------------------------------------------------

    def _with_defaults(self, request: ChatRequest) -> ChatRequest:
        changes: dict[str, Any] = {}
        if self._tags:
            changes["tags"] = MappingProxyType({**self._tags, **request.tags})
        if self._experiment_id and request.experiment_id is None:
            changes["experiment_id"] = self._experiment_id
        return replace(request, **changes)

    def _check_fallbacks(self) -> None:
        """Fallback targets of a `Retry` given in Python must name providers (and models)
        this gateway has, as ``[fallbacks]`` in a config file must: a typo would otherwise
        show itself only in the outage the fallback was meant for."""
        from aigw_lab.gateway.reliability import Fallbacks, check_fallback_targets

        # Any middleware may hold fallbacks (a custom retry does not have to).
        fallbacks = [
            found
            for m in self._middleware
            if isinstance(found := getattr(m, "fallbacks", None), Fallbacks)
            and (found.chains or found.default or found.context_windows)
        ]
        if not fallbacks:
            return

        # Models only where known without building a provider (None: any model name): a
        # spec's from its kind, as a config's [fallbacks] are checked; a ready-made
        # provider's (the policies' pseudo-provider among them) from the provider.
        known: dict[str, tuple[str, ...] | None] = {}
        for name in self.provider_names:
            spec = self._specs.get(name)
            if spec is not None:
                known[name] = default_registry().known_models(spec)
            else:
                known[name] = tuple(getattr(self._providers[name], "models", ()) or ()) or None
        for found in fallbacks:
            check_fallback_targets(found, known, default_provider=self._default_provider)

    def _kind(self, name: str) -> ProviderKind | None:
        """The kind of the configured provider ``name`` (None: a provider passed in ready-made,
        or a spec naming no known kind, which fails when it is built)."""
        spec = self._specs.get(name)
        return default_registry().find(spec.kind) if spec is not None else None

    def _price_id(self, spec: ProviderSpec) -> str | None:
        """The genai-prices provider id of ``spec``: its own, else its kind's."""
        kind = default_registry().find(spec.kind)
        return spec.price_provider_id or (kind.price_provider_id if kind is not None else None)

    def _known_models(self, name: str) -> tuple[str, ...]:
        spec = self._specs.get(name)
        if spec is not None and spec.models:
            return spec.models
        provider = self._providers.get(name)
        if provider is None and spec is not None:
            kind = self._kind(name)
            if kind is None or not kind.local:
                return ()
            provider = self.provider(name)  # needs no key; it knows its models
        return traits(provider).models if provider is not None else ()

    def _provider_price(self, name: str, model: str) -> Price | None:
        """A provider's own price for a model, for providers that know it (the simulated
        fleet, replays of recorded data): `BaseProvider.price_for`."""
        provider = self._providers.get(name)
        if provider is None:
            kind = self._kind(name)
            if kind is None or not kind.local:
                return None
            # Priced before its first call (a budget's estimate): build it now, since the
            # price book remembers an unknown price for good.
            provider = self.provider(name)
        return traits(provider).price_for(model)

    def _api_format(self, ctx: CallContext) -> str | None:
        provider = self._providers.get(ctx.provider_name)
        return traits(provider).api_format if provider is not None else None

    def _is_simulated(self, name: str) -> bool:
        provider = self._providers.get(name)
        if provider is not None:
            return traits(provider).simulated
        kind = self._kind(name)
        return kind is not None and kind.simulated

    def _require_log(self) -> CallLog:
        if self._log is None:
            raise AigwError(
                "this gateway has no call log", hint='create it with log="calls.duckdb"'
            )
        return self._log


def _choices_hint(name: str, choices: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    listed = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    prefix = f"did you mean {close[0]!r}? " if close else ""
    return f"{prefix}{what}: {listed}"
