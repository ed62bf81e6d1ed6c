"""The routing policy contract: a `Policy` picks which gateway target answers a request.

A policy is addressed like a model: a `Gateway` that holds a policy named ``"cheap-or-strong"``
answers ``gateway.chat("cheap-or-strong", ...)`` by asking the policy where to send the call.
Simple policies only `Policy.decide`; policies that may call several targets for one request
(fallback chains, cascades) override `Policy.call` / `Policy.acall`, and every call they make
goes through the ``send`` function they are given, so each one is a normal, logged, costed
attempt.

Policies serialise to JSON-ready dicts (`Policy.to_dict`) and back (`policy_from_dict`), the
form the policy file (`aigw_lab.policy.policyfile`) and the exporters read.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from aigw_lab.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from aigw_lab.policy.router import PolicyRouter
    from aigw_lab.types import ChatRequest, ChatResponse

__all__ = [
    "RouteDecision",
    "Policy",
    "Send",
    "AsyncSend",
    "policy_from_dict",
    "register_policy_kind",
    "policy_kinds",
    "POLICY_TAG",
    "check_name",
    "check_target",
]

_NO_SCORES: Mapping[str, float] = MappingProxyType({})

#: The tag the gateway puts on every call a policy makes: ``{"aigw_policy": NAME}``.
POLICY_TAG = "aigw_policy"

#: Sends a request to one gateway target ("provider/model") and returns its answer.
Send = Callable[[str, "ChatRequest"], "ChatResponse"]
#: The async form of `Send`.
AsyncSend = Callable[[str, "ChatRequest"], Awaitable["ChatResponse"]]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a policy sends a request, and why.

    ``target`` is a gateway address ``"provider/model"``; ``reason`` is short and human
    readable (``"rule 2: category=arithmetic"``); ``scores`` holds per-candidate predicted
    quality or score when the policy has any (learned routers), else it is empty.
    ``propensity`` is the probability with which the policy chose ``target`` for this
    request: 1.0 for a deterministic policy, the arm's share for a split, the probability
    actually used by an exploring policy. The route stage logs it (``calls.propensity``) so
    off-policy evaluation can reweight logged calls (`aigw_lab.policy.ope`). ``explored``:
    the target is not the one the wrapped policy would have chosen (`Exploring`).
    """

    target: str
    reason: str = ""
    scores: Mapping[str, float] = field(default_factory=lambda: _NO_SCORES)
    propensity: float = 1.0
    explored: bool = False


class Policy:
    """A routing policy: the base of rules, splits, fallback chains, cascades and learned
    routers.

    Subclasses set ``kind`` and ``name`` and implement `targets`, `decide`, `to_dict` and
    `from_dict`. The default `call` / `acall` send the request to the one target `decide`
    picks; policies that may call several targets override both.
    """

    #: The policy family, the ``"kind"`` key of `to_dict`: "rules", "split", "adaptive",
    #: "fallback", "cascade", "learned" or "explore".
    kind: ClassVar[str] = ""
    #: True when `call` is exactly ``send(decide(request).target, request)``. The gateway
    #: uses it to stream such policies directly (decide, then stream the chosen target).
    single_decision: ClassVar[bool] = True

    #: The model name clients use to address the policy.
    name: str

    def targets(self) -> tuple[str, ...]:
        """Every gateway address this policy may call, in a stable order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement targets()")

    def decide(self, request: ChatRequest) -> RouteDecision:
        """The first (for single-decision policies, the only) target for ``request``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement decide()")

    def call(self, request: ChatRequest, send: Send) -> ChatResponse:
        """Answer ``request``, calling targets only through ``send``.

        ``send(target, request)`` runs one logged call to ``target`` (a member of `targets`)
        and returns its answer or raises its error. Within one call, use it sequentially:
        the gateway's send drives the call's single context through the pipeline.
        """
        return send(self.decide(request).target, request)

    def decision_probabilities(
        self, decision: RouteDecision, request: ChatRequest
    ) -> dict[str, float]:
        """The distribution over targets that ``decision`` was drawn from, for ``request``:
        ``{target: probability}``, targets with probability 0 left out. A deterministic
        policy (the default) put all its mass on the target it chose; stochastic policies
        (splits, adaptive splits, `Exploring`) override this without drawing again."""
        return {decision.target: 1.0}

    def probabilities(self, request: ChatRequest) -> dict[str, float]:
        """``{target: P(target | request)}``: what this policy would do with ``request``, as a
        distribution (targets with probability 0 left out). Off-policy evaluation scores a
        candidate policy with it (`aigw_lab.policy.ope.candidate_probabilities`)."""
        return self.decision_probabilities(self.decide(request), request)

    def settle(self, decision: RouteDecision, cost_usd: float | None) -> None:
        """The call ``decision`` started has ended and cost ``cost_usd`` (None: unknown or
        failed). The route stage calls it once per decision it asked for; `Exploring`
        charges its exploration budget here. Most policies have nothing to do."""

    async def adecide(self, request: ChatRequest) -> RouteDecision:
        """`decide` for async callers. Policies whose decision costs real CPU time (a
        learned router embeds the prompt) run it off the event loop, so other requests on
        the same loop are not held up meanwhile."""
        return self.decide(request)

    async def acall(self, request: ChatRequest, send: AsyncSend) -> ChatResponse:
        """The async form of `call`."""
        return await send((await self.adecide(request)).target, request)

    async def astream_targets(self, request: ChatRequest) -> Sequence[str] | None:
        """`stream_targets` for async callers (see `adecide`)."""
        if not self.single_decision or type(self).stream_targets is not Policy.stream_targets:
            return self.stream_targets(request)  # a policy with its own rule (fallback)
        return ((await self.adecide(request)).target,)

    def stream_targets(self, request: ChatRequest) -> Sequence[str] | None:
        """The targets to try, in order, when the caller asks for a stream.

        The gateway streams the first that starts; it moves to the next only when a target
        fails with a fallback-worthy error before any text reached the caller. ``None`` means
        the policy cannot decide without seeing answers (a cascade): the gateway then runs
        `acall` unstreamed and replays the accepted answer as a stream.
        """
        if not self.single_decision:
            return None
        return (self.decide(request).target,)

    @staticmethod
    def route_stage(policies: Mapping[str, Policy]) -> PolicyRouter:
        """The gateway's route stage for ``policies``: `Gateway(policies=...)` asks a policy
        for it (see `aigw_lab.gateway.route`), so the gateway never imports this package."""
        # lazy: the router loads the whole gateway package (and
        # imports this module), which reading, saving or exporting a policy never needs.
        from aigw_lab.policy.router import PolicyRouter

        return PolicyRouter(policies)

    def to_dict(self) -> dict[str, Any]:
        """The policy as JSON-ready data; learned artifacts are saved by `save_artifacts`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement to_dict()")

    def warm_up(self) -> None:
        """Do the slow one-time work of the first decision now (a learned router loads its
        embedding model). A server calls this before it reports ready; most policies have
        nothing to do."""

    def save_artifacts(self, folder: Path) -> list[Path]:
        """Write the files `to_dict` names (model weights, embeddings) into ``folder``.

        Most policies have none; learned routers override this. Returns the files written.
        """
        return []

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> Policy:
        """Rebuild a policy from `to_dict` output; ``artifacts`` is the folder its files are in."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_dict()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind!r} targets={self.targets()}>"


# --- checks shared by the policy kinds ------------------------------------------------------


def check_target(value: Any, where: str) -> str:
    """``value`` if it is a ``"provider/model"`` address, else a `ConfigError`."""
    if not isinstance(value, str) or "/" not in value.strip("/"):
        raise ConfigError(
            f"{where}: target {value!r} is not a gateway address",
            hint='write targets as "provider/model", e.g. "sim-openai/sim-small"',
        )
    return value


def check_name(value: Any) -> str:
    """``value`` if it can name a policy (a non-empty string), else a `ConfigError`."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"a policy needs a non-empty string name, got {value!r}",
            hint='name it the way clients will address it, e.g. "cheap-or-strong"',
        )
    return value


# --- kind dispatch --------------------------------------------------------------------------

# Kind -> the module that defines its policy class. Modules are imported on first use, so the
# learned routers (numpy, embeddings) load only when a learned policy is read. A module
# listed here must expose a `Policy` subclass whose ``kind`` is the key.
_KIND_MODULES: dict[str, str] = {
    "rules": "aigw_lab.policy.rules",
    "split": "aigw_lab.policy.split",
    "adaptive": "aigw_lab.policy.adaptive",
    "fallback": "aigw_lab.policy.fallback",
    "cascade": "aigw_lab.policy.cascade",
    "learned": "aigw_lab.policy.learned",
    "explore": "aigw_lab.policy.explore",
}


def register_policy_kind(kind: str, policy: type[Policy] | str) -> None:
    """Make `policy_from_dict` build ``kind`` with ``policy``: a `Policy` subclass, or the
    dotted name of a module that defines one (imported when first needed)."""
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"policy kind must be a non-empty string, got {kind!r}")
    if isinstance(policy, str):
        _KIND_MODULES[kind] = policy
        _KIND_CLASSES.pop(kind, None)
        return
    if not (isinstance(policy, type) and issubclass(policy, Policy)):
        raise ConfigError(
            f"cannot register {policy!r} for policy kind {kind!r}",
            hint="pass a Policy subclass or the dotted name of the module that defines it",
        )
    _KIND_CLASSES[kind] = policy


_KIND_CLASSES: dict[str, type[Policy]] = {}


def policy_kinds() -> tuple[str, ...]:
    """The policy kinds `policy_from_dict` knows."""
    return tuple(sorted(set(_KIND_MODULES) | set(_KIND_CLASSES)))


def _policy_class(kind: str) -> type[Policy]:
    cls = _KIND_CLASSES.get(kind)
    if cls is not None:
        return cls
    module_name = _KIND_MODULES.get(kind)
    if module_name is None:
        raise ConfigError(
            f"unknown policy kind {kind!r}",
            hint=f"use one of {', '.join(policy_kinds())}, or register_policy_kind() a new one",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"policy kind {kind!r} needs module {module_name}, which cannot be imported: {exc}",
            hint="install the optional dependencies that module needs",
        ) from exc
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Policy) and value.kind == kind:
            _KIND_CLASSES[kind] = value
            return value
    raise ConfigError(
        f"module {module_name} defines no Policy subclass with kind {kind!r}",
        hint="export the policy class from that module",
    )


def policy_from_dict(spec: Mapping[str, Any], artifacts: Path | str | None = None) -> Policy:
    """Build a policy from its `Policy.to_dict` form, dispatching on ``spec["kind"]``.

    ``artifacts`` is the folder holding the files a learned policy's spec names.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"a policy spec must be a JSON object, got {type(spec).__name__}",
            hint='write {"kind": "rules", "name": ..., ...}',
        )
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            f"policy spec has no 'kind' (got {kind!r})",
            hint=f"set kind to one of {', '.join(policy_kinds())}",
        )
    folder = Path(artifacts) if artifacts is not None else None
    return _policy_class(kind).from_dict(spec, artifacts=folder)
