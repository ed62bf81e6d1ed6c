"""How close and how much cheaper all-MiniLM-L6-v2-int8 (or, with ``--other static``, the
static all-MiniLM-L6-v2-static256) is than all-MiniLM-L6-v2.

Embeds a seeded sample of RouteLLM prompts (GSM8K and MT-Bench) one text per call, as a
served router does, with both embedders on one torch thread, interleaved (fp32 then int8,
then int8 then fp32, ...), and prints:

- per-prompt wall and CPU time (p50, mean) of each, and the int8/fp32 ratios;
- the cosine similarity of the two vectors of each prompt (min, p5, median), when both
  have the same dimensions (int8); for the static embedder, whose 256-dimension space is not
  MiniLM's, how well its pairwise similarities between the sample's prompts agree with
  MiniLM's (Pearson and Spearman correlation over all pairs);
- how often a prompt's 10 nearest neighbours among the sample are the same under both.

Both run in this one process on a shared machine: compare the columns of one run, not runs.

    python bench/bench_int8_embedder.py [--n 200] [--data-dir DIR] [--seed 0] [--other static]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np


def sample_prompts(n: int, seed: int, data_dir: str | None) -> list[str]:
    from aigw_lab.cli.policy import load_data

    prompts: list[str] = []
    for name in ("routellm/gsm8k", "routellm/mt_bench"):
        prompts.extend(item.prompt for item in load_data(name, data_dir).items)
    prompts = sorted(set(prompts))
    return random.Random(seed).sample(prompts, min(n, len(prompts)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="prompts in the sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="shared data folder")
    parser.add_argument(
        "--other",
        choices=("int8", "static"),
        default="int8",
        help="the embedder compared with float32 MiniLM: int8 (all-MiniLM-L6-v2-int8) or "
        "static (all-MiniLM-L6-v2-static256, distilled on first use)",
    )
    args = parser.parse_args()

    import torch

    from aigw_lab.embeddings import INT8_MODEL
    from aigw_lab.policy.learned.features import make_embedder
    from aigw_lab.static_embedder import STATIC_MODEL

    torch.set_num_threads(1)  # what a served router's deciding thread uses
    prompts = sample_prompts(args.n, args.seed, args.data_dir)
    other = args.other
    embedders = {
        "fp32": make_embedder(None),
        other: make_embedder(INT8_MODEL if other == "int8" else STATIC_MODEL),
    }
    for embedder in embedders.values():
        embedder.embed(["warm-up: load the model"])
    wall: dict[str, list[float]] = {name: [] for name in embedders}
    cpu: dict[str, list[float]] = {name: [] for name in embedders}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    names = list(embedders)
    for n, prompt in enumerate(prompts):
        for name in names if n % 2 == 0 else names[::-1]:
            w, c = time.perf_counter(), time.process_time()
            vectors[name].append(embedders[name].embed([prompt])[0])
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)

    print(f"{len(prompts)} prompts (GSM8K + MT-Bench, seed {args.seed}), one text per call,")
    print("one torch thread, interleaved; shared 2-core machine")
    print(f"  {'':5} {'wall p50':>9} {'wall mean':>10} {'CPU p50':>8} {'CPU mean':>9}  (ms)")
    for name in names:
        print(
            f"  {name:5} {1000 * statistics.median(wall[name]):9.2f} "
            f"{1000 * statistics.fmean(wall[name]):10.2f} "
            f"{1000 * statistics.median(cpu[name]):8.2f} {1000 * statistics.fmean(cpu[name]):9.2f}"
        )
    for label, series in (("wall", wall), ("CPU", cpu)):
        ratio = statistics.median(series[other]) / statistics.median(series["fp32"])
        mean_ratio = statistics.fmean(series[other]) / statistics.fmean(series["fp32"])
        print(f"  {other}/fp32 {label}: p50 {ratio:.2f}x, mean {mean_ratio:.2f}x")

    a, b = np.stack(vectors["fp32"]), np.stack(vectors[other])
    if a.shape == b.shape:
        cosine = (a * b).sum(axis=1)
        print(
            f"cosine(fp32, {other}): min {cosine.min():.4f}, p5 "
            f"{np.percentile(cosine, 5):.4f}, median {np.median(cosine):.4f}"
        )
    upper = np.triu_indices(len(prompts), 1)
    pairs_a, pairs_b = (a @ a.T)[upper], (b @ b.T)[upper]
    ranks_a, ranks_b = pairs_a.argsort().argsort(), pairs_b.argsort().argsort()
    print(
        f"pairwise cosines over {len(pairs_a)} prompt pairs, fp32 vs {other}: Pearson "
        f"{np.corrcoef(pairs_a, pairs_b)[0, 1]:.3f}, Spearman "
        f"{np.corrcoef(ranks_a, ranks_b)[0, 1]:.3f}"
    )
    k = min(10, len(prompts) - 1)
    overlap = []
    for sims_a, sims_b, i in zip(a @ a.T, b @ b.T, range(len(prompts)), strict=True):
        sims_a[i] = sims_b[i] = -np.inf  # a prompt is not its own neighbour
        top_a = set(np.argsort(-sims_a)[:k])
        top_b = set(np.argsort(-sims_b)[:k])
        overlap.append(len(top_a & top_b) / k)
    print(f"{k} nearest neighbours shared by fp32 and {other}: mean {np.mean(overlap):.1%}")


if __name__ == "__main__":
    main()
