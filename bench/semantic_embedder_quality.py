"""What a faster embedder costs the semantic cache in quality, on the tables MiniLM is
published on (docs/semantic_cache.md), each embedder at its own calibrated threshold.

    python bench/semantic_embedder_quality.py [--int8] [--dev 2000] [--test 2000]

Protocol (decided before any test figure was seen; nothing is tuned on a test set):

1. Calibration, on development data only: a Quora Question Pairs sample drawn with seed 1
   (``--dev`` pairs) with every pair of the test sample (seed 0) removed. MiniLM keeps its
   default threshold, 0.9. Every other embedder gets the most permissive threshold on a
   0.005 grid whose false-hit rate on the dev sample (pairs labelled different that the
   cache serves) is at most MiniLM's at 0.9 there: it may serve as many wrong answers as
   MiniLM, then we see what recall it keeps. All through the cache's defaults (guards and
   the lexical verifier).
2. Test tables, with Wilson 95% intervals, each embedder at its calibrated threshold and
   (for reference) at 0.9: GPTCache's mock_data.json (999 paraphrase queries; recall, wrong
   answers), Quora seed-0 sample (``--test`` pairs; precision, recall, false hits), and the
   held-out near-miss set ``datasets/pairs/near_miss_test_v1.jsonl`` (false hits on its 298
   near misses, recall on its 220 controls). Each pair goes through a real `SemanticCache`
   (`aigw_lab.evaluation.cache_runs`), as the published MiniLM tables do.

MiniLM's vectors come from the on-disk embedding cache when present (the same texts were
embedded for docs/semantic_cache.md). Needs the shared data folder; exits 2 without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from aigw_lab.embedder_names import FAST_EMBEDDER, embedder_by_name
from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache
from aigw_lab.embeddings import DEFAULT_MODEL, INT8_MODEL
from aigw_lab.evaluation.cache_runs import (
    cache_variants,
    gptcache_rates,
    overall_rates,
    precomputed,
    qqp_rates,
    served,
)
from aigw_lab.evaluation.pairs import LabelledPair, Rate, load_near_miss_test
from aigw_lab.evaluation.semantic_cache_eval import load_mock_pairs, load_qqp_pairs

MINILM_THRESHOLD = 0.9
GRID = np.round(np.arange(0.50, 0.9951, 0.005), 3)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def as_labelled(pairs: list[tuple[str, str, bool]]) -> list[LabelledPair]:
    return [
        LabelledPair(id=str(n), a=a, b=b, same=dup, category="same" if dup else "different")
        for n, (a, b, dup) in enumerate(pairs)
    ]


def false_hits_by_threshold(pairs: list[LabelledPair], embedder, variant) -> dict[float, Rate]:
    """False-hit rate over the grid. With one entry stored, the cache serves a pair exactly
    when the verifier accepts it and the cosine reaches the threshold, so the verifier runs
    once per pair (at the lowest threshold) and the grid is a comparison of cosines."""
    accepted = served(pairs, embedder, variant, 1e-6)
    a = embedder.embed([p.a for p in pairs])
    b = embedder.embed([p.b for p in pairs])
    cosine = np.einsum("ij,ij->i", a, b)
    different = np.array([not p.same for p in pairs])
    out = {}
    for t in GRID:
        hit = accepted & (cosine >= t - 1e-6)
        out[float(t)] = Rate(int((hit & different).sum()), int(different.sum()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--int8", action="store_true", help="also all-MiniLM-L6-v2-int8")
    parser.add_argument("--dev", type=int, default=2000, help="Quora dev pairs (seed 1)")
    parser.add_argument("--test", type=int, default=2000, help="Quora test pairs (seed 0)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        mock = load_mock_pairs()
        test_qqp = load_qqp_pairs(sample=args.test, seed=0)
        seen = set(test_qqp)
        dev_qqp = [p for p in load_qqp_pairs(sample=args.dev + len(seen), seed=1) if p not in seen]
        dev_qqp = dev_qqp[: args.dev]
    except OSError as exc:
        print(f"the shared data folder is needed: {exc}", file=sys.stderr)
        return 2
    near = load_near_miss_test()
    dev = as_labelled(dev_qqp)
    variant = next(v for v in cache_variants() if v.name == "verifier")  # the defaults
    names = [DEFAULT_MODEL, FAST_EMBEDDER] + ([INT8_MODEL] if args.int8 else [])
    texts = [t for p in dev for t in (p.a, p.b)] + [t for p in near for t in (p.a, p.b)]
    texts += [t for pair in mock for t in pair] + [t for a, b, _ in test_qqp for t in (a, b)]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs ({load()}); dev: Quora "
        f"seed 1, {len(dev)} pairs ({sum(not p.same for p in dev)} different); test: "
        f"mock_data {len(mock)}, Quora seed 0 {len(test_qqp)}, near-miss {len(near)}",
        flush=True,
    )
    embedders = {}
    for name in names:
        c0, t0 = time.process_time(), time.perf_counter()
        embedder = CachedEmbedder(embedder_by_name(name), EmbeddingCache())
        embedders[name] = precomputed(embedder, texts)
        print(
            f"embedded {len(set(texts))} texts with {name}: {time.perf_counter() - t0:.1f} s "
            f"wall, {time.process_time() - c0:.1f} s CPU (cached vectors reused)",
            flush=True,
        )
    curves = {name: false_hits_by_threshold(dev, e, variant) for name, e in embedders.items()}
    budget = curves[DEFAULT_MODEL][MINILM_THRESHOLD]
    thresholds = {DEFAULT_MODEL: MINILM_THRESHOLD}
    for name in names[1:]:
        fits = [t for t, r in curves[name].items() if r.hits <= budget.hits]
        thresholds[name] = min(fits) if fits else float(GRID[-1])
    print(f"\ncalibration (dev): MiniLM at 0.9 serves false hits {budget}")
    for name, t in thresholds.items():
        print(f"  {name}: threshold {t:.3f}, dev false hits {curves[name][t]}")
    rows = []
    for name in names:
        for t in sorted({thresholds[name], MINILM_THRESHOLD}, reverse=True):
            e = embedders[name]
            g = gptcache_rates(mock, e, variant, t)
            q = qqp_rates(test_qqp, e, variant, t)
            n = overall_rates(near, served(near, e, variant, t))
            rows.append((name, t, t == thresholds[name], g, q, n))
            print(f"measured {name} at {t:.3f} ({load()})", flush=True)
    print(
        "\n| embedder | threshold | GPTCache recall | GPTCache wrong | Quora precision | "
        "Quora recall | Quora false hits | near-miss false hits | near-miss control recall |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t, calibrated, g, q, n in rows:
        mark = " (calibrated)" if calibrated else ""
        cells = [
            g["recall"],
            g["wrong"],
            q["precision"],
            q["recall"],
            q["false_hits"],
            n["false_hits"],
            n["recall"],
        ]
        print(f"| {name} | {t:.3f}{mark} | " + " | ".join(_cell(r) for r in cells) + " |")
    return 0


def _cell(rate: Rate) -> str:
    low, high = rate.interval
    return f"{rate.rate:.3f} [{low:.3f}, {high:.3f}]"


if __name__ == "__main__":
    raise SystemExit(main())
