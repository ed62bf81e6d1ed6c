"""Does a router trained with one embedder route as well as one trained with another? A paired
bootstrap of the difference in held-out APGR, CPT(50%) and CPT(80%) between two policy files
trained on the same data, split and router (e.g. `aigw-lab policy train --embedder
all-MiniLM-L6-v2` and ``--embedder all-MiniLM-L6-v2-int8``).

Each policy scores the held-out items with its own embedder (through the on-disk embedding
cache); every bootstrap resample of the items scores both routers on the same items, so the
interval is that of the difference (an interval containing 0: no difference detected).
Uses the evaluation code of `aigw-lab policy evaluate` (RouteLLM's threshold sweep).

    python bench/compare_embedder_quality.py BASE.json OTHER.json [--n-boot 1000]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="policy file (e.g. trained with all-MiniLM-L6-v2)")
    parser.add_argument("other", help="policy file (e.g. trained with all-MiniLM-L6-v2-int8)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--data-dir", help="shared data folder")
    parser.add_argument("--cache-dir", help="embedding cache folder")
    args = parser.parse_args()

    from aigw_lab.cli.policy import held_out_split, use_cached_embedder
    from aigw_lab.policy.evaluate.metrics import apgr, bootstrap_metric, cpt, threshold_sweep
    from aigw_lab.policy.evaluate.offline import recorded_arrays
    from aigw_lab.policy.policyfile import load_policy

    routers = [load_policy(path) for path in (args.base, args.other)]
    tests = [held_out_split(r, None, args.data_dir) for r in routers]
    if tests[0].ids != tests[1].ids:
        raise SystemExit("the two policies were not trained on the same split: not comparable")
    test = tests[0]
    scores = []
    for router in routers:
        use_cached_embedder(router, args.cache_dir)
        scores.append(router.strong_scores_from(router.embed([i.prompt for i in test.items])))
    models = list(routers[0].train_info["models"])
    strong_model = models[routers[0].targets().index(str(routers[0].strong))]
    weak_model = models[routers[0].targets().index(str(routers[0].weak))]
    quality, _ = recorded_arrays(test, models)
    strong = quality[:, models.index(strong_model)]
    weak = quality[:, models.index(weak_model)]

    def metric(kind: str, which: int | None):  # noqa: ANN202 - a closure per metric
        def one(idx: np.ndarray, k: int) -> float:
            s, w = strong[idx], weak[idx]
            curve = threshold_sweep(scores[k][idx], s, w)
            if kind == "APGR":
                return apgr(curve, w.mean(), s.mean())
            return cpt(curve, w.mean(), s.mean(), 0.5 if kind == "CPT(50%)" else 0.8)

        if which is not None:
            return lambda idx: one(idx, which)
        return lambda idx: one(idx, 1) - one(idx, 0)

    names = [f"{r.embedder_name}" for r in routers]
    print(
        f"{len(test)} held-out items of {routers[0].train_info.get('data')}; "
        f"{names[1]} minus {names[0]}, paired bootstrap ({args.n_boot} resamples, 95%)"
    )
    for kind in ("APGR", "CPT(50%)", "CPT(80%)"):
        cis = [bootstrap_metric(metric(kind, k), len(test), n_boot=args.n_boot) for k in (0, 1)]
        diff = bootstrap_metric(metric(kind, None), len(test), n_boot=args.n_boot)
        print(
            f"  {kind:9} base {cis[0].value:.3f} [{cis[0].low:.3f}, {cis[0].high:.3f}]  "
            f"other {cis[1].value:.3f} [{cis[1].low:.3f}, {cis[1].high:.3f}]  "
            f"difference {diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
        )
    agree = float(np.corrcoef(scores[0], scores[1])[0, 1])
    print(f"  correlation of the two routers' strong-win scores on these items: {agree:.3f}")


if __name__ == "__main__":
    main()
