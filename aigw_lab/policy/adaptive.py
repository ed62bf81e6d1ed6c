"""An adaptive split (track-and-stop): traffic moves toward the better arm as feedback comes
in, and the experiment stops with a declared winner once the data separate it at a stated
confidence; from then on every request goes to the winner.

    policy = AdaptiveSplit("ab", ["sim-openai/sim-small", "sim-anthropic/sim-haikuish"],
                           metric="feedback", confidence=0.95, min_samples=50)
    ... serve traffic, record feedback (aigw_lab.store.scores.record_feedback) ...
    policy.update_from_log(gateway.log)   # or policy.record(target, value) online
    policy.winner                         # None until the stopping rule fires

**Allocation.** Until every arm has ``min_samples`` observations, traffic is uniform. Then
each request goes, with probability ``explore``, to a uniformly drawn arm, else to the arm
with the highest draw from its Beta posterior (Thompson sampling, with fractional successes
for scores between 0 and 1). The exploration floor keeps feeding the weaker arms, so the
stopping test below can still separate them; this is a simplification of TensorZero's
track-and-stop, whose allocation tracks the optimal sampling proportions instead.

**Stopping rule.** Anytime-valid Hoeffding confidence intervals: with values in [0, 1],
``delta = 1 - confidence`` and ``K`` arms, arm *i* after ``n`` observations has radius
``sqrt(ln(4 K n^2 / delta) / (2 n))``. Hoeffding's inequality and a union bound over every
arm and every sample count (``sum 1/n^2 < 2``) bound the probability that *any* interval is
ever wrong by ``delta``, however often the rule is checked. The policy stops when the best
arm's lower bound exceeds every other arm's upper bound (and each arm has ``min_samples``),
so with equal arms it stops (wrongly) with probability below ``delta``. The price of that
guarantee is conservatism: separating 0.3 from 0.6 takes a few hundred observations per arm.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import POLICY_TAG, Policy, RouteDecision, check_name, check_target
from aigw_lab.store.scores import scores_frame
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    from aigw_lab.store import CallLog

__all__ = ["AdaptiveSplit", "ArmStats", "thompson_probabilities"]

# Grid points for `thompson_probabilities`' integral: its error is far below the sampling
# noise of any estimate made from the logged propensities.
_GRID = 4096


def thompson_probabilities(posteriors: Sequence[tuple[float, float]]) -> list[float]:
    """P(arm i's draw is the highest) when each arm draws from Beta(a_i, b_i): the integral
    of arm i's density times every other arm's distribution function, on a midpoint grid
    spanning every arm's mean +- 10 standard deviations (clipped to [0, 1]), so peaked
    posteriors are resolved too. Ties have probability 0, so the results sum to 1
    (renormalised against the grid's rounding)."""
    # lazy: numpy only when a decision needs Thompson sampling's probabilities
    import numpy as np

    a = np.array([p[0] for p in posteriors], dtype=float)
    b = np.array([p[1] for p in posteriors], dtype=float)
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    low = max(0.0, float((mean - 10 * sd).min()))
    high = min(1.0, float((mean + 10 * sd).max()))
    width = (high - low) / _GRID
    x = low + (np.arange(_GRID) + 0.5) * width
    # Unnormalised log densities: each arm is normalised over the grid below.
    log_density = (a[:, None] - 1) * np.log(x) + (b[:, None] - 1) * np.log1p(-x)
    mass = np.exp(log_density - log_density.max(axis=1, keepdims=True))
    mass /= mass.sum(axis=1, keepdims=True)  # each arm's mass per cell, summing to 1
    cdf = np.cumsum(mass, axis=1) - mass / 2  # at each cell's middle
    wins = []
    for i in range(len(a)):
        others = np.prod(np.delete(cdf, i, axis=0), axis=0)
        wins.append(float((mass[i] * others).sum()))
    whole = sum(wins)
    return [w / whole for w in wins]


class ArmStats:
    """One arm's observations, normalised to [0, 1]: count and sum (enough for a mean, a
    Hoeffding bound and a Beta posterior with fractional successes)."""

    __slots__ = ("n", "total")

    def __init__(self, n: int = 0, total: float = 0.0) -> None:
        self.n = n
        self.total = total

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def radius(self, arms: int, delta: float) -> float:
        """The anytime-valid Hoeffding radius (see the module docstring)."""
        if self.n == 0:
            return math.inf
        return math.sqrt(math.log(4.0 * arms * self.n * self.n / delta) / (2.0 * self.n))

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "sum": self.total}

    def __repr__(self) -> str:
        return f"ArmStats(n={self.n}, mean={self.mean})"


class AdaptiveSplit(Policy):
    """A split that shifts traffic toward the better arm and stops with a winner.

    ``targets``: the arms. ``metric``: the scorer (or feedback) name whose values judge them,
    read from the ``scores`` table by `update_from_log`. ``scale``: the metric's range,
    mapped to [0, 1]. ``confidence``: one minus the probability of declaring a wrong winner.
    ``min_samples``: observations every arm needs before traffic shifts or the test may
    stop. ``explore``: the share of traffic kept uniform after that. ``seed`` fixes draws.
    """

    kind = "adaptive"

    def __init__(
        self,
        name: str,
        targets: Sequence[str],
        *,
        metric: str = "feedback",
        confidence: float = 0.95,
        min_samples: int = 30,
        explore: float = 0.1,
        scale: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = check_name(name)
        if isinstance(targets, str) or len(targets) < 2:
            raise ConfigError(
                f"adaptive split {name!r} needs at least two targets, got {targets!r}",
                hint="list the arms to compare",
            )
        self.arms = tuple(check_target(t, f"adaptive split {name!r}") for t in targets)
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"adaptive split {name!r} lists a target twice")
        if not (0.5 <= confidence < 1.0):
            raise ConfigError(
                f"confidence={confidence!r} is invalid", hint="use a probability like 0.95"
            )
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise ConfigError(f"min_samples={min_samples!r} is invalid", hint="use an integer >= 1")
        if not (0.0 <= explore <= 1.0):
            raise ConfigError(f"explore={explore!r} is invalid", hint="use a share in [0, 1]")
        low, high = scale
        if not high > low:
            raise ConfigError(f"scale={scale!r} is invalid", hint="use (low, high) with high > low")
        self.metric = metric
        self.confidence = float(confidence)
        self.min_samples = min_samples
        self.explore = float(explore)
        self.scale = (float(low), float(high))
        self.seed = seed
        self.stats = {t: ArmStats() for t in self.arms}
        self.winner: str | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cached: tuple[tuple[tuple[int, float], ...], dict[str, float]] | None = None
        if state:
            self._load_state(state)

    # --- feedback -----------------------------------------------------------------------

    def record(self, target: str, value: float) -> str | None:
        """Add one observation of ``target`` (on the metric's scale); return the winner once
        the stopping rule has fired, else None."""
        stats = self.stats.get(target)
        if stats is None:
            raise ConfigError(
                f"{target!r} is not an arm of adaptive split {self.name!r}",
                hint=f"arms: {', '.join(self.arms)}",
            )
        low, high = self.scale
        unit = min(1.0, max(0.0, (float(value) - low) / (high - low)))
        with self._lock:
            stats.n += 1
            stats.total += unit
            self._check_stop()
        return self.winner

    def update_from_log(self, log: CallLog) -> str | None:
        """Rebuild the arms' statistics from the call log: every score named ``metric`` on a
        call this policy routed (tag ``aigw_policy`` = the policy's name), one observation per
        call (the mean of its scores). The log is the source of truth: this replaces what
        `record` added. Returns the winner, if the stopping rule fires."""
        scores = scores_frame(log, scorer=self.metric)
        fresh = {t: ArmStats() for t in self.arms}
        if len(scores):
            per_call = scores.dropna(subset=["value"]).groupby("call_id")["value"].mean()
            calls = log.query(
                "SELECT call_id, provider_name || '/' || request_model AS address FROM calls "
                f"WHERE json_extract_string(tags_json, '$.{POLICY_TAG}') = ?",
                [self.name],
            )
            address = dict(zip(calls["call_id"], calls["address"], strict=True))
            low, high = self.scale
            for call_id, value in per_call.items():
                stats = fresh.get(address.get(call_id, ""))
                if stats is not None:
                    stats.n += 1
                    stats.total += min(1.0, max(0.0, (float(value) - low) / (high - low)))
        with self._lock:
            self.stats = fresh
            self.winner = None
            self._check_stop()
        return self.winner

    def bounds(self) -> dict[str, tuple[float, float]]:
        """Each arm's confidence interval for its mean (on [0, 1]), as the stopping rule
        sees it."""
        delta = 1.0 - self.confidence
        out = {}
        for target, stats in self.stats.items():
            mean = stats.mean
            if mean is None:
                out[target] = (0.0, 1.0)
                continue
            r = stats.radius(len(self.arms), delta)
            out[target] = (max(0.0, mean - r), min(1.0, mean + r))
        return out

    def _check_stop(self) -> None:
        if self.winner is not None:
            return
        if any(s.n < self.min_samples for s in self.stats.values()):
            return
        bounds = self.bounds()
        best = max(self.arms, key=lambda t: (self.stats[t].mean, t))
        lower = bounds[best][0]
        if all(bounds[t][1] < lower for t in self.arms if t != best):
            self.winner = best

    # --- routing ------------------------------------------------------------------------

    def targets(self) -> tuple[str, ...]:
        return self.arms

    def decide(self, request: ChatRequest) -> RouteDecision:
        winner = self.winner
        if winner is not None:
            return RouteDecision(winner, f"winner at confidence {self.confidence}")
        rng = self._rng
        k = len(self.arms)
        with self._lock:
            if any(s.n < self.min_samples for s in self.stats.values()):
                target = rng.choice(self.arms)
                return RouteDecision(target, "uniform until min_samples", propensity=1.0 / k)
            probabilities = self._mixed_probabilities()
            if rng.random() < self.explore:
                target = rng.choice(self.arms)
                return RouteDecision(
                    target, "exploration", propensity=probabilities[target], explored=True
                )
            draws = {
                t: rng.betavariate(1.0 + s.total, 1.0 + s.n - s.total)
                for t, s in self.stats.items()
            }
        best = max(draws, key=draws.__getitem__)
        return RouteDecision(best, "thompson draw", draws, propensity=probabilities[best])

    def decision_probabilities(
        self, decision: RouteDecision, request: ChatRequest
    ) -> dict[str, float]:
        """What a decision is drawn from now: the winner; uniform until ``min_samples``;
        else ``explore`` uniform plus Thompson sampling's probability of each arm."""
        if self.winner is not None:
            return {self.winner: 1.0}
        with self._lock:
            if any(s.n < self.min_samples for s in self.stats.values()):
                return {t: 1.0 / len(self.arms) for t in self.arms}
            return self._mixed_probabilities()

    def _mixed_probabilities(self) -> dict[str, float]:
        # The probability that a decision picks each arm: an exploration draw (uniform) or
        # the arm whose Beta draw is highest (`thompson_probabilities`), cached per state
        # because the statistics only change with feedback.
        key = tuple((s.n, s.total) for s in self.stats.values())
        if self._cached is None or self._cached[0] != key:
            ts = thompson_probabilities(
                [(1.0 + s.total, 1.0 + s.n - s.total) for s in self.stats.values()]
            )
            k = len(self.arms)
            mixed = {
                t: self.explore / k + (1.0 - self.explore) * p
                for t, p in zip(self.arms, ts, strict=True)
            }
            self._cached = (key, mixed)
        return self._cached[1]

    # --- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "targets": list(self.arms),
            "metric": self.metric,
            "confidence": self.confidence,
            "min_samples": self.min_samples,
            "explore": self.explore,
            "scale": list(self.scale),
            "seed": self.seed,
            "state": {
                "arms": {t: s.to_dict() for t, s in self.stats.items()},
                "winner": self.winner,
            },
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        arms = state.get("arms", {})
        if not isinstance(arms, Mapping):
            raise ConfigError(f"adaptive split {self.name!r}: state.arms must be an object")
        for target, values in arms.items():
            if target not in self.stats or not isinstance(values, Mapping):
                raise ConfigError(
                    f"adaptive split {self.name!r}: state names unknown arm {target!r}",
                    hint=f"arms: {', '.join(self.arms)}",
                )
            self.stats[target] = ArmStats(int(values.get("n", 0)), float(values.get("sum", 0.0)))
        winner = state.get("winner")
        if winner is not None and winner not in self.stats:
            raise ConfigError(f"adaptive split {self.name!r}: winner {winner!r} is not an arm")
        self.winner = winner

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> AdaptiveSplit:
        return cls(
            spec.get("name"),  # type: ignore[arg-type]
            spec.get("targets", ()),
            metric=spec.get("metric", "feedback"),
            confidence=spec.get("confidence", 0.95),
            min_samples=spec.get("min_samples", 30),
            explore=spec.get("explore", 0.1),
            scale=tuple(spec.get("scale", (0.0, 1.0))),  # type: ignore[arg-type]
            seed=spec.get("seed", 0),
            state=spec.get("state"),
        )
