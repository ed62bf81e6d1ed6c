"""What does a semantic lookup cost with 10,000 and 1,000,000 cached entries, next to an
exact-cache hit?

    HF_HUB_OFFLINE=1 python bench/bench_semantic_index.py [--sizes 10000 1000000] [--ann]

Sides, all measured in this run and printed as ratios against the baseline:

* ``exact hit`` (the baseline): `cache_key` of a request plus a `MemoryStore.get` that
  hits: the exact cache's own work on its hit path, without the gateway around it;
* ``index search``: `NumpyIndex.search(query, k=4)` (exact search) over N entries, per
  query; the embedding is excluded;
* ``batched search``: 64 queries searched together (one matrix product per block of
  entries, then top-k per query), per query: what a batched lookup would pay. NumpyIndex
  has no batch method; this uses the same matrix;
* ``MiniLM embed``: one all-MiniLM-L6-v2 embedding of a short prompt (model loaded once,
  before timing); skipped, saying so, if the model cannot load;
* ``embed + search``: the two added, the cost of a semantic lookup with the embedding.

The stored vectors are random 384-dim float32 unit vectors: the cost of exact search does
not depend on their values. Queries are stored vectors plus noise (cosine about 0.9 to
their source), like a paraphrase of a cached question.

``--ann`` also builds approximate indexes over the largest size, if installed (they are
not dependencies: ``pip install faiss-cpu hnswlib``): faiss IVF-Flat and hnswlib HNSW.
It prints their build time, per-query time and recall@1 against exact search.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import numpy as np

from aigw_lab import ChatRequest, ChatResponse, MemoryStore
from aigw_lab.gateway.cache import cache_key
from aigw_lab.gateway.semantic_match import NumpyIndex
from aigw_lab.types import Usage

DIM = 384
PROMPT = "How do I reverse a list in Python?"


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def near_copies(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    """Each row moved to a cosine of about 0.9 from where it was."""
    noise = unit_rows(rng, len(rows))
    queries = 0.9 * rows + np.sqrt(1 - 0.9**2) * noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def median_us(fn, calls: int, rounds: int = 5) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def exact_hit_us() -> float:
    store = MemoryStore()
    request = ChatRequest.create("m1", PROMPT)
    store.set(
        cache_key(request, provider="mock", model="m1"),
        ChatResponse(
            text="stored",
            finish_reason="stop",
            usage=Usage(input_tokens=5, output_tokens=5),
            provider="mock",
            model="m1",
        ),
        None,
    )

    def hit() -> None:
        assert store.get(cache_key(request, provider="mock", model="m1")) is not None

    return median_us(hit, 5_000)


def build_index(rng: np.random.Generator, n: int) -> tuple[NumpyIndex, np.ndarray]:
    """A NumpyIndex of n random unit vectors (added in chunks to keep peak memory low)."""
    index = NumpyIndex(DIM)
    chunk = 100_000
    for start in range(0, n, chunk):
        rows = unit_rows(rng, min(chunk, n - start))
        for offset, row in enumerate(rows):
            index.add(start + offset, row)
    return index, index._matrix[: len(index)]  # the live rows, for batched search and ANN


def batched_search(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Top-k ids per query: blocks of rows times all queries, top k per block, then merged."""
    best_ids, best_scores = [], []
    for start in range(0, len(matrix), 131_072):
        scores = matrix[start : start + 131_072] @ queries.T  # (block, queries)
        top = np.argpartition(-scores, k - 1, axis=0)[:k]
        best_ids.append(top + start)
        best_scores.append(np.take_along_axis(scores, top, axis=0))
    ids, scores = np.concatenate(best_ids), np.concatenate(best_scores)
    order = np.argsort(-scores, axis=0, kind="stable")[:k]
    return np.take_along_axis(ids, order, axis=0).T


def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aigw_lab.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    try:
        embedder.embed([PROMPT])
    except Exception as exc:  # any load failure: report it and measure the rest
        print(f"MiniLM cannot load ({type(exc).__name__}: {exc}); skipping the embed sides")
        return None
    return embedder


def measure_ann(matrix: np.ndarray, queries: np.ndarray, exact_top1: np.ndarray, base: float):
    n = len(matrix)
    try:
        import faiss
    except ImportError:
        print("  faiss not installed: skipped (pip install faiss-cpu)")
    else:
        nlist = int(np.sqrt(n))
        start = time.perf_counter()
        quantizer = faiss.IndexFlatIP(DIM)
        ivf = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = matrix[np.random.default_rng(1).choice(n, min(n, 40 * nlist), replace=False)]
        ivf.train(sample)
        ivf.add(matrix)
        built = time.perf_counter() - start
        for nprobe in (8, 32):
            ivf.nprobe = nprobe
            us = median_us(lambda: ivf.search(queries[:1], 4), 200, rounds=3)
            _, found = ivf.search(queries, 1)
            recall = float(np.mean(found[:, 0] == exact_top1))
            print(
                f"  faiss IVF-Flat nlist={nlist} nprobe={nprobe:<3} {us:10.1f} us/query "
                f"x{us / base:9.1f}   recall@1 {recall:.3f}   (build {built:.0f} s)"
            )
        del ivf, quantizer
        gc.collect()
    try:
        import hnswlib
    except ImportError:
        print("  hnswlib not installed: skipped (pip install hnswlib)")
    else:
        start = time.perf_counter()
        hnsw = hnswlib.Index(space="ip", dim=DIM)
        hnsw.init_index(max_elements=n, M=16, ef_construction=100)
        hnsw.add_items(matrix, np.arange(n), num_threads=os.cpu_count() or 1)
        built = time.perf_counter() - start
        for ef in (32, 128):
            hnsw.set_ef(ef)
            us = median_us(lambda: hnsw.knn_query(queries[:1], k=4), 200, rounds=3)
            found, _ = hnsw.knn_query(queries, k=1)
            recall = float(np.mean(found[:, 0] == exact_top1))
            print(
                f"  hnswlib HNSW M=16 ef={ef:<3}          {us:10.1f} us/query "
                f"x{us / base:9.1f}   recall@1 {recall:.3f}   (build {built:.0f} s)"
            )
        del hnsw
        gc.collect()


def measure_size(
    rng: np.random.Generator, n: int, base: float, embed_us: float | None, nq: int, *, ann: bool
) -> None:
    index, matrix = build_index(rng, n)
    picks = rng.choice(n, nq, replace=False)
    queries = near_copies(rng, matrix[picks])
    calls = max(5, min(2_000, 20_000_000 // n))
    cycle = iter(range(10**9))
    search_us = median_us(lambda: index.search(queries[next(cycle) % nq], 4), calls)
    batch_calls = max(3, calls // nq)
    batch_us = median_us(lambda: batched_search(matrix, queries, 4), batch_calls) / nq
    top = batched_search(matrix, queries, 1)[:, 0]
    assert np.array_equal(top, picks), "exact search must find each query's source"
    rows = [("index search, 1 query", search_us), (f"batched search, {nq} queries", batch_us)]
    if embed_us is not None:
        rows.append(("MiniLM embed + index search", embed_us + search_us))
    print(f"\n{n:,} entries ({matrix.nbytes / 2**20:,.0f} MiB of vectors)")
    for name, us in rows:
        print(f"  {name:34s} {us:10.1f} us/query x{us / base:9.1f}")
    if ann:
        print(f"  approximate indexes over the same {n:,} vectors (recall@1 vs exact):")
        measure_ann(matrix, queries, picks, base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument(
        "--ann", action="store_true", help="also faiss IVF / hnswlib at the largest size"
    )
    parser.add_argument("--no-model", action="store_true", help="skip the MiniLM embedding")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    base = exact_hit_us()
    embedder = None if args.no_model else load_minilm()
    embed_us = median_us(lambda: embedder.embed([PROMPT]), 20) if embedder else None
    print(f"exact hit (cache_key + MemoryStore.get, the baseline): {base:.1f} us")
    if embed_us is not None:
        print(f"MiniLM embed of one short prompt: {embed_us:.0f} us  x{embed_us / base:.0f}")

    for n in sorted(args.sizes):
        measure_size(rng, n, base, embed_us, args.queries, ann=args.ann and n == max(args.sizes))
        gc.collect()  # 1M x 384 float32 is 1.5 GiB: freed before the next size
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
