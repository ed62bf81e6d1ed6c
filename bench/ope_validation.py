"""Off-policy evaluation validated where the truth is known (issue 12 §3).

Simulated production traffic is logged by an exploring policy (`Exploring` around a rule,
epsilon 0.2: its real ``decide``, its logged propensities); each candidate policy's value
is then estimated from those logs alone (`evaluate_policy`: naive, dm, ips, snips, dr with
percentile-bootstrap 95% intervals) and compared with its true value:

- **fleet**: the simulated fleet over datasets/mixed_v1.jsonl (156 items, 6 categories),
  targets sim-nano / sim-small / sim-large. A call's reward is Bernoulli with the model's
  known probability for the item's category and difficulty (`SimModel.p_correct`); the
  truth is exact: the mean over items of sum_a pi(a|x) p(x, a). SIMULATED: no real model.
- **routellm-gsm8k / routellm-mmlu**: RouteLLM's recorded GPT-4 vs Mixtral outcomes (real
  outputs, correctness labels; shared data). Each call draws an item uniformly from the
  recorded set (traffic), the logging policy picks one model, the reward is that model's
  recorded label; the truth is the candidate's mean label over the whole recorded set.

Over ``--seeds`` seeds (new traffic and new exploration draws per seed) it prints, per
setting, candidate and estimator: the share of seeds whose interval covers the truth (with
its Wilson 95% interval), the bias (mean error, with a 95% interval over seeds), the RMSE,
the mean interval width and the mean effective sample size. The naive estimate (mean
reward where the candidate agrees with the logged choice) is the baseline the others must
beat on bias. Run: ``python bench/ope_validation.py`` (defaults: 60 seeds, 300 bootstrap
draws per estimate, fewer than the library's default 500, to keep the run to minutes on a
2-core shared box). Costs are estimated by the same code but not validated here.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aigw_lab.analysis.breakdown import wilson_interval  # noqa: E402
from aigw_lab.datasets.bundled import load_bundled  # noqa: E402
from aigw_lab.errors import ConfigError  # noqa: E402
from aigw_lab.policy import (  # noqa: E402
    Exploring,
    LoggedBandit,
    Rules,
    WeightedSplit,
    candidate_probabilities,
    evaluate_policy,
)
from aigw_lab.policy.ope import ESTIMATORS  # noqa: E402
from aigw_lab.sim.catalog import DEFAULT_MODELS, approx_tokens  # noqa: E402
from aigw_lab.types import ChatRequest  # noqa: E402

EPSILON = 0.2


@dataclass
class Setting:
    """One validation world: items (requests), targets, true rewards per item x target
    (probabilities, or recorded labels), costs, groups, the logging policy, candidates."""

    name: str
    requests: list[ChatRequest]
    targets: tuple[str, ...]
    truth: np.ndarray  # items x targets: P(correct) or the recorded label
    bernoulli: bool  # draw rewards from truth (fleet) or take them as they are (recorded)
    costs: np.ndarray  # items x targets, USD
    groups: np.ndarray
    logging_base: Rules
    candidates: dict[str, object]
    calls: int


def fleet_setting(calls: int) -> Setting:
    items = load_bundled("mixed_v1")
    models = {m.id: m for m in DEFAULT_MODELS}
    ids = ("sim-nano", "sim-small", "sim-large")
    targets = tuple(f"sim-openai/{m}" for m in ids)
    nano, small, large = targets
    truth = np.array(
        [
            [models[m].p_correct(i["category"], i.get("difficulty", "medium")) for m in ids]
            for i in items
        ]
    )
    costs = np.array(
        [
            [
                (
                    approx_tokens(i["prompt"]) * models[m].price.input_per_mtok
                    + approx_tokens(str(i["reference"])) * models[m].price.output_per_mtok
                )
                / 1e6
                for m in ids
            ]
            for i in items
        ]
    )
    requests = [
        ChatRequest.create("m", i["prompt"], tags={"category": i["category"]}) for i in items
    ]
    # Logging: small by default, large for arithmetic, nano for classification.
    base = Rules(
        "logging",
        [({"category": ["arithmetic"]}, large), ({"category": ["classification"]}, nano)],
        default=small,
    )
    candidates = {
        "by-category": Rules.by_category(
            "c1",
            {
                "arithmetic": large,
                "factual_qa": large,
                "multiple_choice": large,
                "classification": nano,
                "extraction": small,
                "summarisation": large,
            },
            default=small,
        ),
        "always-large": Rules("c2", [], default=large),
        "split-nano/large": WeightedSplit("c3", {nano: 1, large: 1}),
    }
    return Setting(
        name="fleet (simulated)",
        requests=requests,
        targets=targets,
        truth=truth,
        bernoulli=True,
        costs=costs,
        groups=np.array([i["category"] for i in items], dtype=object),
        logging_base=base,
        candidates=candidates,
        calls=calls,
    )


def routellm_setting(benchmark: str, calls: int) -> Setting | None:
    # lazy: pandas and the shared data load only when this setting runs
    from aigw_lab.datasets.recorded_sources import load_routellm

    try:
        data = load_routellm(benchmark)
    except ConfigError as exc:
        print(f"routellm-{benchmark}: skipped ({exc.message})")
        return None
    strong, weak = data.models  # gpt-4-1106-preview, Mixtral
    targets = (f"routellm/{strong}", f"routellm/{weak}")
    scores = data.wide_scores().loc[:, [strong, weak]]
    keep = scores.notna().all(axis=1)
    items = [i for i in data.items if keep[i.id]]
    truth = scores[keep].to_numpy(dtype=float)
    cost_frame = data.outcomes.pivot(index="item_id", columns="model", values="cost_usd")
    costs = cost_frame.reindex(index=[i.id for i in items], columns=[strong, weak])
    costs = costs.fillna(0.0).to_numpy(dtype=float)
    requests = [
        ChatRequest.create("m", i.prompt, tags={"category": i.category or ""}) for i in items
    ]
    lengths = np.array([len(i.prompt) for i in items])
    median = int(np.median(lengths))
    high = int(np.percentile(lengths, 75))
    # Logging: long prompts to GPT-4, the rest to Mixtral (a context-dependent logger, so
    # the naive estimate is biased).
    base = Rules("logging", [({"min_chars": median}, targets[0])], default=targets[1])
    candidates = {
        "always-gpt4": Rules("c1", [({"min_chars": 10**9}, targets[1])], default=targets[0]),
        "longest-25%-to-gpt4": Rules("c2", [({"min_chars": high}, targets[0])], default=targets[1]),
        "split-50/50": WeightedSplit("c3", {targets[0]: 1, targets[1]: 1}),
    }
    return Setting(
        name=f"routellm-{benchmark} (recorded)",
        requests=requests,
        targets=targets,
        truth=truth,
        bernoulli=False,
        costs=costs,
        groups=np.array([i.category or "" for i in items], dtype=object),
        logging_base=base,
        candidates=candidates,
        calls=calls,
    )


def simulate(setting: Setting, seed: int) -> tuple[LoggedBandit, np.ndarray]:
    """One day of traffic: ``calls`` items drawn uniformly, logged by the exploring policy.
    Returns the logged bandit and the item index of each call."""
    rng = np.random.default_rng(seed)
    explore = Exploring(setting.logging_base, epsilon=EPSILON, seed=seed)
    index = {t: j for j, t in enumerate(setting.targets)}
    items = rng.integers(0, len(setting.requests), size=setting.calls)
    actions = np.empty(setting.calls, dtype=int)
    propensities = np.empty(setting.calls)
    for c, item in enumerate(items):
        decision = explore.decide(setting.requests[item])
        actions[c] = index[decision.target]
        propensities[c] = decision.propensity
    chosen = setting.truth[items, actions]
    rewards = (rng.random(setting.calls) < chosen).astype(float) if setting.bernoulli else chosen
    data = LoggedBandit(
        targets=setting.targets,
        actions=actions,
        propensities=propensities,
        rewards=rewards,
        # Costs are left out: the coverage of the quality estimates is what is validated
        # here, and a second bootstrap per estimate would double the run time.
        costs=None,
        groups=setting.groups[items],
    )
    return data, items


def run(settings: list[Setting], seeds: int, n_boot: int) -> None:
    pooled = {e: [0, 0] for e in ESTIMATORS}
    header = (
        f"{'setting':<26}{'candidate':<22}{'truth':>7}  {'estimator':<7}"
        f"{'coverage [95% CI]':>22}{'bias [95% CI over seeds]':>30}{'RMSE':>8}{'width':>8}"
        f"{'ESS':>8}"
    )
    print(header)
    print("-" * len(header))
    for setting in settings:
        item_pi = {
            name: candidate_probabilities(policy, setting.requests, setting.targets)
            for name, policy in setting.candidates.items()
        }
        truths = {
            name: float((pi * setting.truth).sum(axis=1).mean()) for name, pi in item_pi.items()
        }
        errors = {(c, e): [] for c in item_pi for e in ESTIMATORS}
        covered = {(c, e): 0 for c in item_pi for e in ESTIMATORS}
        widths = {(c, e): [] for c in item_pi for e in ESTIMATORS}
        ess = {c: [] for c in item_pi}
        for seed in range(seeds):
            data, items = simulate(setting, seed)
            for name, pi in item_pi.items():
                result = evaluate_policy(data, pi[items], n_boot=n_boot, seed=seed)
                ess[name].append(result.diagnostics.ess)
                for e in ESTIMATORS:
                    est = result.quality[e]
                    errors[(name, e)].append(est.value - truths[name])
                    covered[(name, e)] += est.covers(truths[name])
                    widths[(name, e)].append(est.high - est.low)
        for name in item_pi:
            for e in ESTIMATORS:
                err = np.array(errors[(name, e)])
                bias = err.mean()
                half = 1.96 * err.std(ddof=1) / math.sqrt(len(err))
                rmse = math.sqrt((err**2).mean())
                k = covered[(name, e)]
                pooled[e][0] += k
                pooled[e][1] += seeds
                low, high = wilson_interval(k, seeds)
                print(
                    f"{setting.name:<26}{name:<22}{truths[name]:>7.4f}  {e:<7}"
                    f"{k / seeds:>7.1%} [{low:.0%}, {high:.0%}]".ljust(22 + 26 + 22 + 16)
                    + f"{bias:>+11.4f} [{bias - half:+.4f}, {bias + half:+.4f}]"
                    f"{rmse:>8.4f}{np.mean(widths[(name, e)]):>8.4f}"
                    f"{np.mean(ess[name]):>8.0f}"
                )
        print()
    print("pooled over every setting and candidate (seed x candidate runs):")
    for e in ESTIMATORS:
        k, n = pooled[e]
        low, high = wilson_interval(k, n)
        print(f"  {e:<7} coverage {k / n:.1%} [{low:.1%}, {high:.1%}] over {n} runs")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=60)
    parser.add_argument("--boot", type=int, default=300, help="bootstrap draws per estimate")
    parser.add_argument("--fleet-calls", type=int, default=1500)
    parser.add_argument("--routellm-calls", type=int, default=1500)
    parser.add_argument("--only", choices=("fleet", "gsm8k", "mmlu"), default=None)
    args = parser.parse_args()
    started, cpu = time.perf_counter(), time.process_time()
    print(
        f"ope_validation.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  "
        f"{platform.machine()} {platform.system()}, {_cores()} cores (shared box)  "
        f"seeds={args.seeds} bootstrap={args.boot} epsilon={EPSILON}"
    )
    settings: list[Setting] = []
    if args.only in (None, "fleet"):
        settings.append(fleet_setting(args.fleet_calls))
    for benchmark in ("gsm8k", "mmlu"):
        if args.only in (None, benchmark):
            found = routellm_setting(benchmark, args.routellm_calls)
            if found is not None:
                settings.append(found)
    print(
        "calls per seed: "
        + ", ".join(f"{s.name}: {s.calls} over {len(s.requests)} items" for s in settings)
    )
    print()
    run(settings, args.seeds, args.boot)
    print(
        f"wall {time.perf_counter() - started:.0f} s, CPU {time.process_time() - cpu:.0f} s. "
        "coverage: share of seeds whose bootstrap 95% interval holds the true value; bias: "
        "mean (estimate - truth); width: mean interval width; ESS: mean effective sample size "
        "of the importance weights."
    )


def _cores() -> int:
    # lazy: only the banner needs it
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
