"""An adaptive split (track-and-stop): traffic moves toward the better arm as feedback comes
in, and the experiment stops with a declared winner once the data separate it at a stated
confidence; from then on every request goes to the winner.

    policy = AdaptiveSplit("ab", ["sim-openai/sim-small", "sim-anthropic/sim-haikuish"],
                           metric="feedback", confidence=0.95, min_samples=50)
    ... serve traffic, record feedback (aigw_lab.store.scores.record_feedback) ...
    policy.update_from_log(gateway.log)   # or policy.record(target, value) online
    policy.winner                         # None until the stopping rule fires

**Allocation.** Until every arm has ``min_samples`` observations, traffic is uniform. Then
each request goes, with probability ``explore``, to a uniformly drawn arm, else to an arm
drawn with Thompson sampling's probabilities: the probability that each arm's draw from its
Beta posterior (fractional successes for scores between 0 and 1) is the highest. The
exploration floor keeps feeding the weaker arms, so the stopping test below can still
separate them; this is a simplification of TensorZero's track-and-stop, whose allocation
tracks the optimal sampling proportions instead.

**Batched posterior.** Decisions are drawn from a snapshot of the arms' statistics, taken
again once ``refresh_every`` feedbacks have arrived since the last one, or once
``refresh_seconds`` have passed (on the injected ``clock``) with at least one new feedback,
or when the last arm reaches ``min_samples`` or `update_from_log` replaces the statistics.
Thompson sampling's probabilities (`thompson_probabilities`, a numerical integral of a few
hundred microseconds) are computed once per snapshot, and each decision samples an arm from
that categorical distribution (one uniform draw, microseconds) instead of drawing from every
arm's posterior. Drawing the arm whose posterior draw is highest picks each arm with exactly
these probabilities, so per snapshot the allocation is Thompson sampling's; and the logged
propensity is the probability the decision was actually drawn with, which the off-policy
estimators (`aigw_lab.policy.ope`) need. Updating the posterior only between batches is
batched (delayed-feedback) Thompson sampling: Chapelle & Li, "An Empirical Evaluation of
Thompson Sampling" (NeurIPS 2011: its simulations update the posterior every 1 to 1,000
steps, and Thompson sampling's regret degrades gracefully, more so than UCB's); Kalkanli &
Ozgur, "Batched Thompson Sampling" (NeurIPS 2021); Karbasi, Mirrokni & Shadravan,
"Parallelizing Thompson Sampling" (NeurIPS 2021). ``refresh_every=1`` refreshes on every
feedback (sequential Thompson sampling). The stopping rule below reads the live statistics,
not the snapshot: a winner takes all traffic from the feedback that separates it.

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

import bisect
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
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
# The reason of a decision drawn uniformly before every arm has min_samples observations.
_UNIFORM = "uniform until min_samples"


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


class _Snapshot:
    """What decisions are drawn from until the next refresh: whether traffic is still uniform,
    the mixed probabilities logged as propensities, Thompson sampling's own (and their running
    sums, for drawing), and when (on the policy's clock) it was taken."""

    __slots__ = ("uniform", "mixed", "thompson", "scores", "cumulative", "taken_at")

    def __init__(
        self,
        uniform: bool,
        mixed: dict[str, float],
        thompson: dict[str, float],
        taken_at: float,
    ) -> None:
        self.uniform = uniform
        self.mixed = mixed
        self.thompson = thompson
        # The decisions' scores: one read-only view shared by every decision of the snapshot.
        self.scores = MappingProxyType(thompson)
        running = 0.0
        cumulative = []
        for p in thompson.values():
            running += p
            cumulative.append(running)
        self.cumulative = cumulative
        self.taken_at = taken_at


class AdaptiveSplit(Policy):
    """A split that shifts traffic toward the better arm and stops with a winner.

    ``targets``: the arms. ``metric``: the scorer (or feedback) name whose values judge them,
    read from the ``scores`` table by `update_from_log`. ``scale``: the metric's range,
    mapped to [0, 1]. ``confidence``: one minus the probability of declaring a wrong winner.
    ``min_samples``: observations every arm needs before traffic shifts or the test may
    stop. ``explore``: the share of traffic kept uniform after that. ``seed`` fixes draws.
    ``refresh_every`` (feedbacks) and ``refresh_seconds`` (None: no time trigger) say when
    the decisions' snapshot of the statistics is taken again (see "Batched posterior" in the
    module docstring); ``clock`` (seconds, monotonic; default `time.monotonic`) times it, and
    a fixed clock makes the decisions depend on the seed and the feedback order alone.
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
        refresh_every: int = 100,
        refresh_seconds: float | None = 1.0,
        clock: Callable[[], float] | None = None,
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
        if (
            isinstance(refresh_every, bool)
            or not isinstance(refresh_every, int)
            or refresh_every < 1
        ):
            raise ConfigError(
                f"refresh_every={refresh_every!r} is invalid",
                hint="use an integer >= 1 (feedbacks between snapshots; 1: every feedback)",
            )
        if refresh_seconds is not None and (
            isinstance(refresh_seconds, bool)
            or not isinstance(refresh_seconds, int | float)
            or not (0.0 <= refresh_seconds < math.inf)
        ):
            raise ConfigError(
                f"refresh_seconds={refresh_seconds!r} is invalid",
                hint="use seconds >= 0, or None for no time trigger",
            )
        self.metric = metric
        self.confidence = float(confidence)
        self.min_samples = min_samples
        self.explore = float(explore)
        self.scale = (float(low), float(high))
        self.seed = seed
        self.refresh_every = refresh_every
        self.refresh_seconds = None if refresh_seconds is None else float(refresh_seconds)
        self._clock = clock or time.monotonic
        self.stats = {t: ArmStats() for t in self.arms}
        self.winner: str | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._pending = 0  # feedbacks since the snapshot
        self._stale = True  # take a snapshot at the next decision
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
            self._pending += 1
            if self._pending >= self.refresh_every:
                self._stale = True
            elif stats.n == self.min_samples and self._snapshot and self._snapshot.uniform:
                # The last arm to reach min_samples ends the uniform phase at once, not a
                # batch later.
                self._stale = True
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
            self._stale = True
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
            return RouteDecision(winner, self._winner_reason())
        rng = self._rng
        with self._lock:
            snapshot = self._current()
            if snapshot.uniform:
                target = rng.choice(self.arms)
                return RouteDecision(target, _UNIFORM, propensity=snapshot.mixed[target])
            if rng.random() < self.explore:
                target = rng.choice(self.arms)
                return RouteDecision(
                    target,
                    "exploration",
                    snapshot.scores,
                    propensity=snapshot.mixed[target],
                    explored=True,
                )
            # One draw from Thompson sampling's categorical distribution: the arm whose
            # posterior draw would be highest, with exactly the logged probability.
            cumulative = snapshot.cumulative
            index = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
            target = self.arms[min(index, len(self.arms) - 1)]
        return RouteDecision(
            target, "thompson sample", snapshot.scores, propensity=snapshot.mixed[target]
        )

    def decision_probabilities(
        self, decision: RouteDecision, request: ChatRequest
    ) -> dict[str, float]:
        """What ``decision`` was drawn from: the winner; uniform until ``min_samples``; else
        ``explore`` uniform plus Thompson sampling's probability of each arm as of the
        snapshot the decision was drawn from (its ``scores``), not a newer one taken since by
        another thread's feedback: a wrapper such as `Exploring` logs propensities from this,
        and they must be the probabilities the decision actually had. A decision this policy
        did not make gets the current snapshot's."""
        k = len(self.arms)
        scores = decision.scores
        if len(scores) == k and all(t in scores for t in self.arms):
            # The same arithmetic as _take_snapshot, so the floats equal the logged ones.
            return {t: self.explore / k + (1.0 - self.explore) * scores[t] for t in self.arms}
        if decision.reason == _UNIFORM and decision.target in self.arms:
            return {t: 1.0 / k for t in self.arms}
        if decision.reason == self._winner_reason() and decision.target == self.winner:
            return {decision.target: 1.0}
        if self.winner is not None:
            return {self.winner: 1.0}
        with self._lock:
            snapshot = self._snapshot if self._snapshot is not None else self._current()
            return dict(snapshot.mixed)

    def _winner_reason(self) -> str:
        return f"winner at confidence {self.confidence}"

    def _current(self) -> _Snapshot:
        # The snapshot decisions draw from, taken again when it is stale: enough feedbacks
        # (or the phase change, or a rebuild from the log) marked it, or feedback has waited
        # refresh_seconds. Called with the lock held.
        snapshot = self._snapshot
        if snapshot is not None and not self._stale:
            if not self._pending or self.refresh_seconds is None:
                return snapshot
            if self._clock() - snapshot.taken_at < self.refresh_seconds:
                return snapshot
        snapshot = self._take_snapshot()
        self._snapshot, self._pending, self._stale = snapshot, 0, False
        return snapshot

    def _take_snapshot(self) -> _Snapshot:
        k = len(self.arms)
        stats = [self.stats[t] for t in self.arms]
        now = self._clock()
        if any(s.n < self.min_samples for s in stats):
            uniform = {t: 1.0 / k for t in self.arms}
            return _Snapshot(True, uniform, uniform, now)
        ts = thompson_probabilities([(1.0 + s.total, 1.0 + s.n - s.total) for s in stats])
        thompson = dict(zip(self.arms, ts, strict=True))
        mixed = {t: self.explore / k + (1.0 - self.explore) * thompson[t] for t in self.arms}
        return _Snapshot(False, mixed, thompson, now)

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
            "refresh_every": self.refresh_every,
            "refresh_seconds": self.refresh_seconds,
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
            # Specs saved before session 10 have neither key: the defaults apply.
            refresh_every=spec.get("refresh_every", 100),
            refresh_seconds=spec.get("refresh_seconds", 1.0),
            state=spec.get("state"),
        )
