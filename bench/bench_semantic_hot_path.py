"""A semantic-cache HIT end to end, and the first semantic lookup of a fresh process, with
the fast embedder (the static distillation of MiniLM) beside MiniLM and the exact cache.

    python bench/bench_semantic_hot_path.py [--quick] [--rounds R] [--calls N] [--int8]

Part 1, hits (issue 13 §4 target: under 5 ms p50 with the fast embedder). Every side is a
`Gateway` with the DuckDB call log on, over an OpenAI provider whose HTTP goes to an
in-process fake Chat Completions server (``httpx.MockTransport``, as
bench_gateway_overhead.py), measured in interleaved rounds (the side order rotates each
round), each round ``--calls`` calls per side, paced (``--rate`` calls/s) then flat out:

* ``no cache``: every call goes upstream and is logged (the fake answers at once);
* ``exact hit``: an `ExactCache` holding the prompts, asked the same prompts;
* ``semantic hit: static`` / ``semantic hit: MiniLM`` (and ``int8`` with ``--int8``): a
  `SemanticCache` (its defaults: threshold 0.9, the lexical verifier, the exact numpy
  index) holding ``--entries`` stored prompts, asked a rewording of one (lower-cased, its
  question mark dropped) that it must serve: a real embedding, search, verification and hit.

Per call: wall time (p50 / p90 over all calls, and the spread of the per-round p50s) and
the process CPU per call over each block (the log writer's thread included), so a figure
measured on a loaded machine can be read beside its load.

Part 2, start-up (target: first semantic lookup in a fresh process under 2 s). For each
embedder, interleaved, ``--starts`` fresh ``python`` processes each build the same logged
gateway with ``SemanticCache("<name>")`` and answer one call (a miss: lookup, upstream,
log) then a rewording of it (a hit). Reported from the parent's clock just before the
process is started (interpreter start-up included) to each answer, with the child's CPU
and whether torch was imported. The static embedder's artefact must already be on disk
(``python -m aigw_lab.static_embedder`` makes it; see docs/semantic_cache.md).

Prompts: GPTCache's mock_data.json origins from the shared data folder when present (real
question lengths), else a built-in list. Prints ``os.getloadavg()`` with every result.
``OMP_NUM_THREADS`` defaults to 1 here (torch's thread pool on a busy 2-core machine made
MiniLM cost over a second of CPU per prompt in a trial). Exits 0; the targets are reported,
not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from aigw_lab import Gateway, HttpClients, Price, ProviderSpec
from aigw_lab.embedder_names import FAST_EMBEDDER
from aigw_lab.embeddings import DEFAULT_MODEL, INT8_MODEL
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.store import CallLog

BASE_URL = "http://bench.invalid/v1"
MODEL = "gpt-4o-mini"
TARGET_HIT_MS = 5.0
TARGET_START_S = 2.0
FALLBACK_PROMPTS = [
    "How do I reverse a list in Python?",
    "What is the difference between a process and a thread?",
    "Can you explain how public key cryptography works in simple terms?",
    "What are the health benefits of drinking green tea every day?",
    "How should I prepare for a software engineering job interview?",
    "Why does the moon look larger near the horizon than overhead?",
    "What is the best way to learn a new language as an adult?",
    "How do vaccines train the immune system to fight infections?",
]
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A short stored answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
).encode()


def fake_server(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=ANSWER, headers={"content-type": "application/json"})


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def prompts(limit: int) -> list[str]:
    """Distinct real questions (mock_data.json origins) when the shared data is present."""
    try:
        # lazy: the shared data folder is optional
        from aigw_lab.evaluation.semantic_cache_eval import load_mock_pairs

        origins = list(dict.fromkeys(origin for origin, _ in load_mock_pairs()))
    except (OSError, ValueError):
        origins = []
    chosen = [o for o in origins if 20 <= len(o) <= 300][:limit]
    return chosen if len(chosen) >= 8 else FALLBACK_PROMPTS


def reworded(prompt: str) -> str:
    """A rewording that the exact cache misses and the semantic cache must serve."""
    return prompt.lower().rstrip(" ?.!") or prompt


def make_gateway(db: Path, middleware: list) -> Gateway:
    spec = ProviderSpec(name="bench", kind="openai", base_url=BASE_URL, api_key_env="BENCH_KEY")
    return Gateway(
        [spec],
        log=CallLog(db),
        clients=HttpClients(transport=httpx.MockTransport(fake_server)),
        env={"BENCH_KEY": "bench-key"},
        prices={f"bench/{MODEL}": Price(0.15, 0.60)},
        middleware=middleware,
    )


def fill_semantic(gateway: Gateway, cache: SemanticCache, stored: list[str]) -> None:
    """Store the answers through the gateway itself (misses), so entries are what traffic
    leaves behind (a prompt that hits an earlier one adds no entry: mock_data has near
    duplicates); embedding them in one batch first would be faster but not the same."""
    for text in stored:
        gateway.chat(f"bench/{MODEL}", text, temperature=0)
    assert cache.stats().entries >= len(stored) // 2, cache.stats()


def block(call: Callable[[str], str], texts: list[str], pace: float | None) -> tuple:
    """Per-call wall times (s) and process CPU per call over the block."""
    walls = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    for n, text in enumerate(texts):
        if pace:
            due = start + n / pace
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        status = call(text)
        walls.append(time.perf_counter() - t0)
        if status not in ("hit", "miss", "none"):
            raise AssertionError(status)
    return walls, (time.process_time() - cpu0) / len(texts)


def hits(args: argparse.Namespace) -> None:
    stored = prompts(args.entries)
    tmp = Path(tempfile.mkdtemp(prefix="aigw-hot-path-"))
    sides: dict[str, tuple[Callable[[str], str], list[str], str]] = {}

    upstream = make_gateway(tmp / "none.duckdb", [])
    sides["no cache"] = (
        lambda t: upstream.chat(f"bench/{MODEL}", t, temperature=0).cache_status,
        stored,
        "none",  # no cache in the way
    )
    exact = make_gateway(tmp / "exact.duckdb", [ExactCache()])
    for text in stored:
        exact.chat(f"bench/{MODEL}", text, temperature=0)
    sides["exact hit"] = (
        lambda t: exact.chat(f"bench/{MODEL}", t, temperature=0).cache_status,
        stored,
        "hit",
    )
    names = {"static": FAST_EMBEDDER, "MiniLM": DEFAULT_MODEL}
    if args.int8:
        names["int8"] = INT8_MODEL
    gateways = []
    for label, name in names.items():
        cache = SemanticCache(name, max_entries=len(stored) + 10)
        gateway = make_gateway(tmp / f"{label}.duckdb", [cache])
        t0, c0 = time.perf_counter(), time.process_time()
        fill_semantic(gateway, cache, stored)
        print(
            f"filled {label} with {len(stored)} prompts: {time.perf_counter() - t0:.1f} s wall, "
            f"{time.process_time() - c0:.1f} s CPU ({load()})",
            flush=True,
        )
        gateways.append(gateway)
        sides[f"semantic hit: {label}"] = (
            lambda t, g=gateway: g.chat(f"bench/{MODEL}", t, temperature=0).cache_status,
            [reworded(t) for t in stored],
            "hit",
        )
    # Every side must do what it is named for on every text, before anything is timed: a
    # rewording that some embedder does not serve (below its threshold, or refused by the
    # verifier) is dropped from every side, so all sides ask the same prompts.
    keep = [True] * len(stored)
    for call, texts, expected in sides.values():
        for n, text in enumerate(texts):
            keep[n] = keep[n] and call(text) == expected
    dropped = len(stored) - sum(keep)
    if dropped > len(stored) // 10:
        raise SystemExit(f"{dropped} of {len(stored)} prompts were not what a side expects")
    for name, (call, texts, expected) in list(sides.items()):
        sides[name] = (call, [t for t, k in zip(texts, keep, strict=True) if k], expected)
    asked = [t for t, k in zip(stored, keep, strict=True) if k]
    print(
        f"\n{len(stored)} stored prompts, {len(asked)} asked (median "
        f"{statistics.median(map(len, asked)):.0f} chars; {dropped} dropped: a rewording "
        "some embedder does not serve); every side checked: each call is the hit or "
        "upstream call it is named for",
        flush=True,
    )
    for mode, pace in (("paced", args.rate), ("flat out", None)):
        walls: dict[str, list[float]] = {name: [] for name in sides}
        round_p50: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        cursor = 0
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                call, texts, _ = sides[name]
                chunk = [texts[(cursor + i) % len(texts)] for i in range(args.calls)]
                w, c = block(call, chunk, pace)
                walls[name] += w
                round_p50[name].append(statistics.median(w))
                cpu[name].append(c)
            cursor += args.calls
        rate = f"paced at {pace:g} calls/s" if pace else "flat out"
        print(f"\n{mode} ({rate}), {args.rounds} rounds x {args.calls} calls a side ({load()})")
        print(
            f"{'side':24s} {'p50 ms':>8s} {'p90 ms':>8s} {'round p50 range':>18s} "
            f"{'CPU ms/call':>12s} {'x exact p50':>12s}"
        )
        exact_p50 = statistics.median(walls["exact hit"])
        for name in sides:
            p50 = statistics.median(walls[name])
            p90 = statistics.quantiles(walls[name], n=10)[-1]
            low, high = min(round_p50[name]), max(round_p50[name])
            print(
                f"{name:24s} {p50 * 1e3:8.2f} {p90 * 1e3:8.2f} "
                f"{f'{low * 1e3:.2f}-{high * 1e3:.2f}':>18s} "
                f"{statistics.median(cpu[name]) * 1e3:12.2f} {p50 / exact_p50:12.1f}"
            )
        fast = statistics.median(walls["semantic hit: static"]) * 1e3
        verdict = "under" if fast < TARGET_HIT_MS else "NOT under"
        print(f"target: static semantic hit p50 {fast:.2f} ms, {verdict} {TARGET_HIT_MS} ms")
    for gateway in (upstream, exact, *gateways):
        gateway.close()


CHILD = r"""
import json, sys, time
from pathlib import Path
start_wall = float(sys.argv[1]); name = sys.argv[2]; db = sys.argv[3]
sys.path.insert(0, sys.argv[4])
from bench_semantic_hot_path import make_gateway, MODEL
from aigw_lab.gateway.semantic_cache import SemanticCache
t_imported, c_imported = time.time(), time.process_time()
cache = SemanticCache(name)
gateway = make_gateway(Path(db), [cache])
t_built, c_built = time.time(), time.process_time()
first = gateway.chat(f"bench/{MODEL}", "How do I reverse a list in Python?", temperature=0)
t_first, c_first = time.time(), time.process_time()
again = gateway.chat(f"bench/{MODEL}", "how do i reverse a list in python", temperature=0)
t_hit = time.time()
gateway.close()
print(json.dumps({
    "first": t_first - start_wall, "hit": t_hit - start_wall,
    "imported": t_imported - start_wall, "built": t_built - start_wall,
    "cpu_phases": [c_imported, c_built - c_imported, c_first - c_built],
    "statuses": [first.cache_status, again.cache_status],
    "cpu": time.process_time(), "torch": "torch" in sys.modules,
}))
"""


def starts(args: argparse.Namespace) -> None:
    names = {"static": FAST_EMBEDDER, "MiniLM": DEFAULT_MODEL}
    if args.int8:
        names["int8"] = INT8_MODEL
    tmp = Path(tempfile.mkdtemp(prefix="aigw-first-lookup-"))
    results: dict[str, list[dict]] = {label: [] for label in names}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    here = str(Path(__file__).resolve().parent)
    for n in range(args.starts):
        order = list(names)[n % len(names) :] + list(names)[: n % len(names)]
        for label in order:
            db = tmp / f"{label}-{n}.duckdb"
            before = time.time()
            done = subprocess.run(
                [sys.executable, "-c", CHILD, repr(before), names[label], str(db), here],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"{label}: the child failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["statuses"] != ["miss", "hit"]:
                raise SystemExit(f"{label}: expected a miss then a hit, got {result['statuses']}")
            result["load"] = os.getloadavg()[0]
            results[label].append(result)
    print(f"\nfresh process to first semantic lookup answered, {args.starts} starts each")
    print(
        f"{'embedder':10s} {'first answer s (median, range)':>32s} "
        f"{'first hit s (median)':>22s} {'child CPU s':>12s} {'torch':>6s} {'load 1-min':>11s}"
        "   phases (median s): imported / gateway built / first answer; CPU of each"
    )
    for label, rows in results.items():
        first = [r["first"] for r in rows]
        hit = [r["hit"] for r in rows]
        cpu = [r["cpu"] for r in rows]
        loads = [r["load"] for r in rows]
        print(
            f"{label:10s} {statistics.median(first):>14.2f} "
            f"({min(first):.2f}-{max(first):.2f}){'':>6s} {statistics.median(hit):>22.2f} "
            f"{statistics.median(cpu):>12.2f} {str(any(r['torch'] for r in rows)):>6s} "
            f"{f'{min(loads):.1f}-{max(loads):.1f}':>11s}   "
            f"{statistics.median(r['imported'] for r in rows):.2f} / "
            f"{statistics.median(r['built'] for r in rows):.2f} / {statistics.median(first):.2f}; "
            + " / ".join(
                f"{statistics.median(r['cpu_phases'][i] for r in rows):.2f}" for i in range(3)
            )
        )
    fast = statistics.median(r["first"] for r in results["static"])
    verdict = "under" if fast < TARGET_START_S else "NOT under"
    print(f"target: static first lookup {fast:.2f} s, {verdict} {TARGET_START_S} s ({load()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the headline figures in ~2 min")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=50, help="calls per side per round")
    parser.add_argument("--rate", type=float, default=100.0, help="paced calls per second")
    parser.add_argument("--entries", type=int, default=1000, help="stored prompts")
    parser.add_argument("--starts", type=int, default=5, help="fresh processes per embedder")
    parser.add_argument("--int8", action="store_true", help="also all-MiniLM-L6-v2-int8")
    parser.add_argument("--skip-hits", action="store_true")
    parser.add_argument("--skip-starts", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.entries, args.starts = 6, 25, 300, 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # One torch thread, as a server embedding one prompt per call should run (docs/
    # performance.md, "Served learned policy"): with torch's default pool on a busy 2-core
    # machine one MiniLM prompt cost over a second of CPU in a trial run of this script.
    # Set before torch is imported (children inherit it); an explicit setting wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{sys.platform}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')} ({load()})")
    if not args.skip_starts:
        starts(args)
    if not args.skip_hits:
        hits(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
