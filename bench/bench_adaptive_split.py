"""What an adaptive split's decision costs: an earlier tree (a Thompson integral whenever the
arms' statistics changed, then a Beta draw per arm) against this one (a snapshot refreshed
every ``refresh_every`` feedbacks or ``refresh_seconds``, one categorical draw per decision),
in the same run (docs/performance.md, "The adaptive split's per-decision cost, session 10").

    git archive <old commit> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_adaptive_split.py --old-tree /tmp/old [--rounds R] [--requests N]
    python bench/bench_adaptive_split.py --old-tree /tmp/old --quick    # 20-60 s

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout, at its defaults: the real monotonic clock, refresh every 100
feedbacks or 1 s) and ``new, again`` (this checkout once more: the noise floor). Each
round, every worker runs every workload once, the workers in a new random order each
round. A workload is ``N`` served requests on a fresh policy past ``min_samples`` (200
observations per arm, arms at 0.50 and 0.55 and confidence 0.999, so no winner ends the
experiment): per request ``decide`` and, for a share of the requests, ``record`` of a
seeded Bernoulli value, as a server with feedback does.

Workloads: ``2 arms, feedback every call`` (the worst case: the old tree integrates on every
request), ``3 arms, feedback every call``, ``2 arms, feedback 1 in 10`` (a realistic rate
of thumbs or scores), ``2 arms, no feedback`` (decisions alone).

Prints, per workload and side, the median over rounds of wall and CPU (``process_time``)
microseconds per request with the range over rounds, decisions per second (wall), the
ratios new/old and again/new of the medians, and the load average before and after.

Then where a request's CPU goes in this tree (``decide`` alone, ``record`` alone, both with
feedback on every call: the difference is the snapshot's integral shared by 100 feedbacks).

Then what fewer points would do to `thompson_probabilities` (the study behind keeping
4,096): CPU per call and the error against a 262,144-point grid on random posteriors.

Then what batching costs in statistics, this tree only (``--regret-runs`` seeded runs per
setting, a fixed clock so only ``refresh_every`` triggers): two arms at 0.3 and 0.6 and three
at 0.5, 0.8 and 0.4 (test_split.py's experiments), feedback on every request, served until
the stopping rule fires or 20,000 requests; per ``refresh_every`` (1 is sequential Thompson
sampling) the mean regret (requests' expected loss against the best arm) and requests to the
stop, with standard errors, and how many runs chose the right winner. Numbers are for this
machine only (the timings); the statistics are the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

#: name -> (arms, share of requests followed by feedback)
WORKLOADS = {
    "2 arms, feedback every call": (2, 1.0),
    "3 arms, feedback every call": (3, 1.0),
    "2 arms, feedback 1 in 10": (2, 0.1),
    "2 arms, no feedback": (2, 0.0),
}
ARMS = ("bench/arm-a", "bench/arm-b", "bench/arm-c")
MEANS = (0.50, 0.55, 0.45)


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _worker() -> None:
    import random

    import aigw_lab
    from aigw_lab.policy import AdaptiveSplit
    from aigw_lab.types import ChatRequest

    request = ChatRequest.create("ad", "hello")
    print(json.dumps({"ready": True, "aigw_lab": aigw_lab.__file__}), flush=True)

    def policy_for(arms: int, seed: int) -> AdaptiveSplit:
        # Built the same way in both trees: the new one at its defaults.
        policy = AdaptiveSplit("ad", ARMS[:arms], min_samples=30, confidence=0.999, seed=seed)
        rng = random.Random(seed)
        for _ in range(200):
            for target, mean in zip(ARMS[:arms], MEANS, strict=False):
                policy.record(target, 1.0 if rng.random() < mean else 0.0)
        return policy

    def serve(policy: AdaptiveSplit, requests: int, share: float, seed: int) -> list[float]:
        rng = random.Random(seed + 1)
        means = dict(zip(ARMS, MEANS, strict=True))
        # Which requests get feedback, and the uniform draw that makes it a Bernoulli at the
        # chosen arm's mean, drawn before the clock starts.
        plan = [(rng.random() < share, rng.random()) for _ in range(requests)]
        decide, record = policy.decide, policy.record
        wall, cpu = time.perf_counter(), time.process_time()
        for feedback, u in plan:
            target = decide(request).target
            if feedback:
                record(target, 1.0 if u < means[target] else 0.0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if policy.winner is not None:  # a stop would make the rest trivial: say so
            raise RuntimeError("the policy stopped during the workload; raise confidence")
        return [wall / requests * 1e6, cpu / requests * 1e6]

    seed = 0
    for line in sys.stdin:
        requests = int(line)
        out = {}
        for name, (arms, share) in WORKLOADS.items():
            seed += 1
            out[name] = serve(policy_for(arms, seed), requests, share, seed)
        print(json.dumps(out), flush=True)


# --- where a request's CPU goes, this tree ----------------------------------------------


def _breakdown(requests: int, rounds: int) -> None:
    import random

    from aigw_lab.policy import AdaptiveSplit
    from aigw_lab.types import ChatRequest

    request = ChatRequest.create("ad", "hello")
    parts: dict[str, list[float]] = {"decide": [], "record": [], "decide + record": []}
    for r in range(rounds):
        policy = AdaptiveSplit("ad", ARMS[:2], min_samples=30, confidence=0.999, seed=r)
        rng = random.Random(r)
        for _ in range(200):
            policy.record(ARMS[0], float(rng.random() < MEANS[0]))
            policy.record(ARMS[1], float(rng.random() < MEANS[1]))
        policy.decide(request)
        values = [float(rng.random() < 0.5) for _ in range(requests)]
        cpu = time.process_time()
        for _ in values:  # no feedback in between: the snapshot stays
            policy.decide(request)
        parts["decide"].append((time.process_time() - cpu) / requests * 1e6)
        cpu = time.process_time()
        for i, value in enumerate(values):  # the stopping rule's check included
            policy.record(ARMS[i % 2], value)
        parts["record"].append((time.process_time() - cpu) / requests * 1e6)
        cpu = time.process_time()
        for value in values:  # a refresh every 100 feedbacks
            policy.record(policy.decide(request).target, value)
        parts["decide + record"].append((time.process_time() - cpu) / requests * 1e6)
    print("\nwhere a request's CPU goes (this tree, 2 arms, defaults; median [range], µs):")
    for name, values in parts.items():
        print(
            f"  {name:<16} {statistics.median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]"
        )


# --- fewer grid points for the integral: time against error, this tree -----------------


def _grid_study(posteriors: int, reference: int = 262_144) -> None:
    # A study, not the product: it sets the module's grid size, then puts it back.
    import random

    import aigw_lab.policy.adaptive as adaptive

    rng = random.Random(0)
    cases = []
    for _ in range(posteriors):
        arms = []
        for _ in range(rng.choice((2, 3))):
            n, mean = rng.choice((5, 30, 200, 2_000, 20_000)), rng.random()
            arms.append((1.0 + n * mean, 1.0 + n - n * mean))
        cases.append(arms)
    shipped = adaptive._GRID
    try:
        adaptive._GRID = reference
        exact = [adaptive.thompson_probabilities(c) for c in cases]
        print(
            f"\nthompson_probabilities by grid size: {posteriors} random posteriors (2-3 arms, "
            f"5-20,000 observations), error against a {reference:,}-point grid"
        )
        for grid in (shipped, 1024, 256):
            adaptive._GRID = grid
            cpu = time.process_time()
            got = [adaptive.thompson_probabilities(c) for c in cases]
            cpu = (time.process_time() - cpu) / posteriors * 1e6
            errors = [
                max(abs(a - b) for a, b in zip(g, e, strict=True))
                for g, e in zip(got, exact, strict=True)
            ]
            print(
                f"  {grid:>6} points: {cpu:6.1f} µs CPU per call, max error {max(errors):.2e},"
                f" median {statistics.median(errors):.2e}"
            )
    finally:
        adaptive._GRID = shipped


# --- the cost in statistics: sequential against batched, this tree ----------------------

EXPERIMENTS = {
    "2 arms 0.3/0.6": {ARMS[0]: 0.3, ARMS[1]: 0.6},
    "3 arms 0.5/0.8/0.4": {ARMS[0]: 0.5, ARMS[1]: 0.8, ARMS[2]: 0.4},
}


def _regret(runs: int, refreshes: tuple[int, ...]) -> None:
    import random

    from aigw_lab.policy import AdaptiveSplit
    from aigw_lab.types import ChatRequest

    request = ChatRequest.create("ad", "hello")
    print(
        f"\n{'experiment':<20} {'refresh_every':>13} {'regret (± se)':>18} "
        f"{'requests to stop (± se)':>24} {'right':>6} {'CPU s':>6}"
    )
    for name, means in EXPERIMENTS.items():
        best = max(means.values())
        for every in refreshes:
            regrets, steps, right = [], [], 0
            cpu = time.process_time()
            for seed in range(runs):
                policy = AdaptiveSplit(
                    "ad", list(means), min_samples=20, seed=seed, refresh_every=every,
                    clock=lambda: 0.0,
                )  # fmt: skip
                rng = random.Random(10_000 + seed)
                regret, served = 0.0, 0
                while served < 20_000:
                    target = policy.decide(request).target
                    served += 1
                    regret += best - means[target]
                    if policy.winner is not None:
                        break
                    policy.record(target, 1.0 if rng.random() < means[target] else 0.0)
                regrets.append(regret)
                steps.append(served)
                right += policy.winner == max(means, key=means.__getitem__)
            cpu = time.process_time() - cpu
            print(
                f"{name:<20} {every:>13} {_mean_se(regrets):>18} {_mean_se(steps):>24} "
                f"{right:>3}/{runs:<2} {cpu:6.1f}"
            )
    print(
        "Seeded runs (policy seed i, feedback seed 10,000 + i): the same runs for every "
        "refresh_every; regret is summed up to the stop (after it every request goes to the "
        "winner, which adds 0 when it is the best arm)."
    )


def _mean_se(values: list[float]) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:,.1f} ± {se:,.1f}"


# --- the parent: starts the workers and interleaves them ---------------------------------


def _row(values: list[list[float]], i: int) -> tuple[float, float, float]:
    column = [v[i] for v in values]
    return statistics.median(column), min(column), max(column)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    parser.add_argument(
        "--requests", type=int, default=5000, help="requests per workload and round (5,000)"
    )
    parser.add_argument(
        "--regret-runs", type=int, default=40, help="seeded runs per setting (default 40)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 rounds of 1,500 requests, 10 regret runs"
    )
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.regret_runs = 5, 1500, 10
    sides = old_vs_new.sides(parser, args.old_tree, marker="policy/adaptive.py")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        list(WORKLOADS),
        rounds=args.rounds,
        line=str(args.requests),
        warm_up=str(max(1, args.requests // 10)),
        seed=args.seed,
    )
    load_after = os.getloadavg()
    print(
        f"bench_adaptive_split: {started}, {args.rounds} rounds of {args.requests:,} requests "
        f"per workload; Python {platform.python_version()}, {os.cpu_count()} CPUs; load "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"{'workload':<30} {'side':<11} {'wall µs/req [range]':>24} {'CPU µs/req [range]':>24}"
        f" {'decisions/s':>12}"
    )
    for name in WORKLOADS:
        med = {}
        for side in sides:
            wall, cpu = _row(results[side][name], 0), _row(results[side][name], 1)
            med[side] = (wall[0], cpu[0])
            print(
                f"{name:<30} {side:<11} {wall[0]:9.2f} [{wall[1]:.2f}-{wall[2]:.2f}]"
                f"{'':>3} {cpu[0]:9.2f} [{cpu[1]:.2f}-{cpu[2]:.2f}] {1e6 / wall[0]:12,.0f}"
            )
        old, new, again = med["old"], med["new"], med["new, again"]
        print(
            f"{'':<30} new/old: wall {new[0] / old[0]:.4f}, CPU {new[1] / old[1]:.4f};"
            f" again/new: wall {again[0] / new[0]:.3f}, CPU {again[1] / new[1]:.3f}"
        )
    print(
        "Per request: decide, plus record when the request has feedback. new/old: this tree "
        "over the old one; again/new: two identical copies of this tree (the noise floor). "
        "Medians over rounds, ranges over rounds."
    )
    _breakdown(args.requests, args.rounds)
    _grid_study(100 if args.quick else 400)
    if args.regret_runs > 0:
        _regret(args.regret_runs, (1, 10, 100, 1000))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
