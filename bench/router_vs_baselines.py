"""One learned router cross-fitted beside its baselines on a recorded dataset, with the
paired gains `policy train` prints (random routing, the zero router, the oracle, prompt
length, category/subject lookup), on ALL the dataset's items (no held-out split).

    python bench/router_vs_baselines.py --data routellm/mmlu --router stacked --seeds 5

Prints `format_baseline_table` and the router's paired difference with the best trivial
baseline. MiniLM embeddings come from the on-disk cache (embedded once).
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

from aigw_lab.cli.policy_data import load_data
from aigw_lab.policy.evaluate import compare_with_baselines, format_baseline_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="routellm/mmlu")
    parser.add_argument("--router", default="stacked")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    data = load_data(args.data, None)
    wall, cpu = time.perf_counter(), time.process_time()
    result = compare_with_baselines(
        data, args.router, seeds=args.seeds, folds=args.folds, n_boot=args.n_boot
    )
    print(format_baseline_table(result))
    print(
        f"{args.data}, {len(data)} items; {date.today()}, {platform.machine()} "
        f"{platform.system()}; {time.perf_counter() - wall:.0f} s wall, "
        f"{time.process_time() - cpu:.0f} s CPU"
    )


if __name__ == "__main__":
    main()
