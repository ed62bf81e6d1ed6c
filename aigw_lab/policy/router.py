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

The gateway knows this stage only through `aigw_lab.gateway.route.RouteStage`: given
``policies=...``, it asks a policy for its route stage (`Policy.route_stage` builds a
`PolicyRouter`), so the gateway layer never imports this package. The hooks are written once
for asyncio (`aigw_lab.policy._async.route`) and the sync ones generated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError, ConfigError, UnknownModelError
from aigw_lab.gateway.middleware import CallContext, Middleware
from aigw_lab.gateway.route import (
    POLICY_PROVIDER,
    install_route_stage,
    merge_policies,
    policy_map,
)
from aigw_lab.policy._async.route import route_achat, route_astream
from aigw_lab.policy._sync.route import route_chat, route_stream
from aigw_lab.policy.base import POLICY_TAG, Policy
from aigw_lab.providers.base import Price
from aigw_lab.types import ChatRequest, ChatResponse, StreamEvent

if TYPE_CHECKING:
    from aigw_lab.gateway.gateway import Gateway

__all__ = [
    "PolicyRouter",
    "PolicyProvider",
    "POLICY_PROVIDER",
    "POLICY_TAG",
    "install_policies",
    "merge_policies",
    "warm_up_policies",
]


class PolicyRouter(Middleware):
    """The ``route`` stage: hands calls addressed to a policy to that policy (see the module
    docstring); every other call passes straight through."""

    kind = "route"

    def __init__(self, policies: Mapping[str, Policy] | Iterable[Policy] = ()) -> None:
        self.policies: dict[str, Policy] = policy_map(policies)
        # target address -> (provider, model), filled by `bind` from the gateway.
        self._resolved: dict[str, tuple[str, str]] = {}
        self._tags: dict[str, Mapping[str, str]] = {}

    def add(self, policies: Mapping[str, Policy] | Iterable[Policy]) -> None:
        """Register more policies (before the router is bound to a gateway)."""
        for name, policy in policy_map(policies).items():
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

    # --- hooks: written once (see aigw_lab.policy._async.route) --------------------------

    handle = route_chat  # type: ignore[assignment]
    ahandle = route_achat  # type: ignore[assignment]
    handle_stream = route_stream  # type: ignore[assignment]
    ahandle_stream = route_astream  # type: ignore[assignment]

    # --- what the gateway asks of its route stage (aigw_lab.gateway.route.RouteStage) ----

    def policy_provider(self, gateway: Gateway) -> PolicyProvider:
        """The ``policy`` pseudo-provider of ``gateway``, answering for these policies."""
        return PolicyProvider(self, gateway)


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
    """Wire ``policies`` into a gateway under construction (see
    `aigw_lab.gateway.route.install_route_stage`, which the gateway itself calls)."""
    return install_route_stage(gateway, middleware, policies)


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
