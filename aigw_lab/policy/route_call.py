"""One client call to a routing policy, as the route stage runs it (`PolicyCall`): the
untagged request, and how the call context is pointed at each target the policy sends to,
and back at the policy afterwards. Shared by the route stage's loops in every call mode
(`aigw_lab.policy._async.route` and the sync code generated from it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.route import POLICY_PROVIDER

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.policy.router import PolicyRouter
    from aigw_lab.types import ChatRequest

__all__ = ["PolicyCall"]


class PolicyCall:
    """One client call to a policy: its untagged request, and how to point the call context
    at each target the policy sends to (and back at the policy afterwards)."""

    __slots__ = ("router", "ctx", "name", "request", "failed_target")

    def __init__(self, router: PolicyRouter, ctx: CallContext) -> None:
        self.router = router
        self.ctx = ctx
        self.name = ctx.model
        self.request = ctx.request
        self.failed_target: str | None = None

    def chosen(self, propensity: float | None) -> None:
        """Mark every row of this call as routed by the policy, with the probability of
        the decision behind it (see `aigw_lab.policy._async.route`)."""
        self.ctx.route_policy = self.name
        self.ctx.propensity = propensity

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
        # Rows written after the route stage (none today) were not chosen by the policy.
        ctx.route_policy = None
        ctx.propensity = None
        ctx.provider_name = POLICY_PROVIDER
        ctx.model = self.name
        ctx.request = self.request
