"""Routing policies inside the gateway: the `PolicyRouter` middleware (the pipeline's
``route`` stage) and the ``policy`` pseudo-provider that makes a policy addressable.

A gateway with policies answers ``gateway.chat("cheap-or-strong", ...)`` (or
``"policy/cheap-or-strong"``) like this::

    budget -> rate limit -> cache -> route -> retry/fallback -> attempt
                                      |
                                      policy.call(request, send)
                                      send(target, request): point the call at target,
                                      run retry -> attempt, return the answer

Until the route stage, the call's address is ``policy/NAME``: the outer stages see the policy
as one model. The ``policy`` pseudo-provider lists the policies as its models
(`Gateway.list_models`) and prices each as its most expensive target (for every token kind,
the highest price of any target), so a budget can reserve a conservative estimate before it
is known which targets will be called. An exact cache keys on the policy name: a cached
answer serves any later identical request to the policy, whatever target first produced it.

The route stage calls the policy with a ``send`` function that points the call context at
the target and runs the rest of the pipeline, so every call the policy makes is a normal
attempt: a logged row with the real provider and model, tagged ``{"aigw_policy": NAME}``,
under the one trace id of the client's call; after a failed target, the next row's
``fallback_from`` names it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError, ConfigError, UnknownModelError
from aigw_lab.gateway.middleware import (
    AsyncNext,
    AsyncStreamNext,
    CallContext,
    Middleware,
    Next,
    StreamNext,
)
from aigw_lab.policy.base import POLICY_TAG, Policy
from aigw_lab.policy.fallback import should_fall_back
from aigw_lab.providers.base import Price
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta

if TYPE_CHECKING:
    from aigw_lab.gateway.gateway import Gateway

__all__ = [
    "PolicyRouter",
    "PolicyProvider",
    "POLICY_PROVIDER",
    "install_policies",
    "warm_up_policies",
]

#: The provider name policies are addressed under: ``"policy/NAME"``.
POLICY_PROVIDER = "policy"


def _policy_map(policies: Mapping[str, Policy] | Iterable[Policy]) -> dict[str, Policy]:
    items = policies.items() if isinstance(policies, Mapping) else ((p.name, p) for p in policies)
    out: dict[str, Policy] = {}
    for name, policy in items:
        if not isinstance(policy, Policy):
            raise ConfigError(
                f"policy {name!r} is a {type(policy).__name__}, not a Policy",
                hint="pass Policy objects (Rules, WeightedSplit, ...) or load_policy(path)",
            )
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(
                f"policy name {name!r} is invalid",
                hint="policy names are non-empty and contain no '/'; clients address them as "
                "NAME or policy/NAME",
            )
        if name in out:
            raise ConfigError(f"policy name {name!r} is used twice", hint="rename one")
        out[name] = policy
    return out


class PolicyRouter(Middleware):
    """The ``route`` stage: hands calls addressed to a policy to that policy (see the module
    docstring); every other call passes straight through."""

    kind = "route"

    def __init__(self, policies: Mapping[str, Policy] | Iterable[Policy] = ()) -> None:
        self.policies: dict[str, Policy] = _policy_map(policies)
        # target address -> (provider, model), filled by `bind` from the gateway.
        self._resolved: dict[str, tuple[str, str]] = {}
        self._tags: dict[str, Mapping[str, str]] = {}

    def add(self, policies: Mapping[str, Policy] | Iterable[Policy]) -> None:
        """Register more policies (before the router is bound to a gateway)."""
        for name, policy in _policy_map(policies).items():
            if name in self.policies:
                raise ConfigError(f"policy name {name!r} is used twice", hint="rename one")
            self.policies[name] = policy

    def bind(self, gateway: Gateway) -> None:
        """Resolve every policy's targets against ``gateway`` (a target whose provider is
        not configured, or that is itself a policy, is a `ConfigError` now, not at the
        first call)."""
        for name, policy in self.policies.items():
            for target in policy.targets():
                if target in self._resolved:
                    continue
                try:
                    provider, model = gateway.resolve(target)
                except AigwError as exc:
                    raise ConfigError(
                        f"policy {name!r} targets {target!r}, which this gateway cannot "
                        f"resolve: {exc.message}",
                        hint=exc.hint,
                    ) from exc
                if provider == POLICY_PROVIDER:
                    raise ConfigError(
                        f"policy {name!r} targets {target!r}, which is a policy",
                        hint="policies route to provider/model targets, not to other policies",
                    )
                self._resolved[target] = (provider, model)

    def describe(self) -> Mapping[str, Any]:
        return {"kind": self.kind, "type": type(self).__name__, "policies": sorted(self.policies)}

    def __repr__(self) -> str:
        return f"<PolicyRouter {sorted(self.policies)}>"

    # --- per call -----------------------------------------------------------------------

    def _policy(self, ctx: CallContext) -> Policy:
        policy = self.policies.get(ctx.model)
        if policy is None:
            raise UnknownModelError(
                f"no routing policy named {ctx.model!r}",
                hint=f"policies: {', '.join(sorted(self.policies)) or '(none)'}",
            )
        return policy

    def _for_target(self, name: str, request: ChatRequest, model: str) -> ChatRequest:
        """``request`` addressed to ``model`` and tagged with the policy, in one copy (the
        attempt stage then needs no copy of its own)."""
        tags = request.tags
        if not tags:
            # The common case: one shared tags mapping per policy.
            tags = self._tags.get(name)
            if tags is None:
                tags = self._tags[name] = MappingProxyType({POLICY_TAG: name})
        elif tags.get(POLICY_TAG) != name:
            tags = MappingProxyType({**tags, POLICY_TAG: name})
        # Built field by field: dataclasses.replace costs several times more on this path
        # (tests/policy/test_router.py checks that every field is carried over).
        r = request
        return ChatRequest(
            model,
            r.messages,
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_tokens,
            stop=r.stop,
            seed=r.seed,
            tools=r.tools,
            tool_choice=r.tool_choice,
            user=r.user,
            tenant=r.tenant,
            tags=tags,
            metadata=r.metadata,
            extra=r.extra,
            experiment_id=r.experiment_id,
            timeout=r.timeout,
        )

    def handle(self, ctx: CallContext, call_next: Next) -> ChatResponse:
        if ctx.provider_name != POLICY_PROVIDER:
            return call_next(ctx)
        policy = self._policy(ctx)
        call = _PolicyCall(self, ctx)

        def send(target: str, request: ChatRequest) -> ChatResponse:
            try:
                return call_next(call.point(target, request))
            except AigwError:
                call.failed_target = target
                raise

        try:
            return policy.call(call.request, send)
        finally:
            call.restore()

    async def ahandle(self, ctx: CallContext, call_next: AsyncNext) -> ChatResponse:
        if ctx.provider_name != POLICY_PROVIDER:
            return await call_next(ctx)
        policy = self._policy(ctx)
        call = _PolicyCall(self, ctx)

        async def send(target: str, request: ChatRequest) -> ChatResponse:
            try:
                return await call_next(call.point(target, request))
            except AigwError:
                call.failed_target = target
                raise

        try:
            return await policy.acall(call.request, send)
        finally:
            call.restore()

    def handle_stream(self, ctx: CallContext, call_next: StreamNext) -> Iterator[StreamEvent]:
        if ctx.provider_name != POLICY_PROVIDER:
            return call_next(ctx)
        return self._stream(ctx, call_next)

    def _stream(self, ctx: CallContext, call_next: StreamNext) -> Iterator[StreamEvent]:
        policy = self._policy(ctx)
        call = _PolicyCall(self, ctx)
        try:
            targets = policy.stream_targets(call.request)
            if targets is None:
                # The policy must see answers to decide (a cascade): run it on fully
                # consumed streams, then replay the accepted answer.
                def send(target: str, request: ChatRequest) -> ChatResponse:
                    try:
                        return _drain(call_next(call.point(target, request)))
                    except AigwError:
                        call.failed_target = target
                        raise

                yield from _replay(policy.call(call.request, send))
                return
            for index, target in enumerate(targets):
                delivered = False
                events = call_next(call.point(target, call.request))
                try:
                    for event in events:
                        if not delivered and type(event) is TextDelta:
                            delivered = True
                        yield event
                    return
                except AigwError as exc:
                    last = index == len(targets) - 1
                    if delivered or last or not should_fall_back(exc):
                        raise
                    call.failed_target = target
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()
        finally:
            call.restore()

    def ahandle_stream(
        self, ctx: CallContext, call_next: AsyncStreamNext
    ) -> AsyncIterator[StreamEvent]:
        if ctx.provider_name != POLICY_PROVIDER:
            return call_next(ctx)
        return self._astream(ctx, call_next)

    async def _astream(
        self, ctx: CallContext, call_next: AsyncStreamNext
    ) -> AsyncIterator[StreamEvent]:
        policy = self._policy(ctx)
        call = _PolicyCall(self, ctx)
        try:
            targets = await policy.astream_targets(call.request)
            if targets is None:

                async def send(target: str, request: ChatRequest) -> ChatResponse:
                    try:
                        return await _adrain(call_next(call.point(target, request)))
                    except AigwError:
                        call.failed_target = target
                        raise

                for event in _replay(await policy.acall(call.request, send)):
                    yield event
                return
            for index, target in enumerate(targets):
                delivered = False
                events = call_next(call.point(target, call.request))
                try:
                    async for event in events:
                        if not delivered and type(event) is TextDelta:
                            delivered = True
                        yield event
                    return
                except AigwError as exc:
                    last = index == len(targets) - 1
                    if delivered or last or not should_fall_back(exc):
                        raise
                    call.failed_target = target
                finally:
                    aclose = getattr(events, "aclose", None)
                    if aclose is not None:
                        await aclose()
        finally:
            call.restore()


class _PolicyCall:
    """One client call to a policy: its untagged request, and how to point the call context
    at each target the policy sends to (and back at the policy afterwards)."""

    __slots__ = ("router", "ctx", "name", "request", "failed_target")

    def __init__(self, router: PolicyRouter, ctx: CallContext) -> None:
        self.router = router
        self.ctx = ctx
        self.name = ctx.model
        self.request = ctx.request
        self.failed_target: str | None = None

    def point(self, target: str, request: ChatRequest) -> CallContext:
        """Aim ``ctx`` at ``target`` for the next stage; the request carries the policy tag."""
        resolved = self.router._resolved.get(target)
        if resolved is None:
            raise ConfigError(
                f"policy {self.name!r} sent a request to {target!r}, which is not one of its "
                "targets()",
                hint="a policy may only call the targets it declares in targets()",
            )
        ctx = self.ctx
        ctx.provider_name, ctx.model = resolved
        ctx.request = self.router._for_target(self.name, request, ctx.model)
        # A send after a failed one is a fallback from it (fallback chains); escalations
        # of a cascade follow an answer, not a failure, so they carry none.
        ctx.fallback_from = self.failed_target
        self.failed_target = None
        return ctx

    def restore(self) -> None:
        ctx = self.ctx
        ctx.provider_name = POLICY_PROVIDER
        ctx.model = self.name
        ctx.request = self.request


def _drain(events: Iterator[StreamEvent]) -> ChatResponse:
    # Run the stream to its end (not just to its StreamEnd): a stream closed at its last
    # yield would log its attempt as cancelled.
    final: ChatResponse | None = None
    for event in events:
        if type(event) is StreamEnd:
            final = event.response
    if final is None:  # the attempt stage raises first; kept for safety
        raise AigwError("a stream ended without its final event")
    return final


async def _adrain(events: AsyncIterator[StreamEvent]) -> ChatResponse:
    final: ChatResponse | None = None
    async for event in events:
        if type(event) is StreamEnd:
            final = event.response
    if final is None:
        raise AigwError("a stream ended without its final event")
    return final


def _replay(response: ChatResponse) -> Iterator[StreamEvent]:
    if response.text:
        yield TextDelta(response.text)
    yield StreamEnd(response)


class PolicyProvider:
    """The ``policy`` pseudo-provider: its models are the gateway's policies, its price for a
    policy is an upper bound over the policy's targets (for budgets), and it is simulated
    when every target is. It never answers: the route stage does."""

    name = POLICY_PROVIDER
    api_format = None

    def __init__(self, router: PolicyRouter, gateway: Gateway) -> None:
        self._router = router
        self._gateway = gateway

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._router.policies))

    @property
    def simulated(self) -> bool:
        providers = {p for p, _ in self._router._resolved.values()}
        return bool(providers) and all(self._gateway._is_simulated(p) for p in providers)

    def price_for(self, model: str) -> Price | None:
        """The most expensive target's price, per token kind; None when a target has no
        known per-token price (then nothing safe can be said)."""
        policy = self._router.policies.get(model)
        if policy is None:
            return None
        prices = []
        for target in policy.targets():
            provider, bare = self._router._resolved[target]
            price = self._gateway.prices.price(provider, bare)
            if price is None:
                return None
            prices.append(price)
        return Price(
            max(p.input_per_mtok for p in prices),
            max(p.output_per_mtok for p in prices),
            max(_or(p.cache_read_per_mtok, p.input_per_mtok) for p in prices),
            max(_or(p.cache_write_per_mtok, p.input_per_mtok) for p in prices),
        )

    def _refuse(self) -> AigwError:
        return ConfigError(
            "policy/... addresses are answered by the gateway's route stage, not called directly",
            hint="call the policy through the Gateway that holds it",
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        raise self._refuse()

    async def achat(self, request: ChatRequest) -> ChatResponse:
        raise self._refuse()

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        raise self._refuse()

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise self._refuse()

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def install_policies(
    gateway: Gateway,
    middleware: list[Middleware],
    policies: Mapping[str, Policy] | Iterable[Policy],
) -> list[Middleware]:
    """Wire ``policies`` into a gateway under construction: reuse the `PolicyRouter` in
    ``middleware`` or add one, register the ``policy`` pseudo-provider and the policy names
    `Gateway._resolve` accepts, and resolve every policy's targets. Returns the middleware
    list (unchanged when there are no policies at all)."""
    routers = [m for m in middleware if isinstance(m, PolicyRouter)]
    if len(routers) > 1:
        raise ConfigError("more than one PolicyRouter middleware", hint="pass one")
    router = routers[0] if routers else None
    extra = _policy_map(policies)
    if router is None:
        if not extra:
            return middleware
        router = PolicyRouter(extra)
        middleware = [*middleware, router]
    else:
        router.add(extra)
    if POLICY_PROVIDER in gateway._specs or POLICY_PROVIDER in gateway._providers:
        raise ConfigError(
            f"provider name {POLICY_PROVIDER!r} is reserved for routing policies",
            hint="rename that provider",
        )
    gateway._providers[POLICY_PROVIDER] = PolicyProvider(router, gateway)  # type: ignore[assignment]
    gateway._policies = router.policies
    router.bind(gateway)
    return middleware


def merge_policies(
    first: Mapping[str, Policy] | Iterable[Policy], second: Mapping[str, Policy] | Iterable[Policy]
) -> dict[str, Policy]:
    """Both sets of policies as one ``{name: Policy}``; a name in both is a `ConfigError`."""
    merged = _policy_map(first)
    for name, policy in _policy_map(second).items():
        if name in merged:
            raise ConfigError(
                f"policy name {name!r} is given twice (in the config and as an argument)",
                hint="rename one",
            )
        merged[name] = policy
    return merged


def warm_up_policies(gateway: Gateway) -> list[str]:
    """Call `Policy.warm_up` on every policy of ``gateway`` (a learned router loads its
    embedding model), so the first request routed by each is as fast as the rest. Returns
    the names of the policies warmed."""
    names = []
    for middleware in gateway.middleware:
        if isinstance(middleware, PolicyRouter):
            for name, policy in middleware.policies.items():
                policy.warm_up()
                names.append(name)
    return names
