"""What the semantic cache's verification stage costs: one verification, and one lookup.

1. Per verification, over realistic pairs (GPTCache's mock_data paraphrases and Quora
   pairs from the shared data when present, and the dev near-miss generator's pairs), CPU
   and wall time p50/p99 of:
   - ``cosine``: the cosine-only path (the threshold comparison, the baseline);
   - ``guards``: the number and negation guards as the cache ran them before (markers
     compared; the query's computed per lookup, the stored ones kept with the entry);
   - ``verifier, cold``: `LexicalVerifier` reading both texts from scratch;
   - ``verifier, warm``: the stored text's profile memoised (it recurs across lookups),
     the query read fresh: what a lookup pays.
   The sides run interleaved, pair by pair, in rounds; ratios are against ``cosine``.
2. End to end: `SemanticCache.lookup` over the mock_data origins (or the dev pairs), with
   the verifier and without it (``verifier=None``: the old guards), interleaved. The
   hashing embedder by default (the cache's own machinery); ``--model`` uses MiniLM, whose
   embedding then dominates.

    python bench/bench_verifier.py [--rounds 5] [--model]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from near_miss_dev import generate  # noqa: E402  (a sibling script)


def _pairs(limit: int) -> list[tuple[str, str, str]]:
    from aigw_lab.datasets import shared_data_dir_or_none
    from aigw_lab.evaluation.semantic_cache_eval import load_mock_pairs, load_qqp_pairs

    pairs = [(str(r["text_b"]), str(r["text_a"]), "dev") for r in generate(0, 30)]
    data = shared_data_dir_or_none()
    if data is not None:
        folder = Path(data) / "gptcache_semantic_cache_pairs"
        pairs += [(s, o, "mock_data") for o, s in load_mock_pairs(folder / "mock_data.json")]
        qqp = load_qqp_pairs(folder / "similiar_qqp_full.json.gz", sample=1000, seed=1)
        pairs += [(a, b, "qqp") for a, b, _ in qqp]
    return pairs[:limit]


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0  # ns -> µs


def per_verification(pairs, rounds: int) -> None:
    from aigw_lab.gateway.semantic_match import same_meaning_markers
    from aigw_lab.gateway.semantic_verify import LexicalVerifier

    stored_markers = [same_meaning_markers(c) for _, c, _ in pairs]
    warm = LexicalVerifier(memo=len(pairs) + 10)
    for _, cached, _ in pairs:
        warm.profile(cached)

    def cosine(i, q, c):
        return 0.93 >= 0.9

    def guards(i, q, c):
        return same_meaning_markers(q) == stored_markers[i]

    unmemoised = LexicalVerifier(memo=0)  # reads both texts on every call

    def cold(i, q, c):
        return unmemoised.accept(q, c, 0.93)

    def warm_side(i, q, c):
        warm._memo.pop(q, None)  # the query is new; the stored text was read before
        return warm.accept(q, c, 0.93)

    sides = {
        "cosine": cosine,
        "guards": guards,
        "verifier, cold": cold,
        "verifier, warm": warm_side,
    }
    wall = {name: [] for name in sides}
    cpu = {name: [] for name in sides}
    names = list(sides)
    by_source: dict[str, list[int]] = {}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for i, (q, c, source) in enumerate(pairs):
            for name in order:
                fn = sides[name]
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                fn(i, q, c)
                c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
                if name == "verifier, warm":
                    by_source.setdefault(source, []).append(c1 - c0)
    base_wall, base_cpu = _pct(wall["cosine"], 0.5), _pct(cpu["cosine"], 0.5)
    print(f"## One verification: {len(pairs)} pairs x {rounds} rounds, interleaved\n")
    print("| side | wall p50 µs | wall p99 µs | CPU p50 µs | CPU p99 µs | wall p50 / cosine |")
    print("|---|---|---|---|---|---|")
    for name in names:
        w50, w99 = _pct(wall[name], 0.5), _pct(wall[name], 0.99)
        c50, c99 = _pct(cpu[name], 0.5), _pct(cpu[name], 0.99)
        print(
            f"| {name} | {w50:.1f} | {w99:.1f} | {c50:.1f} | {c99:.1f} | "
            f"x{w50 / max(base_wall, 1e-3):.0f} |"
        )
    print(
        f"\n(cosine p50 is the timer's own floor: wall {base_wall:.2f} µs, CPU {base_cpu:.2f} µs; "
        "the target is 2,000 µs p50 per verification)\n"
    )
    print("verifier, warm, CPU by source (mean words per text):\n")
    for source, values in by_source.items():
        texts = [t for q, c, s in pairs if s == source for t in (q, c)]
        words = statistics.mean(len(t.split()) for t in texts)
        print(
            f"- {source}: p50 {_pct(values, 0.5):.1f} µs, p99 {_pct(values, 0.99):.1f} µs "
            f"({words:.0f} words)"
        )
    print()


def per_lookup(pairs, rounds: int, model: bool) -> None:
    from aigw_lab import ChatRequest
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.gateway.semantic_cache import SemanticCache
    from aigw_lab.types import ChatResponse, Usage

    if model:
        from aigw_lab.embeddings import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
        threshold = 0.9
    else:
        embedder = HashingEmbedder(256)
        threshold = 0.5  # the double's scale: enough candidates pass to be verified
    stored = list(dict.fromkeys(c for _, c, _ in pairs))
    queries = [q for q, _, _ in pairs]
    answer = ChatResponse(text="a", finish_reason="stop", usage=Usage(), provider="p", model="m")
    caches = {
        "verifier": SemanticCache(embedder, threshold=threshold, max_entries=len(stored) + 1),
        "off (old guards)": SemanticCache(
            embedder, threshold=threshold, verifier=None, max_entries=len(stored) + 1
        ),
    }
    vectors = embedder.embed(stored)
    for cache in caches.values():
        for text, vector in zip(stored, vectors, strict=True):
            plan = cache._plan_for(ChatRequest.create("m", text), "p", "m")
            cache._insert(plan.partition, plan.text, vector, answer, 0.0, None)
    requests = [ChatRequest.create("m", q) for q in queries]
    wall = {name: [] for name in caches}
    cpu = {name: [] for name in caches}
    served = {name: 0 for name in caches}
    names = list(caches)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for request in requests:
            for name in order:
                cache = caches[name]
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                match = cache.lookup(request, provider="p", model="m")
                c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
                served[name] += match is not None
    print(
        f"## SemanticCache.lookup: {len(stored)} entries, {len(requests)} queries x {rounds} "
        f"rounds, {embedder.name}, threshold {threshold}, interleaved\n"
    )
    print("| side | wall p50 µs | wall p99 µs | CPU p50 µs | CPU p99 µs | served |")
    print("|---|---|---|---|---|---|")
    for name in names:
        print(
            f"| {name} | {_pct(wall[name], 0.5):.1f} | {_pct(wall[name], 0.99):.1f} | "
            f"{_pct(cpu[name], 0.5):.1f} | {_pct(cpu[name], 0.99):.1f} | {served[name]} |"
        )
    ratio = statistics.median(wall["verifier"]) / statistics.median(wall["off (old guards)"])
    cpu_ratio = statistics.median(cpu["verifier"]) / statistics.median(cpu["off (old guards)"])
    print(f"\nverifier / off, median per lookup: wall x{ratio:.2f}, CPU x{cpu_ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3000, help="pairs at most (default 3000)")
    parser.add_argument("--model", action="store_true", help="MiniLM for the lookups")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pairs = _pairs(args.pairs)
    print(f"# bench_verifier.py ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)\n")
    per_verification(pairs, args.rounds)
    per_lookup(pairs, max(1, args.rounds // 2), args.model)


if __name__ == "__main__":
    main()
