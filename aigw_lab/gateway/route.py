"""The route stage as the gateway sees it: what a stage that answers ``policy/NAME`` calls
must offer (`RouteStage`), and how a gateway under construction wires one in
(`install_route_stage`).

The gateway does not know what a routing policy is: it asks the policy objects it was given
for their route stage (``policy.route_stage(policies)``, duck-typed; `aigw_lab.policy.Policy`
provides it and builds a `PolicyRouter`), registers the stage's ``policy`` pseudo-provider and
the policy names its addresses resolve, and lets the stage resolve its targets. So the
gateway layer never imports `aigw_lab.policy`, which sits above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    from aigw_lab.gateway.gateway import Gateway
    from aigw_lab.gateway.middleware import Middleware
    from aigw_lab.providers.base import Provider

__all__ = [
    "RouteStage",
    "POLICY_PROVIDER",
    "policy_map",
    "merge_policies",
    "install_route_stage",
]

#: The provider name policies are addressed under: ``"policy/NAME"``.
POLICY_PROVIDER = "policy"


@runtime_checkable
class RouteStage(Protocol):
    """What the gateway needs of its route stage (a middleware of kind ``"route"``)."""

    #: Policy name -> policy: the names a bare model address may resolve to.
    policies: dict[str, Any]

    def add(self, policies: Mapping[str, Any] | Iterable[Any]) -> None:
        """Take more policies (before `bind`)."""

    def bind(self, gateway: Gateway) -> None:
        """Resolve every policy's targets against ``gateway`` (a `ConfigError` now for a
        target it cannot reach)."""

    def policy_provider(self, gateway: Gateway) -> Provider:
        """The ``policy`` pseudo-provider: the policies as its models, priced for budgets."""
        ...


def policy_map(policies: Mapping[str, Any] | Iterable[Any]) -> dict[str, Any]:
    """``policies`` (``{name: policy}`` or policies named by ``.name``) as one dict, with
    each name and object checked: a policy is anything that offers a ``route_stage``."""
    items = policies.items() if isinstance(policies, Mapping) else ((p.name, p) for p in policies)
    out: dict[str, Any] = {}
    for name, policy in items:
        if not callable(getattr(policy, "route_stage", None)):
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


def merge_policies(
    first: Mapping[str, Any] | Iterable[Any], second: Mapping[str, Any] | Iterable[Any]
) -> dict[str, Any]:
    """Both sets of policies as one ``{name: policy}``; a name in both is a `ConfigError`."""
    merged = policy_map(first)
    for name, policy in policy_map(second).items():
        if name in merged:
            raise ConfigError(
                f"policy name {name!r} is given twice (in the config and as an argument)",
                hint="rename one",
            )
        merged[name] = policy
    return merged


def install_route_stage(
    gateway: Gateway,
    middleware: list[Middleware],
    policies: Mapping[str, Any] | Iterable[Any],
) -> list[Middleware]:
    """Wire ``policies`` into a gateway under construction: reuse the route stage in
    ``middleware`` or ask the policies for one, register the ``policy`` pseudo-provider and
    the policy names `Gateway._resolve` accepts, and resolve every policy's targets. Returns
    the middleware list (unchanged when there are no policies at all)."""
    stages = [m for m in middleware if isinstance(m, RouteStage)]
    if len(stages) > 1:
        raise ConfigError("more than one PolicyRouter middleware", hint="pass one")
    stage = stages[0] if stages else None
    extra = policy_map(policies)
    if stage is None:
        if not extra:
            return middleware
        stage = next(iter(extra.values())).route_stage(extra)
        middleware = [*middleware, stage]  # type: ignore[list-item]
    else:
        stage.add(extra)
    if POLICY_PROVIDER in gateway._specs or POLICY_PROVIDER in gateway._providers:
        raise ConfigError(
            f"provider name {POLICY_PROVIDER!r} is reserved for routing policies",
            hint="rename that provider",
        )
    gateway._providers[POLICY_PROVIDER] = stage.policy_provider(gateway)
    gateway._policies = stage.policies
    stage.bind(gateway)
    return middleware
