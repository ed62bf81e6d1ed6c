"""Does a kNN router trained on one embedder route as well as one trained on another, across
split seeds? Held-out APGR and CPT(50%) per dataset and seed, with bootstrap intervals over
the held-out items, beside RouteLLM's random router and the oracle on the same items.

For each ``--data`` and each ``--seeds`` seed the data is split as `aigw-lab policy train`
splits it (test 20%, calibration 20%, training the rest), a kNN router is trained on the
training split with each ``--embedders`` embedder (vectors from the on-disk embedding cache
when present), and scores the test items; the metrics come from the evaluation code of
`aigw-lab policy evaluate` (RouteLLM's threshold sweep). Then, per dataset, the mean and
standard deviation over seeds of each embedder's metric and of its difference from the
first embedder (a seed-to-seed spread: the noise a difference has to beat), and the paired
bootstrap interval of that difference pooled over seeds.

    python bench/embedder_quality_seeds.py --data routellm/gsm8k routellm/mt_bench \\
        --seeds 0 1 2 3 4 --embedders all-MiniLM-L6-v2 all-MiniLM-L6-v2-static256
    python bench/embedder_quality_seeds.py --data routellm/mmlu --subset 3000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import random
import statistics

import numpy as np

STRONG, WEAK = "gpt-4-1106-preview", "Mixtral-8x7B-Instruct-v0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["routellm/gsm8k", "routellm/mt_bench"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--embedders", nargs="+", default=["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-static256"]
    )
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument(
        "--subset",
        type=int,
        help="use a seeded random sample of this many items of each dataset (seed 0), e.g. "
        "to compare on MMLU without embedding all 14k prompts with every embedder",
    )
    parser.add_argument("--data-dir", help="shared data folder")
    parser.add_argument("--cache-dir", help="embedding cache folder")
    args = parser.parse_args()

    from aigw_lab.cli.policy import load_data, split_three
    from aigw_lab.policy.evaluate.metrics import (
        apgr,
        bootstrap_metric,
        cpt,
        oracle_curve,
        random_scores,
        threshold_sweep,
    )
    from aigw_lab.policy.evaluate.offline import recorded_arrays
    from aigw_lab.policy.learned import train_router
    from aigw_lab.policy.learned.features import cached_embedder, make_embedder

    embedders = {
        name: cached_embedder(make_embedder(name), args.cache_dir) for name in args.embedders
    }
    base = args.embedders[0]
    print(f"kNN router, held-out 20%, {args.n_boot} bootstrap resamples (95%); shared machine")
    for data_name in args.data:
        data = load_data(data_name, args.data_dir)
        if args.subset and args.subset < len(data):
            data = data.subset(random.Random(0).sample(sorted(data.ids), args.subset))
        per_seed: dict[str, dict[str, list[float]]] = {}
        pooled: dict[str, list[tuple[np.ndarray, ...]]] = {name: [] for name in embedders}
        print(f"\n{data_name}" + (f" (a sample of {len(data)} items)" if args.subset else ""))
        for seed in args.seeds:
            train, _, test = split_three(data, 0.2, 0.2, seed)
            quality, _ = recorded_arrays(test, [STRONG, WEAK])
            strong, weak = quality[:, 0], quality[:, 1]
            scores = {"random": random_scores(len(test), seed=seed)}
            for name, embedder in embedders.items():
                router = train_router(train, "knn", models=[STRONG, WEAK], embedder=embedder)
                prompts = [item.prompt for item in test.items]
                scores[name] = router.strong_scores_from(router.embed(prompts))
                pooled[name].append((scores[name], strong, weak))

            def one(kind: str, s: np.ndarray, idx: np.ndarray, strong=strong, weak=weak) -> float:
                st, wk = strong[idx], weak[idx]
                curve = threshold_sweep(s[idx], st, wk)
                if kind == "APGR":
                    return apgr(curve, wk.mean(), st.mean())
                return cpt(curve, wk.mean(), st.mean(), 0.5)

            oracle = oracle_curve(strong, weak)
            line = [f"  seed {seed} ({len(test)} items)"]
            for kind in ("APGR", "CPT(50%)"):
                for name, s in scores.items():
                    ci = bootstrap_metric(
                        lambda idx, s=s, kind=kind: one(kind, s, idx),
                        len(test),
                        n_boot=args.n_boot,
                        seed=seed,
                    )
                    per_seed.setdefault(f"{kind} {name}", {}).setdefault("v", []).append(ci.value)
                    line.append(f"{kind} {name} {ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}]")
                oracle_value = (
                    apgr(oracle, weak.mean(), strong.mean())
                    if kind == "APGR"
                    else cpt(oracle, weak.mean(), strong.mean(), 0.5)
                )
                line.append(f"{kind} oracle {oracle_value:.3f}")
            print("\n    ".join(line))
        print("  over seeds (mean, sd):")
        for key, values in per_seed.items():
            v = values["v"]
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            print(f"    {key:<40} {statistics.fmean(v):.3f} sd {sd:.3f}")
        for kind in ("APGR", "CPT(50%)"):
            for name in args.embedders[1:]:
                diffs = [
                    a - b
                    for a, b in zip(
                        per_seed[f"{kind} {name}"]["v"],
                        per_seed[f"{kind} {base}"]["v"],
                        strict=True,
                    )
                ]
                sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
                print(
                    f"    {kind} {name} minus {base}: per seed "
                    f"{', '.join(f'{d:+.3f}' for d in diffs)}; mean {statistics.fmean(diffs):+.3f} "
                    f"sd {sd:.3f}"
                )
                pooled_diff = _pooled_difference(kind, pooled[base], pooled[name], args.n_boot, one)
                print(f"      paired bootstrap over items and seeds: {pooled_diff}")


def _pooled_difference(kind, base, other, n_boot, one_metric) -> str:  # noqa: ANN001
    """Mean over seeds of (other - base), resampling each seed's items jointly for both."""
    import numpy as np

    from aigw_lab.policy.evaluate.metrics import apgr, cpt, threshold_sweep

    rng = np.random.default_rng(0)

    def metric(s, strong, weak, idx):  # noqa: ANN001, ANN202
        curve = threshold_sweep(s[idx], strong[idx], weak[idx])
        if kind == "APGR":
            return apgr(curve, weak[idx].mean(), strong[idx].mean())
        return cpt(curve, weak[idx].mean(), strong[idx].mean(), 0.5)

    def mean_diff(draw: bool) -> float:
        diffs = []
        for (sb, st, wk), (so, _, _) in zip(base, other, strict=True):
            idx = rng.integers(0, len(st), len(st)) if draw else np.arange(len(st))
            diffs.append(metric(so, st, wk, idx) - metric(sb, st, wk, idx))
        return float(np.nanmean(diffs))

    value = mean_diff(False)
    reps = np.array([mean_diff(True) for _ in range(n_boot)])
    reps = reps[~np.isnan(reps)]
    low, high = np.percentile(reps, [2.5, 97.5])
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


if __name__ == "__main__":
    main()
