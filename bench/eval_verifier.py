"""Dev numbers for the semantic cache's verification stage: what it refuses and what it
keeps, before (cosine alone; cosine and today's number/negation guards) and after (cosine
and `LexicalVerifier`), at the cache's threshold, with Wilson 95% intervals over items and
the spread over generator seeds.

Sets (all offline; the shared data is read where it lies, never copied):

- the DEV near-miss set from ``bench/near_miss_dev.py`` (seeds 0-4): near-miss false-hit
  rate and paraphrase-control hit rate, per category;
- the bundled ``datasets/pairs/semantic_near_misses.jsonl`` (number, negation, paraphrase);
- GPTCache's ``mock_data.json`` under GPTCache's protocol (every origin cached, every
  ``similar`` a query; the best of the top 4 above the threshold that passes is served):
  correct and wrong hits, as ``aigw_lab.evaluation.semantic_cache_eval.gptcache_protocol``
  counts them (its guards column is checked equal to ours);
- Quora Question Pairs, 2,000 sampled with seed 0: precision and recall.

Embeddings come from all-MiniLM-L6-v2 through an on-disk `EmbeddingCache` (default
``/tmp/aigw-verify-emb``), so a second run costs seconds.

    HF_HUB_OFFLINE=1 python bench/eval_verifier.py [--threshold 0.9] [--qqp 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from near_miss_dev import generate  # noqa: E402  (a sibling script)


def _wilson(k: int, n: int) -> str:
    from aigw_lab.analysis.breakdown import wilson_interval

    low, high = wilson_interval(k, n)
    return f"{k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}]" if n else "0/0"


def _modes():
    from aigw_lab.gateway.semantic_match import same_meaning_markers
    from aigw_lab.gateway.semantic_verify import LexicalVerifier

    verifier = LexicalVerifier()
    return {
        "cosine": lambda q, c: True,
        "guards": lambda q, c: same_meaning_markers(q) == same_meaning_markers(c),
        "verifier": lambda q, c: verifier.accept(q, c, 1.0),
    }


def _pair_similarity(embedder, a: list[str], b: list[str]) -> np.ndarray:
    return np.einsum("ij,ij->i", embedder.embed(a), embedder.embed(b))


def pair_hits(rows, embedder, threshold, modes):
    """Per mode, per (category, same_meaning): hits among pairs, text_b asked after text_a."""
    sim = _pair_similarity(embedder, [r["text_a"] for r in rows], [r["text_b"] for r in rows])
    out = {m: defaultdict(lambda: [0, 0]) for m in modes}
    for row, s in zip(rows, sim, strict=True):
        key = (row["category"], bool(row["same_meaning"]))
        for name, passes in modes.items():
            cell = out[name][key]
            cell[1] += 1
            cell[0] += int(s >= threshold and passes(row["text_b"], row["text_a"]))
    return out, sim


def gptcache(pairs, embedder, threshold, modes, top_k=4):
    origins = [o for o, _ in pairs]
    queries = [q for _, q in pairs]
    sim = embedder.embed(queries) @ embedder.embed(origins).T
    ranked = np.argsort(-sim, axis=1, kind="stable")[:, :top_k]
    result = {}
    for name, passes in modes.items():
        correct = wrong = 0
        for q, candidates in enumerate(ranked):
            for c in candidates:
                if sim[q, c] < threshold:
                    break
                if not passes(queries[q], origins[c]):
                    continue
                if origins[c] == origins[q]:
                    correct += 1
                else:
                    wrong += 1
                break
        result[name] = (correct, wrong)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-category", type=int, default=40)
    parser.add_argument("--qqp", type=int, default=2000, help="QQP pairs per sample (0: skip)")
    parser.add_argument("--qqp-seeds", type=int, default=3, help="QQP samples (seeds 0..n-1)")
    parser.add_argument("--cache", default="/tmp/aigw-verify-emb")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aigw_lab.datasets import shared_data_dir_or_none
    from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache
    from aigw_lab.embeddings import SentenceTransformerEmbedder
    from aigw_lab.evaluation.semantic_cache_eval import (
        gptcache_protocol,
        load_mock_pairs,
        load_near_miss_pairs,
        load_qqp_pairs,
    )

    embedder = CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(args.cache))
    modes = _modes()
    t = args.threshold
    started = time.time()
    print(f"# Verifier dev evaluation, threshold {t}, {embedder.name}\n")

    # --- the dev near-miss set, per seed ---------------------------------------------------
    per_seed: dict[str, list[float]] = defaultdict(list)
    pooled = {m: defaultdict(lambda: [0, 0]) for m in modes}
    unthresholded = defaultdict(lambda: [0, 0])
    for seed in range(args.seeds):
        rows = generate(seed, args.per_category)
        counts, _ = pair_hits(rows, embedder, t, modes)
        for mode, cells in counts.items():
            for key, (k, n) in cells.items():
                pooled[mode][key][0] += k
                pooled[mode][key][1] += n
            fh = sum(k for (c, same), (k, n) in cells.items() if not same)
            nn = sum(n for (c, same), (k, n) in cells.items() if not same)
            ph = sum(k for (c, same), (k, n) in cells.items() if same)
            pn = sum(n for (c, same), (k, n) in cells.items() if same)
            per_seed[f"{mode} false-hit"].append(fh / nn)
            per_seed[f"{mode} paraphrase hit"].append(ph / pn)
        for row in rows:  # the verifier alone, whatever the similarity
            cell = unthresholded[(row["category"], bool(row["same_meaning"]))]
            cell[1] += 1
            cell[0] += int(modes["verifier"](row["text_b"], row["text_a"]))
    print(f"## Dev near-miss set (bench/near_miss_dev.py, seeds 0-{args.seeds - 1})\n")
    print("Pooled over seeds; Wilson 95% over pairs. near = near misses (a hit is wrong),")
    print("para = paraphrase controls (a hit is right).\n")
    print("| category | kind | cosine | cosine + guards | cosine + verifier | verifier alone |")
    print("|---|---|---|---|---|---|")
    categories = sorted({c for c, _ in pooled["cosine"]})
    for same in (False, True):
        for c in [*categories, "ALL"]:
            cells = []
            for mode in (*modes, "alone"):
                source = unthresholded if mode == "alone" else pooled[mode]
                keys = [(x, same) for x in categories] if c == "ALL" else [(c, same)]
                k = sum(source[key][0] for key in keys)
                n = sum(source[key][1] for key in keys)
                cells.append(_wilson(k, n))
            print(f"| {c} | {'para' if same else 'near'} | " + " | ".join(cells) + " |")
    print("\nSpread over seeds (mean, min-max):\n")
    for name, values in per_seed.items():
        print(f"- {name}: {statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")

    # --- the bundled near misses -------------------------------------------------------------
    bundled = [
        {**r, "category": r["kind"]} for r in load_near_miss_pairs()
    ]  # kind: number, negation, paraphrase
    counts, _ = pair_hits(bundled, embedder, t, modes)
    print("\n## Bundled near misses (datasets/pairs/semantic_near_misses.jsonl)\n")
    print("| kind | cosine | cosine + guards | cosine + verifier |")
    print("|---|---|---|---|")
    for key in sorted(counts["cosine"]):
        print(f"| {key[0]} | " + " | ".join(_wilson(*counts[m][key]) for m in modes) + " |")

    data = shared_data_dir_or_none()
    if data is None:
        print("\nno shared data folder: GPTCache and QQP skipped")
        return
    pairs_dir = Path(data) / "gptcache_semantic_cache_pairs"
    mock = load_mock_pairs(pairs_dir / "mock_data.json")
    result = gptcache(mock, embedder, t, modes)
    reference = gptcache_protocol(mock, embedder, [t], guards=True).iloc[0]
    assert (reference.correct, reference.wrong) == result["guards"], "protocol drifted"
    print(f"\n## GPTCache protocol on mock_data.json ({len(mock)} queries)\n")
    print("| mode | correct (recall) | wrong | correct vs cosine alone |")
    print("|---|---|---|---|")
    base = result["cosine"][0]
    for mode, (correct, wrong) in result.items():
        print(f"| {mode} | {_wilson(correct, len(mock))} | {wrong} | {correct / base:.3f} |")

    if args.qqp:
        path = pairs_dir / "similiar_qqp_full.json.gz"
        spread: dict[tuple[str, str], list[float]] = defaultdict(list)
        for seed in range(args.qqp_seeds):
            qqp = load_qqp_pairs(path, sample=args.qqp, seed=seed)
            rows = [
                {"text_a": a, "text_b": b, "category": "qqp", "same_meaning": d} for a, b, d in qqp
            ]
            counts, _ = pair_hits(rows, embedder, t, modes)
            print(f"\n## Quora Question Pairs ({len(qqp)}, seed {seed})\n")
            print("| mode | precision | recall | false-hit rate |")
            print("|---|---|---|---|")
            for mode in modes:
                tp, pos = counts[mode][("qqp", True)]
                fp, neg = counts[mode][("qqp", False)]
                spread[(mode, "precision")].append(tp / (tp + fp))
                spread[(mode, "recall")].append(tp / pos)
                print(
                    f"| {mode} | {_wilson(tp, tp + fp)} | {_wilson(tp, pos)} | {_wilson(fp, neg)} |"
                )
        print(f"\nQQP over {args.qqp_seeds} samples (mean, min-max):\n")
        for (mode, what), values in spread.items():
            print(
                f"- {mode} {what}: {statistics.mean(values):.3f} "
                f"({min(values):.3f}-{max(values):.3f})"
            )
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
