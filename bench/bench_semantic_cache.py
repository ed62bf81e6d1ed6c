"""What does a semantic-cache lookup cost per call, next to an exact-cache hit?

    python bench/bench_semantic_cache.py [--calls N] [--entries E] [--model]

All sides call a `Gateway` over an in-process `MockProvider`, without a call log, and are
measured in interleaved rounds (median per-call time over the rounds):

* ``exact hit``: an `ExactCache` answering a repeated prompt (the baseline);
* ``semantic hit (hashing)``: a `SemanticCache` with the `HashingEmbedder` test double, its
  index holding ``--entries`` entries in the same partition: the cache's own machinery
  (embedding a short text cheaply, the search, the guards, serving the hit);
* ``semantic hit (MiniLM)``, with ``--model``: the same with all-MiniLM-L6-v2, where the
  embedding dominates.

Prints each side's microseconds per call and its ratio to the exact hit. Exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from aigw_lab import ChatRequest, ChatResponse, Gateway
from aigw_lab.embeddings import HashingEmbedder, SentenceTransformerEmbedder
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import Usage

PROMPT = "How do I reverse a list in Python?"
PARAPHRASE = "how do I reverse a list in python"


def semantic_gateway(embedder, entries: int) -> Gateway:
    cache = SemanticCache(embedder, threshold=0.8, max_entries=entries + 10)
    filler = [f"Unrelated stored question number {i} about topic {i * 7}" for i in range(entries)]
    reply = ChatResponse(
        text="stored",
        finish_reason="stop",
        usage=Usage(input_tokens=5, output_tokens=5),
        provider="mock",
        model="m1",
    )
    for text in [*filler, PROMPT]:
        cache.add(ChatRequest.create("m1", text), reply, provider="mock", model="m1")
    return Gateway([MockProvider("mock", models=("m1",))], middleware=[cache])


def per_call_us(gateway: Gateway, prompt: str, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        gateway.chat("mock/m1", prompt)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--model", action="store_true", help="also time all-MiniLM-L6-v2")
    args = parser.parse_args()

    exact = Gateway([MockProvider("mock", models=("m1",))], middleware=[ExactCache()])
    exact.chat("mock/m1", PROMPT)
    sides = {"exact hit": (exact, PROMPT, args.calls)}
    sides["semantic hit (hashing)"] = (
        semantic_gateway(HashingEmbedder(384), args.entries),
        PARAPHRASE,
        args.calls,
    )
    if args.model:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        sides["semantic hit (MiniLM)"] = (
            semantic_gateway(SentenceTransformerEmbedder(), args.entries),
            PARAPHRASE,
            max(10, args.calls // 20),  # milliseconds a call: fewer calls
        )
    for gateway, prompt, _ in sides.values():  # warm up; every side must hit
        assert gateway.chat("mock/m1", prompt).cache_status == "hit"
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, (gateway, prompt, calls) in sides.items():
            times[name].append(per_call_us(gateway, prompt, calls))
    baseline = statistics.median(times["exact hit"])
    print(f"{args.entries} entries in the semantic index, median of {args.rounds} rounds")
    for name, values in times.items():
        us = statistics.median(values)
        print(f"{name:26s} {us:10.1f} us/call   x{us / baseline:8.1f} of an exact hit")


if __name__ == "__main__":
    main()
