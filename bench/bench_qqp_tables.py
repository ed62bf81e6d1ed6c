"""What notebook 03's QQP cell costs with and without sharing the embeddings of its two tables.

The cell builds a plain and a guarded `threshold_table` over the same 150 Quora Question Pairs.
``separate`` calls both tables with the model itself (each embeds all 300 texts, as the notebook
did before); ``shared`` wraps the model in an in-memory `CachedEmbedder` (the notebook now), so
the second table reads the vectors the first computed. The two sides alternate (separate then
shared, then shared then separate, ...) in this one process, after one warm-up embedding, and
the tables are checked equal. Prints CPU and wall seconds per round and the shared/separate
ratios of the medians. Compare the columns of one run, not runs (a shared machine).

    python bench/bench_qqp_tables.py [--rounds 4] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per side (default 4)")
    parser.add_argument(
        "--data-dir", default=None, help="the shared data folder (default: found as the tests do)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aigw_lab.datasets import shared_data_dir_or_none
    from aigw_lab.embedding_cache import CachedEmbedder
    from aigw_lab.embeddings import SentenceTransformerEmbedder
    from aigw_lab.evaluation.semantic_cache_eval import load_qqp_pairs, threshold_table

    data = args.data_dir or shared_data_dir_or_none()
    if data is None:
        raise SystemExit("no shared data folder: pass --data-dir")
    pairs_file = os.path.join(data, "gptcache_semantic_cache_pairs", "similiar_qqp_full.json.gz")
    qqp = load_qqp_pairs(pairs_file, sample=150, seed=0)  # as in the notebook
    thresholds = [0.95, 0.92, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6]
    model = SentenceTransformerEmbedder()
    model.embed(["warm-up"])

    def separate() -> tuple:
        return threshold_table(qqp, model, thresholds), threshold_table(
            qqp, model, thresholds, guards=True
        )

    def shared() -> tuple:
        embedder = CachedEmbedder(model, memory=2 * len(qqp))
        return threshold_table(qqp, embedder, thresholds), threshold_table(
            qqp, embedder, thresholds, guards=True
        )

    sides = {"separate": separate, "shared": shared}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    results = {}
    for n in range(args.rounds):
        order = ["separate", "shared"] if n % 2 == 0 else ["shared", "separate"]
        for name in order:
            cpu, wall = time.process_time(), time.perf_counter()
            results[name] = sides[name]()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            times[name].append((cpu, wall))
            print(f"round {n} {name:9s} cpu {cpu:6.2f} s wall {wall:6.2f} s")
    assert all(a.equals(b) for a, b in zip(results["separate"], results["shared"], strict=True))
    med = {name: [statistics.median(t[i] for t in times[name]) for i in (0, 1)] for name in sides}
    print(f"median separate: cpu {med['separate'][0]:.2f} s, wall {med['separate'][1]:.2f} s")
    print(f"median shared:   cpu {med['shared'][0]:.2f} s, wall {med['shared'][1]:.2f} s")
    print(
        f"shared/separate: cpu {med['shared'][0] / med['separate'][0]:.2f}x, "
        f"wall {med['shared'][1] / med['separate'][1]:.2f}x"
    )


if __name__ == "__main__":
    main()
