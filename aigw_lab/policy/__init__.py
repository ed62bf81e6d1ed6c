"""Routing policies: which target answers each request.

A `Policy` is addressed like a model name in a `Gateway`. The kinds: `Rules` (conditions on
category, tags, metadata, text, length, capabilities), `WeightedSplit` (A/B tests, sticky per
user), `AdaptiveSplit` (track-and-stop on logged feedback), `FallbackChain`, `Cascade` (cheap
first, escalate when a scorer rejects), and the learned routers in `aigw_lab.policy.learned`.
`save_policy` / `load_policy` read and write the versioned policy file. `Exploring` wraps a
policy to explore with logged propensities; `evaluate_policy` (off-policy evaluation) and
`logged_bandit_from_log` estimate another policy's quality and cost from those logs. See
docs/routing.md.

Names are imported lazily, so ``import aigw_lab.policy`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Policy": "aigw_lab.policy.base",
    "RouteDecision": "aigw_lab.policy.base",
    "policy_from_dict": "aigw_lab.policy.base",
    "register_policy_kind": "aigw_lab.policy.base",
    "policy_kinds": "aigw_lab.policy.base",
    "Condition": "aigw_lab.policy.rules",
    "Rule": "aigw_lab.policy.rules",
    "Rules": "aigw_lab.policy.rules",
    "cheapest_meeting": "aigw_lab.policy.rules",
    "WeightedSplit": "aigw_lab.policy.split",
    "AdaptiveSplit": "aigw_lab.policy.adaptive",
    "FallbackChain": "aigw_lab.policy.fallback",
    "should_fall_back": "aigw_lab.policy.fallback",
    "Cascade": "aigw_lab.policy.cascade",
    "CascadeStep": "aigw_lab.policy.cascade",
    "SelfConsistency": "aigw_lab.policy.cascade",
    "PolicyRouter": "aigw_lab.policy.router",
    "save_policy": "aigw_lab.policy.policyfile",
    "load_policy": "aigw_lab.policy.policyfile",
    "POLICY_FILE_VERSION": "aigw_lab.policy.policyfile",
    "Exploring": "aigw_lab.policy.explore",
    "exploration_distribution": "aigw_lab.policy.explore",
    "LoggedBandit": "aigw_lab.policy.ope",
    "Estimate": "aigw_lab.policy.ope",
    "OPEDiagnostics": "aigw_lab.policy.ope",
    "OPEResult": "aigw_lab.policy.ope",
    "evaluate_policy": "aigw_lab.policy.ope",
    "candidate_probabilities": "aigw_lab.policy.ope",
    "weight_diagnostics": "aigw_lab.policy.ope",
    "logged_bandit_from_log": "aigw_lab.policy.ope_log",
}

__all__ = [
    "Policy",
    "RouteDecision",
    "policy_from_dict",
    "register_policy_kind",
    "policy_kinds",
    "Condition",
    "Rule",
    "Rules",
    "cheapest_meeting",
    "WeightedSplit",
    "AdaptiveSplit",
    "FallbackChain",
    "should_fall_back",
    "Cascade",
    "CascadeStep",
    "SelfConsistency",
    "PolicyRouter",
    "save_policy",
    "load_policy",
    "POLICY_FILE_VERSION",
    "Exploring",
    "exploration_distribution",
    "LoggedBandit",
    "Estimate",
    "OPEDiagnostics",
    "OPEResult",
    "evaluate_policy",
    "candidate_probabilities",
    "weight_diagnostics",
    "logged_bandit_from_log",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.policy.adaptive import AdaptiveSplit
    from aigw_lab.policy.base import (
        Policy,
        RouteDecision,
        policy_from_dict,
        policy_kinds,
        register_policy_kind,
    )
    from aigw_lab.policy.cascade import Cascade, CascadeStep, SelfConsistency
    from aigw_lab.policy.explore import Exploring, exploration_distribution
    from aigw_lab.policy.fallback import FallbackChain, should_fall_back
    from aigw_lab.policy.ope import (
        Estimate,
        LoggedBandit,
        OPEDiagnostics,
        OPEResult,
        candidate_probabilities,
        evaluate_policy,
        weight_diagnostics,
    )
    from aigw_lab.policy.ope_log import logged_bandit_from_log
    from aigw_lab.policy.policyfile import POLICY_FILE_VERSION, load_policy, save_policy
    from aigw_lab.policy.router import PolicyRouter
    from aigw_lab.policy.rules import Condition, Rule, Rules, cheapest_meeting
    from aigw_lab.policy.split import WeightedSplit
