"""Exploration with logged propensities: `Exploring` wraps a routing policy so that some
calls go to other targets, and logs, per call, the probability with which it chose the
target it used. Off-policy evaluation (`aigw_lab.policy.ope`) reweights those logged calls
to estimate how any other policy would have done, without deploying it.

    base = load_policy("policies/router.json")
    explore = Exploring(base, epsilon=0.1, floor=0.02, budget_usd=5.0, seed=7)
    gw = Gateway.simulated_fleet(policies=[explore])   # clients still address base.name

**How a target is drawn.** With K targets, the base policy's own decision ``b`` (drawn
from its distribution ``p_base``: one target for a deterministic policy, the shares of a
split) is kept, except with probability ``eps`` the target is drawn uniformly:

- epsilon-greedy: ``P(a) = (1 - eps) p_base(a) + eps / K`` with
  ``eps = K floor + (1 - K floor) epsilon``, so every target has at least ``floor``;
- softmax (``temperature``): ``P(a) = floor + (1 - K floor) softmax(score / temperature)``
  over the base decision's ``scores`` (learned routers give one per target; a target
  without a score gets the lowest score given). A base decision without scores cannot be
  softened: the base's own distribution is used, and the floor still applies.

**Per tenant.** ``per_tenant={"acme": 0.2, "bank": 0.0}`` sets the rate (epsilon, or the
temperature in softmax mode) for those tenants; other requests use ``epsilon`` /
``temperature``. A rate of 0 means no exploration at all: the base policy's decision as it
is, without the floor (set ``epsilon=0`` and name the tenants to explore for some only).

**Budget.** ``budget_usd`` caps what exploring may spend: every call whose target differs
from the base's own choice (``RouteDecision.explored``) charges its whole cost (an upper
bound on the extra cost: the base's target would have cost something too). Once the
charges reach the budget, the policy returns the base's decision with the base's own
propensity: the logged probability is always the one actually used. Concurrent calls that
began exploring before the budget ran out still finish, so the overshoot is at most what
the calls in flight cost.

The generator is injected (``rng``) or seeded (``seed``); nothing is global. Decisions are
thread-safe (one lock around the draw and the budget).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aigw_lab.config_schema import NUMBER, TABLE, Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import Policy, RouteDecision, check_name, policy_from_dict
from aigw_lab.types import ChatRequest

__all__ = ["Exploring", "exploration_distribution", "EXPLORATION_TABLE", "explore_policies"]

#: ``[exploration.NAME]``: explore around the ``[policies]`` policy NAME (docs/routing.md).
EXPLORATION_TABLE = Table(
    keys=(
        Key(
            name="epsilon",
            types=NUMBER,
            low=0,
            high=1,
            what="a probability in [0, 1]",
            doc="epsilon-greedy: the share of calls sent to a uniformly drawn target",
        ),
        Key(
            name="temperature",
            types=NUMBER,
            low=0,
            what="a number >= 0",
            doc="softmax over the base policy's scores (instead of epsilon)",
        ),
        Key(
            name="floor",
            types=NUMBER,
            low=0,
            high=1,
            what="a probability in [0, 1/targets]",
            doc="the least probability of every target while exploring",
        ),
        Key(
            name="budget_usd",
            types=NUMBER,
            low=0,
            what="a number of USD >= 0",
            doc="what exploring may spend; then the base policy's own choices",
        ),
        Key(
            name="seed",
            types=(int,),
            what="an integer",
            doc="seeds the exploration draws",
        ),
        Key(
            name="per_tenant",
            types=TABLE,
            items=NUMBER,
            what="a table of tenant = rate",
            doc="the rate per tenant (0: no exploration for that tenant)",
        ),
    )
)


def explore_policies(
    policies: Mapping[str, Policy], exploration: Mapping[str, Mapping[str, Any]]
) -> dict[str, Policy]:
    """``policies`` with each one named in ``exploration`` (``[exploration.NAME]`` tables,
    checked against `EXPLORATION_TABLE`) wrapped in `Exploring` under the same name."""
    out = dict(policies)
    for name, table in exploration.items():
        base = out.get(name)
        if base is None:
            raise ConfigError(
                f"[exploration.{name}] names no policy",
                hint=f"add {name} to [policies]; policies: {', '.join(sorted(out)) or '(none)'}",
            )
        try:
            out[name] = Exploring(base, **dict(table))
        except ConfigError as exc:
            raise ConfigError(f"[exploration.{name}]: {exc.message}", hint=exc.hint) from exc
    return out


def _rate(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what}={value!r} must be a finite number")
    return float(value)


def exploration_distribution(
    targets: tuple[str, ...],
    base: Mapping[str, float],
    *,
    epsilon: float | None = None,
    temperature: float | None = None,
    scores: Mapping[str, float] | None = None,
    floor: float = 0.0,
) -> dict[str, float]:
    """The distribution `Exploring` draws from, as ``{target: probability}`` over every
    target (see the module docstring). ``base`` is the base policy's distribution;
    ``epsilon`` or ``temperature`` the rate (0 or None for both: ``base`` as it is);
    ``scores`` the base decision's scores (softmax only)."""
    k = len(targets)
    if temperature is not None and temperature > 0:
        known = {t: float(scores[t]) for t in targets if scores and t in scores}
        if known:
            low = min(known.values())
            values = [known.get(t, low) / temperature for t in targets]
            top = max(values)
            weights = [math.exp(v - top) for v in values]
            total = sum(weights)
            soft = [w / total for w in weights]
        else:
            soft = [base.get(t, 0.0) for t in targets]
        return {t: floor + (1.0 - k * floor) * p for t, p in zip(targets, soft, strict=True)}
    eps = epsilon or 0.0
    if eps <= 0 and floor <= 0:
        return {t: base.get(t, 0.0) for t in targets}
    mix = k * floor + (1.0 - k * floor) * eps
    return {t: (1.0 - mix) * base.get(t, 0.0) + mix / k for t in targets}


class Exploring(Policy):
    """Route with ``policy``, exploring other targets at a known, logged rate.

    ``epsilon`` (epsilon-greedy) or ``temperature`` (softmax over the base's scores): give
    one. ``floor``: the least probability of every target while exploring (K x floor <= 1).
    ``per_tenant``: ``{tenant: rate}`` overriding the rate per tenant (0: no exploration).
    ``budget_usd``: what exploring may spend (None: no cap). ``rng`` / ``seed``: the
    generator (injected, or seeded). ``name``: how clients address it (default: the base
    policy's name, so wrapping a deployed policy changes no client).
    """

    kind = "explore"

    def __init__(
        self,
        policy: Policy,
        *,
        epsilon: float | None = None,
        temperature: float | None = None,
        floor: float = 0.0,
        per_tenant: Mapping[str, float] | None = None,
        budget_usd: float | None = None,
        seed: int = 0,
        rng: random.Random | None = None,
        name: str | None = None,
        spent_usd: float = 0.0,
    ) -> None:
        if not isinstance(policy, Policy):
            raise ConfigError(
                f"Exploring wraps a Policy, got {type(policy).__name__}",
                hint="pass Rules, WeightedSplit, a learned router, ...",
            )
        if not policy.single_decision:
            raise ConfigError(
                f"cannot explore around policy {policy.name!r} ({policy.kind}): it calls "
                "several targets per request",
                hint="wrap a single-decision policy (rules, split, learned router); put a "
                "fallback chain in the gateway's [fallbacks] instead",
            )
        if isinstance(policy, Exploring):
            raise ConfigError("Exploring cannot wrap another Exploring policy")
        if (epsilon is None) == (temperature is None):
            raise ConfigError(
                "Exploring needs exactly one of epsilon= and temperature=",
                hint="epsilon=0.1 (epsilon-greedy) or temperature=0.5 (softmax over scores)",
            )
        self.base = policy
        self.name = check_name(name if name is not None else policy.name)
        self._targets = policy.targets()
        k = len(self._targets)
        self.epsilon = None if epsilon is None else self._check_epsilon(epsilon, "epsilon")
        self.temperature = (
            None if temperature is None else self._check_temperature(temperature, "temperature")
        )
        self.floor = _rate(floor, "floor")
        if self.floor < 0 or k * self.floor > 1.0 + 1e-12:
            raise ConfigError(
                f"floor={floor!r} is invalid for {k} targets",
                hint=f"use 0 <= floor <= 1/{k} (every target gets at least floor)",
            )
        if per_tenant is not None and not isinstance(per_tenant, Mapping):
            raise ConfigError("per_tenant must map tenant ids to rates", hint='{"acme": 0.2}')
        self.per_tenant = {
            str(tenant): (
                self._check_epsilon(rate, f"per_tenant[{tenant!r}]")
                if self.epsilon is not None
                else self._check_temperature(rate, f"per_tenant[{tenant!r}]")
            )
            for tenant, rate in (per_tenant or {}).items()
        }
        if budget_usd is not None:
            budget_usd = _rate(budget_usd, "budget_usd")
            if budget_usd < 0:
                raise ConfigError(f"budget_usd={budget_usd!r} must be >= 0")
        self.budget_usd = budget_usd
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r} must be an integer")
        self.seed = seed
        self._rng = rng if rng is not None else random.Random(seed)
        self._lock = threading.Lock()
        self.spent_usd = _rate(spent_usd, "spent_usd")
        #: Calls routed, and calls sent elsewhere than the base's choice.
        self.decisions = 0
        self.explorations = 0

    @staticmethod
    def _check_epsilon(value: Any, what: str) -> float:
        rate = _rate(value, what)
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{what}={value!r} must be in [0, 1]")
        return rate

    @staticmethod
    def _check_temperature(value: Any, what: str) -> float:
        rate = _rate(value, what)
        if rate < 0:
            raise ConfigError(f"{what}={value!r} must be >= 0 (0: no exploration)")
        return rate

    # --- state -------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """True once exploring has spent its budget: decisions are then the base's own."""
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd

    def rate_for(self, tenant: str | None) -> float:
        """The exploration rate (epsilon, or temperature) for ``tenant``."""
        if tenant is not None and tenant in self.per_tenant:
            return self.per_tenant[tenant]
        return self.epsilon if self.epsilon is not None else self.temperature  # type: ignore[return-value]

    def _distribution(
        self, decision: RouteDecision, request: ChatRequest
    ) -> tuple[dict[str, float], bool]:
        """The distribution to draw from and whether it explores (rate > 0, budget left)."""
        base = self.base.decision_probabilities(decision, request)
        rate = self.rate_for(request.tenant)
        if rate <= 0 or self.exhausted:
            return base, False
        if self.epsilon is not None:
            dist = exploration_distribution(self._targets, base, epsilon=rate, floor=self.floor)
        else:
            dist = exploration_distribution(
                self._targets, base, temperature=rate, scores=decision.scores, floor=self.floor
            )
        return dist, True

    # --- routing -----------------------------------------------------------------------

    def targets(self) -> tuple[str, ...]:
        return self._targets

    def decide(self, request: ChatRequest) -> RouteDecision:
        return self._explore(self.base.decide(request), request)

    async def adecide(self, request: ChatRequest) -> RouteDecision:
        # The base may decide off the event loop (a learned router embeds the prompt).
        return self._explore(await self.base.adecide(request), request)

    def _explore(self, decision: RouteDecision, request: ChatRequest) -> RouteDecision:
        with self._lock:
            self.decisions += 1
            dist, exploring = self._distribution(decision, request)
            if not exploring:
                return decision
            if self.epsilon is not None:
                # Keep the base's own draw except with probability eps (the uniform part of
                # the mixture), so a stochastic base is not drawn twice.
                k = len(self._targets)
                eps = k * self.floor + (1.0 - k * self.floor) * self.rate_for(request.tenant)
                if self._rng.random() < eps:
                    target = self._targets[int(self._rng.random() * k) % k]
                else:
                    target = decision.target
            else:
                target = self._draw(dist)
            explored = target != decision.target
            if explored:
                self.explorations += 1
        how = "explored" if explored else "base"
        return RouteDecision(
            target,
            f"{how} ({decision.reason})" if decision.reason else how,
            decision.scores,
            propensity=dist[target],
            explored=explored,
        )

    def _draw(self, dist: Mapping[str, float]) -> str:
        point = self._rng.random() * sum(dist.values())
        running = 0.0
        last = self._targets[0]
        for target in self._targets:
            p = dist.get(target, 0.0)
            if p <= 0:
                continue
            running += p
            last = target
            if point < running:
                return target
        return last  # rounding at the top end

    def decision_probabilities(
        self, decision: RouteDecision, request: ChatRequest
    ) -> dict[str, float]:
        """The exploring distribution around the base decision behind ``decision``: for a
        deterministic base, its target is the one with the most mass. Evaluated now (the
        budget may have run out since)."""
        with self._lock:
            dist, _ = self._distribution(decision, request)
        return {t: p for t, p in dist.items() if p > 0}

    def probabilities(self, request: ChatRequest) -> dict[str, float]:
        decision = self.base.decide(request)
        with self._lock:
            dist, _ = self._distribution(decision, request)
        return {t: p for t, p in dist.items() if p > 0}

    def settle(self, decision: RouteDecision, cost_usd: float | None) -> None:
        """Charge an explored call's cost to the exploration budget; tell the base too."""
        if decision.explored and cost_usd:
            with self._lock:
                self.spent_usd += cost_usd
        self.base.settle(decision, cost_usd)

    def warm_up(self) -> None:
        self.base.warm_up()

    # --- serialisation -----------------------------------------------------------------

    def save_artifacts(self, folder: Path) -> list[Path]:
        return self.base.save_artifacts(folder)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "base": self.base.to_dict(),
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "floor": self.floor,
            "per_tenant": dict(self.per_tenant),
            "budget_usd": self.budget_usd,
            "seed": self.seed,
            "state": {"spent_usd": self.spent_usd},
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> Exploring:
        base = spec.get("base")
        if not isinstance(base, Mapping):
            raise ConfigError(
                'an "explore" policy needs a "base" policy object',
                hint='{"kind": "explore", "base": {"kind": "rules", ...}, "epsilon": 0.1}',
            )
        state = spec.get("state") or {}
        return cls(
            policy_from_dict(base, artifacts),
            epsilon=spec.get("epsilon"),
            temperature=spec.get("temperature"),
            floor=spec.get("floor", 0.0),
            per_tenant=spec.get("per_tenant"),
            budget_usd=spec.get("budget_usd"),
            seed=spec.get("seed", 0),
            name=spec.get("name"),
            spent_usd=state.get("spent_usd", 0.0) if isinstance(state, Mapping) else 0.0,
        )
