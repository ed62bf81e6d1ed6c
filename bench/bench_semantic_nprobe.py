"""The default ``nprobe`` of `BackgroundIVFIndex` (issue 13 §3: lookup p50 < 1 ms at 1M entries
with recall@1 >= 0.98): lookup time and recall at several nprobe, re-rank depths and an
adaptive nprobe, on real prompts and on synthetic vectors, every side interleaved query by
query (random order each time) with exact search over the same vectors.

    python bench/bench_semantic_nprobe.py --quick     # real prompts (~151k) + 200k synthetic
    python bench/bench_semantic_nprobe.py --size 1000000 --vectors synthetic static

Unlike ``bench_semantic_index.py`` the index is built directly (every vector added at once,
the build run in this thread), not filled by callers: this measures lookups only.

Sides: ``nprobe=N`` (clusters searched), ``rerank=R`` (SQ8 candidates re-scored exactly, at
the default nprobe), ``default`` (the index's own search: since session 11 a second pass at
``deep_nprobe`` when the best is below ``deep_below``), ``adaptive A->B@T`` (the same done
from outside with two searches: at nprobe A; again at B only when the best found is below
similarity T: a cache serves only at or above its threshold, 0.9 by default,
so a lookup that already found a close entry need not search further). Recall@1 is
against exact search, on near-duplicates of stored vectors (cosine 0.95), on fresh queries
(not stored; for real prompts: held-out prompts, many of them paraphrases of stored ones),
and on the fresh queries whose exact best is at least 0.9 (those a cache would serve).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _semantic_layouts import load  # bench/ is the script's folder, on sys.path
from bench_semantic_index import cached_synthetic, exact_view, near, pct, recall, static_vectors

from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex


def cached_static() -> np.ndarray | None:
    """`static_vectors` (real prompts, embedded), kept in /tmp between runs (embedding them
    takes minutes)."""
    path = Path(tempfile.gettempdir()) / "aigw-bench-semantic/static-prompts.npy"
    if path.exists():
        return np.load(path)
    vectors = static_vectors()
    if vectors is not None:
        path.parent.mkdir(exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), vectors)
        path.with_suffix(".tmp.npy").replace(path)
    return vectors


def build(stored: np.ndarray, nlist: int, nprobe: int) -> BackgroundIVFIndex:
    """An index over ``stored``, its build run here (not on a maintenance thread)."""
    jobs: list = []
    index = BackgroundIVFIndex(stored.shape[1], nlist=nlist, nprobe=nprobe, spawn=jobs.append)
    wall, cpu = time.perf_counter(), time.process_time()
    index.add_many(np.arange(len(stored)), stored)
    while jobs:
        jobs.pop(0)()
    print(
        f"  built {index!r} in {time.perf_counter() - wall:.1f} s wall, "
        f"{time.process_time() - cpu:.1f} s CPU ({load()})"
    )
    return index


def sides(index: BackgroundIVFIndex, args: argparse.Namespace) -> list:
    ivf, default, rerank = index._ivf, index.nprobe, index.rerank
    deep = getattr(index, "deep_nprobe", None), getattr(index, "deep_below", None)

    def at(nprobe: int, depth: int = rerank):
        def search(q, k):  # one pass (the index's own second pass off)
            ivf.nprobe, index.rerank, index.deep_nprobe = nprobe, depth, None
            return index.search(q, k)

        return search

    def adaptive(first: int, then: int, below: float):
        def search(q, k):  # two calls from outside, as before the index did it itself
            ivf.nprobe, index.rerank, index.deep_nprobe = first, rerank, None
            found = index.search(q, k)
            if found and found[0][1] >= below:
                return found
            ivf.nprobe = then
            return index.search(q, k)

        return search

    def built_in(q, k):  # the index's default search (session 11: adaptive inside)
        ivf.nprobe, index.rerank = default, rerank
        index.deep_nprobe, index.deep_below = deep
        return index.search(q, k)

    out = [(f"nprobe={n}" + (" (one pass)" if n == default else ""), at(n)) for n in args.nprobes]
    if deep[0] is not None:
        out.append((f"default {default}->{deep[0]}@{deep[1]}", built_in))
    out += [(f"rerank={r}", at(default, r)) for r in args.reranks]
    for spec in args.adaptive:  # "4:12@0.93"
        steps, below = spec.split("@")
        first, then = (int(s) for s in steps.split(":"))
        out.append((f"adaptive {first}->{then}@{below}", adaptive(first, then, float(below))))
    return out


def run(name: str, vectors: np.ndarray, args: argparse.Namespace) -> None:
    held = min(2000, len(vectors) // 10)
    fresh, stored = vectors[:held], np.ascontiguousarray(vectors[held:])
    print(f"\n== {name}: {len(stored):,} entries x {stored.shape[1]} dims ({load()})")
    index = build(stored, args.nlist, args.nprobe)
    exact = exact_view(stored)
    rng = np.random.default_rng(2)
    n = args.queries
    dups = near(rng, stored[rng.choice(len(stored), n, replace=False)])
    all_sides = [*sides(index, args), ("exact", exact.search)]
    times = {s: [] for s, _ in all_sides}
    cpus = {s: [] for s, _ in all_sides}
    found = {s: [] for s, _ in all_sides}
    order = np.random.default_rng(3)
    print(f"  lookups: {n} near-duplicates + {min(n, len(fresh))} fresh ({load()})")
    for kind, queries in (("dup", dups), ("fresh", fresh[:n])):
        for q in queries:
            for j in order.permutation(len(all_sides)).tolist():
                side, search = all_sides[j]
                w, c = time.perf_counter(), time.thread_time()
                best = search(q, 4)
                times[side].append(time.perf_counter() - w)
                cpus[side].append(time.thread_time() - c)
                found[side].append((kind, best[0][0], best[0][1]))
    print(f"  done ({load()})")
    ex = found["exact"]
    for side, _ in all_sides[:-1]:
        t, c = times[side], cpus[side]
        cols = []
        for kind, floor in (("dup", -1.0), ("fresh", -1.0), ("fresh", 0.9)):
            agree = np.array(
                [
                    a[1] == e[1]
                    for a, e in zip(found[side], ex, strict=True)
                    if a[0] == kind and e[2] >= floor
                ],
                dtype=float,
            )
            cols.append(recall(agree, rng))
        # CPU p50 of the lookups the cache serves (exact best >= 0.9) and of its misses: a
        # second pass costs only the misses.
        hit = [x for x, e in zip(c, ex, strict=True) if e[2] >= 0.9]
        miss = [x for x, e in zip(c, ex, strict=True) if e[2] < 0.9]
        print(
            f"    {side:22s} p50 {pct(t, 0.5) * 1e3:.3f} ms wall / {pct(c, 0.5) * 1e3:.3f} CPU, "
            f"p99 {pct(t, 0.99) * 1e3:.2f} / {pct(c, 0.99) * 1e3:.2f}; CPU p50 of hits "
            f"{pct(hit, 0.5) * 1e3:.3f} (n={len(hit)}) / misses {pct(miss, 0.5) * 1e3:.3f} "
            f"(n={len(miss)}); recall@1 dup {cols[0]}; fresh {cols[1]}; fresh served (exact "
            f">= 0.9) {cols[2]}"
        )
    t, c = times["exact"], cpus["exact"]
    print(f"    {'exact':22s} p50 {pct(t, 0.5) * 1e3:.3f} ms wall / {pct(c, 0.5) * 1e3:.3f} CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="real prompts + 200k synthetic")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--vectors", nargs="+", default=["synthetic"])
    parser.add_argument("--nlist", type=int, default=2048)
    parser.add_argument("--nprobe", type=int, default=8, help="the default side's")
    parser.add_argument("--nprobes", type=int, nargs="*", default=[4, 6, 8, 12])
    parser.add_argument("--reranks", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--adaptive", nargs="*", default=["4:12@0.93", "4:8@0.9"])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.queries, args.vectors = 200_000, 200, ["static", "synthetic"]
    print(f"bench_semantic_nprobe: size {args.size:,}, nlist {args.nlist} ({load()})")
    if "static" in args.vectors:
        vectors = cached_static()
        if vectors is not None:
            run("static embedder, real prompts", vectors[: args.size], args)
            del vectors
    if "synthetic" in args.vectors:
        held = min(2000, args.size // 10)
        run("synthetic", cached_synthetic(1_002_000, 384)[: args.size + held], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
