"""How often `tests/policy/test_split.py::test_adaptive_rarely_stops_on_equal_arms`'s 40 runs
stop on two equal arms: with the policy's anytime Hoeffding bound, and with a
normal-approximation interval checked after every observation instead (everything else as
in the test: the same seeds, feedback, confidence 0.9 and min_samples 10). The test's
docstring quotes these counts.

    python bench/split_false_stops.py      # a few seconds

The normal interval is ``mean +- z * sqrt(mean * (1 - mean) / n)`` per arm, for z of a
two-sided 90% interval (1.645, the confidence the test sets), and for comparison a one-sided
90% (1.282) and a two-sided 95% (1.960) one; it stops, as the policy does, once the best
arm's lower bound is above every other arm's upper bound.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aigw_lab.policy.adaptive import AdaptiveSplit  # noqa: E402
from tests.policy.test_split import A, B, frozen_clock, simulate  # noqa: E402


class NormalIntervalSplit(AdaptiveSplit):
    """The policy with a normal-approximation interval as its stopping rule."""

    z = statistics.NormalDist().inv_cdf(0.95)

    def bounds(self) -> dict[str, tuple[float, float]]:
        out = {}
        for target, stats in self.stats.items():
            mean = stats.mean
            if mean is None:
                out[target] = (0.0, 1.0)
                continue
            r = self.z * math.sqrt(mean * (1 - mean) / stats.n)
            out[target] = (max(0.0, mean - r), min(1.0, mean + r))
        return out


def stops(policy_type: type[AdaptiveSplit], z: float | None = None) -> int:
    """Runs of the test's 40 that declare a winner between equal arms."""
    stopped = 0
    for seed in range(40):
        policy = policy_type(
            "ad", [A, B], confidence=0.9, min_samples=10, seed=seed, clock=frozen_clock
        )
        if z is not None:
            policy.z = z  # type: ignore[attr-defined]
        winner, _, _ = simulate(policy, {A: 0.5, B: 0.5}, random.Random(1000 + seed), 3000)
        stopped += winner is not None
    return stopped


def main() -> None:
    print(f"anytime Hoeffding bound (the policy): {stops(AdaptiveSplit)} of 40 runs stop")
    normal = statistics.NormalDist()
    for label, quantile in (("two-sided 90%", 0.95), ("one-sided 90%", 0.9),
                            ("two-sided 95%", 0.975)):  # fmt: skip
        z = normal.inv_cdf(quantile)
        count = stops(NormalIntervalSplit, z)
        print(f"normal interval, {label} (z = {z:.3f}): {count} of 40 runs stop")


if __name__ == "__main__":
    main()
