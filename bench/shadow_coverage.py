"""Do the shadow report's intervals cover the truth? A measurement on the simulated fleet.

    python bench/shadow_coverage.py [--fleet-seeds 5] [--draw-seeds 40] [--share 0.3]
                                    [--live sim-openai/sim-small]
                                    [--candidate sim-anthropic/sim-sonnetish]

Everything here is SIMULATED (docs/simulated_fleet.md): the fleet's answers on the bundled
dataset (mixed_v1, 156 items) are right with known per-model probabilities.

For each fleet seed, every item is sent to the live target through a gateway whose
`Shadow` has share 1.0, so every live call has its candidate answer; scored with the
``auto`` scorer against the items' references, these pairs give the *truth*: the
candidate's net win rate (win 1, tie 0.5, loss 0) and win share over all the traffic.
Then, for each draw seed, a shadow at ``--share`` is replayed on that traffic: a live call
is shadowed when ``random.Random(draw_seed).random() < share``, one draw per call in
order, which is exactly the draw `Shadow` makes (checked below by a real run at draw seed
0 for every fleet seed: the same calls are shadowed and the outcomes agree; answers at
temperature 0 do not depend on call order). `summarise` reports on the sampled pairs; the
script counts how often the 95% intervals (bootstrap over pairs for the net win rate,
Wilson for the win share) hold the truth, with a Wilson interval on that coverage, and the
estimates' bias and spread. The sampled pairs are a sample without replacement of a
finite traffic, so intervals built for independent draws should over-cover slightly.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from aigw_lab import Gateway
from aigw_lab.analysis.breakdown import wilson_interval
from aigw_lab.analysis.stats import bootstrap_mean_ci
from aigw_lab.datasets import bundled_dataset
from aigw_lab.experiments.shadow_report import shadow_report, summarise
from aigw_lab.gateway import Shadow
from aigw_lab.store import CallLog


def _run(path: Path, fleet_seed: int, live: str, candidate: str, share: float, draw: int):
    """Every bundled item sent to ``live`` on a fleet seeded ``fleet_seed``, shadowed to
    ``candidate`` at ``share``; the scored pairs (a DataFrame)."""
    dataset = bundled_dataset()
    shadow = Shadow(
        candidate, share=share, budget_usd=100.0, max_in_flight=256, rng=random.Random(draw)
    )
    with Gateway.simulated_fleet(
        seed=fleet_seed, time_scale=0.0, log=str(path), shadow=shadow
    ) as gw:
        for item in dataset:
            gw.chat(live, item.prompt, system=item.system, max_tokens=300)
    with CallLog(path) as log:
        return shadow_report(log, scorer="auto", dataset=dataset, write=False).pairs


def _t_interval(values: list[float]) -> tuple[float, float]:
    # lazy: scipy is not a dependency of aigw_lab; this comparison needs its t quantile
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return (float("nan"), float("nan"))
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t.ppf(0.975, n - 1) * sd / n**0.5
    return (mean - half, mean + half)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleet-seeds", type=int, default=5)
    parser.add_argument("--draw-seeds", type=int, default=40)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--live", default="sim-openai/sim-small")
    parser.add_argument("--candidate", default="sim-anthropic/sim-sonnetish")
    args = parser.parse_args(argv)
    started = time.perf_counter(), time.process_time()
    covered_net: list[bool] = []
    covered_win: list[bool] = []
    # Two other intervals for the net win rate, for comparison: Wilson on win + tie/2 (a
    # [0, 1] value's variance is at most a coin's with the same mean), and Student's t.
    covered_wilson_net: list[bool] = []
    covered_t_net: list[bool] = []
    # The plain percentile bootstrap (the report adds one win and one loss), and t with them.
    covered_bootstrap_plain: list[bool] = []
    covered_t_plus: list[bool] = []
    errors_net: list[float] = []
    widths_net: list[float] = []
    pairs_per_run: list[int] = []
    print(
        f"shadow_coverage (SIMULATED): live {args.live}, candidate {args.candidate}, share "
        f"{args.share}, {args.fleet_seeds} fleet seeds x {args.draw_seeds} draw seeds; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"{'fleet seed':>10} {'pairs':>6} {'true net':>9} {'true win':>9} {'check':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for fleet_seed in range(args.fleet_seeds):
            full = _run(
                Path(folder) / f"full{fleet_seed}.duckdb",
                fleet_seed,
                args.live,
                args.candidate,
                1.0,
                0,
            )
            scored = full[full["outcome"].notna()]
            values = {"win": 1.0, "tie": 0.5, "loss": 0.0}
            true_net = statistics.fmean(values[o] for o in scored["outcome"])
            true_win = float((scored["outcome"] == "win").mean())
            # The replayed draws must be the real shadow's: one real run at draw seed 0.
            real = _run(
                Path(folder) / f"real{fleet_seed}.duckdb",
                fleet_seed,
                args.live,
                args.candidate,
                args.share,
                0,
            )
            draws = random.Random(0)
            mask = [draws.random() < args.share for _ in range(len(full))]
            replayed = full[mask]
            same = list(replayed["request_json"]) == list(real["request_json"]) and list(
                replayed["outcome"]
            ) == list(real["outcome"])
            print(
                f"{fleet_seed:>10} {len(full):>6} {true_net:>9.3f} {true_win:>9.3f} "
                f"{'ok' if same else 'DIFFERS':>6}"
            )
            for draw_seed in range(args.draw_seeds):
                draws = random.Random(draw_seed)
                sample = full[[draws.random() < args.share for _ in range(len(full))]]
                report = summarise(sample, seed=draw_seed, n_boot=2000)
                covered_net.append(report.net.low <= true_net <= report.net.high)
                covered_win.append(report.win.low <= true_win <= report.win.high)
                scores = [values[o] for o in sample["outcome"] if o in values]
                low, high = wilson_interval(sum(scores), len(scores))
                covered_wilson_net.append(low <= true_net <= high)
                low, high = _t_interval(scores)
                covered_t_net.append(low <= true_net <= high)
                low, high = _t_interval([*scores, 1.0, 0.0])
                covered_t_plus.append(low <= true_net <= high)
                plain = bootstrap_mean_ci(np.asarray(scores), n_boot=2000, seed=draw_seed)
                covered_bootstrap_plain.append(plain.low <= true_net <= plain.high)
                errors_net.append(report.net.mean - true_net)
                widths_net.append(report.net.high - report.net.low)
                pairs_per_run.append(report.n_scored)
    runs = len(covered_net)
    for name, covered in (
        ("net win rate (bootstrap +1 win +1 loss, as reported)", covered_net),
        ("net win rate (plain percentile bootstrap)", covered_bootstrap_plain),
        ("net win rate (Wilson on win + tie/2)", covered_wilson_net),
        ("net win rate (Student's t)", covered_t_net),
        ("net win rate (Student's t, +1 win +1 loss)", covered_t_plus),
        ("win share (Wilson, as reported)", covered_win),
    ):
        hits = sum(covered)
        low, high = wilson_interval(hits, runs)
        print(
            f"coverage of the true {name}: {hits}/{runs} = {hits / runs:.3f} "
            f"[{low:.3f}, {high:.3f}] (95% Wilson over runs; nominal 0.95)"
        )
    print(
        f"net win rate estimate - truth: mean {statistics.fmean(errors_net):+.4f}, sd "
        f"{statistics.stdev(errors_net):.4f}; interval width mean "
        f"{statistics.fmean(widths_net):.3f}; scored pairs per run mean "
        f"{statistics.fmean(pairs_per_run):.1f}"
    )
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    print(f"took {wall:.0f} s wall, {cpu:.0f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
