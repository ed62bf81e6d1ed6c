"""Weighted traffic splits for A/B tests, optionally sticky per user or tenant.

    ab = WeightedSplit("ab", {"sim-openai/sim-small": 0.9, "sim-anthropic/sim-haikuish": 0.1},
                       sticky="user", seed=7)

A non-sticky split draws each request's arm from its own seeded generator, so the same seed
gives the same sequence of decisions. A sticky split hashes the user (or tenant) id with the
seed into a fixed point in [0, 1): a user always lands on the same arm, in every process and
after a restart, and changing one arm's weight moves only the users near the boundary.
Requests without the id fall back to the seeded draw.

Each decision's propensity (`RouteDecision.propensity`, logged per call) is its arm's share,
sticky or not: the hash of the id is the randomisation device, as the seeded generator is
for a draw, and it does not look at the request's content. (Calls of one sticky user are
not independent draws: off-policy estimates over few users are less certain than the
call count suggests.)
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import Policy, RouteDecision, check_name, check_target
from aigw_lab.types import ChatRequest

__all__ = ["WeightedSplit", "stable_unit"]

Sticky = Literal["user", "tenant"]
_STICKY = ("user", "tenant")
# 2**64, to turn 8 hash bytes into a float in [0, 1).
_SCALE = float(1 << 64)


def stable_unit(key: str, seed: int = 0) -> float:
    """A point in [0, 1) fixed by ``key`` and ``seed``, the same in every process (unlike
    ``hash()``, which Python salts per process)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def _weights(targets: Mapping[str, float] | Sequence[Any]) -> list[tuple[str, float]]:
    if isinstance(targets, Mapping):
        pairs = list(targets.items())
    else:
        pairs = []
        for entry in targets:
            if isinstance(entry, Mapping):
                pairs.append((entry.get("target"), entry.get("weight", 1.0)))
            elif isinstance(entry, (tuple, list)) and len(entry) == 2:
                pairs.append((entry[0], entry[1]))
            else:
                raise ConfigError(
                    f"split arm {entry!r} is not (target, weight)",
                    hint='write arms as {"target": "provider/model", "weight": 0.5}',
                )
    if not pairs:
        raise ConfigError("a split needs at least one target", hint="give two or more arms")
    seen: set[str] = set()
    for target, weight in pairs:
        check_target(target, "split")
        if target in seen:
            raise ConfigError(f"split target {target!r} appears twice", hint="merge its weights")
        seen.add(target)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ConfigError(
                f"split weight {weight!r} for {target!r} is invalid",
                hint="weights are finite numbers >= 0 (they need not sum to 1)",
            )
    if sum(w for _, w in pairs) <= 0:
        raise ConfigError("every split weight is 0", hint="give at least one arm a weight > 0")
    return [(t, float(w)) for t, w in pairs]


class WeightedSplit(Policy):
    """Send each request to one arm, with probability proportional to its weight.

    ``targets``: ``{target: weight}`` or a list of ``{"target", "weight"}`` / pairs; weights
    are relative. ``sticky``: ``"user"`` or ``"tenant"`` to keep each one on one arm.
    ``seed`` fixes both the draws and the sticky assignment.
    """

    kind = "split"

    def __init__(
        self,
        name: str,
        targets: Mapping[str, float] | Sequence[Any],
        *,
        sticky: Sticky | None = None,
        seed: int = 0,
    ) -> None:
        self.name = check_name(name)
        self.arms = tuple(_weights(targets))
        if sticky is not None and sticky not in _STICKY:
            raise ConfigError(
                f"split sticky={sticky!r} is invalid", hint='use "user", "tenant" or None'
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"split seed={seed!r} must be an integer")
        self.sticky = sticky
        self.seed = seed
        total = sum(w for _, w in self.arms)
        running = 0.0
        self._bounds: list[float] = []
        for _, weight in self.arms:
            running += weight / total
            self._bounds.append(running)
        self._names = [t for t, _ in self.arms]
        self._shares = self.shares
        # Rounding can leave the last bound just below 1: a point past it goes to the last
        # arm that has any weight.
        self._last = max(i for i, (_, w) in enumerate(self.arms) if w > 0)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # one generator, many threads: draws stay reproducible

    @property
    def shares(self) -> dict[str, float]:
        """Each arm's expected share of traffic (the weights, normalised)."""
        total = sum(w for _, w in self.arms)
        return {t: w / total for t, w in self.arms}

    def targets(self) -> tuple[str, ...]:
        return tuple(self._names)

    def decide(self, request: ChatRequest) -> RouteDecision:
        key = getattr(request, self.sticky) if self.sticky is not None else None
        if key is not None:
            point = stable_unit(str(key), self.seed)
            how = f"sticky {self.sticky}"
        else:
            with self._lock:
                point = self._rng.random()
            how = "weighted draw"
        # bisect_right skips the empty interval of a zero-weight arm.
        index = bisect.bisect_right(self._bounds, point)
        if index > self._last:
            index = self._last
        target = self._names[index]
        return RouteDecision(target, how, propensity=self._shares[target])

    def decision_probabilities(
        self, decision: RouteDecision, request: ChatRequest
    ) -> dict[str, float]:
        """The arms' shares (a split's draw, or its hash, never looks at the request)."""
        return {t: p for t, p in self._shares.items() if p > 0}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "targets": [{"target": t, "weight": w} for t, w in self.arms],
            "sticky": self.sticky,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> WeightedSplit:
        return cls(
            spec.get("name"),  # type: ignore[arg-type]
            spec.get("targets", ()),
            sticky=spec.get("sticky"),
            seed=spec.get("seed", 0),
        )
