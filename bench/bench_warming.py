"""Cache warming (issue 12 §1): how close is the estimated cost a warming plan shows to what
warming then costs, and what does warming buy on the next day's traffic?

    python bench/bench_warming.py [--items 200] [--a-seeds 3] [--seeds 8] [--calls 1000]

**A. The estimate, on recorded real answers** (shared data: AlpacaEval 2's 805 instructions
and the real outputs of its models; skipped without the folder). For each (old, new) model
pair: a call log holds the old model's recorded answers to ``--items`` sampled instructions
(written through a gateway whose provider answers with those recorded outputs); a plan warms
the new model from that log (`plan_warming(log=..., target=new)`), so nothing the estimate
reads knows the new model; `warm` then calls a provider answering with the new model's
recorded outputs, and the log gives the actual cost. Token counts on both sides are the same
characters / 4 measure (the fakes' usage and the estimate's), so the ratio measures how the
models' real answer lengths differ, not a tokenizer. Printed: actual / estimate over all
items with a 95% bootstrap interval over items, the share of items within [0.5, 2], and the
same for two baselines: the dataset's reference answers as the basis (a dataset plan), and
the naive 256 output tokens a call is assumed when nothing is known.

**B. Hit rate bought by warming, on SYNTHETIC traffic.** The prompts are AlpacaEval's (or
the bundled mixed_v1 without shared data), but their popularity is made up: a Zipf law
(exponent ``--zipf``) over a random order of the prompts. Day 1's ``2 x --calls`` calls go
through a cache-less gateway into a real call log; day 2's ``--calls`` calls, drawn the same
way with another seed, go through a gateway whose exact cache starts: cold (empty), warmed
with the top N of day 1 (`plan_warming(log=..., top=N)`: free answers from the log), warmed
with N prompts drawn at random from those day 1 saw (random baseline), or with the N truly
most popular prompts (oracle: the best any N entries can do). The cache also learns as day 2
goes, in every arm. Printed per arm: day 2's exact hit rate, and over its first 100 calls
(the cold start warming exists for), as mean [95% t-interval] over ``--seeds`` seeds.

**C. What planning costs on a big log**: `plan_warming(log=..., top=100)` over ``--log-rows``
ok rows of ``--distinct`` requests (written with SQL), beside the bare GROUP BY top-100 query
any such plan needs, interleaved, wall and CPU time (0 rows: skipped).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np

from aigw_lab import Gateway, Price
from aigw_lab.datasets import Dataset, bundled_dataset, shared_data_dir_or_none
from aigw_lab.experiments.warming import plan_warming, warm
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.testing.fakes import FunctionProvider

PRICE = Price(input_per_mtok=1.0, output_per_mtok=4.0)
PAIRS = (
    ("gpt-3.5-turbo-1106", "claude-2.1"),
    ("claude-instant-1.2", "gpt4_1106_preview"),
    ("Qwen-14B-Chat", "gemma-7b-it"),
)
P_PRICES = {"p/m": PRICE}
EARLY = 100  # day 2's first calls: the cold start


def normal(text: str) -> str:
    return " ".join(text.split())


def answering(outputs: dict[str, str], name: str) -> FunctionProvider:
    """A provider answering each prompt with its recorded output."""
    return FunctionProvider(lambda r: outputs[normal(r.messages[-1].text)] or "-", name=name)


def bootstrap_ratio(actual: np.ndarray, estimate: np.ndarray, rng: np.random.Generator) -> str:
    """sum(actual) / sum(estimate) with a 95% percentile bootstrap interval over items."""
    index = rng.integers(0, len(actual), size=(2000, len(actual)))
    ratios = actual[index].sum(axis=1) / estimate[index].sum(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    within = np.mean((actual / estimate >= 0.5) & (actual / estimate <= 2.0))
    return f"x{actual.sum() / estimate.sum():.2f} [{low:.2f}, {high:.2f}], {within:.0%} in [0.5, 2]"


def part_a(items: int, seeds: int, tmp: str) -> None:
    from aigw_lab.datasets.recordings import load_recording

    print("A. actual / estimated cost of warming a new model from an old model's log")
    print(
        f"   (AlpacaEval 2 recorded outputs, {items} instructions drawn per seed; seed 0 in "
        f"full with a 95% bootstrap interval over items, then the ratio's range over "
        f"{seeds} seeds of the draw)"
    )
    recorded = load_recording("alpaca_eval")
    labels = (
        "from the log (the old model's answers)",
        "dataset references (GPT-4-turbo's)",
        "naive, 256 output tokens each",
    )
    for old, new in PAIRS:
        ids = [i for i in recorded.ids if recorded.has_outcome(i, old)]
        ids = [i for i in ids if recorded.has_outcome(i, new)]
        per_seed: list[tuple[float, list[tuple[np.ndarray, np.ndarray]]]] = []
        for seed in range(seeds):
            chosen = sorted(random.Random(seed).sample(ids, items))
            per_seed.append(one_pair(recorded, old, new, chosen, f"{tmp}/a{seed}"))
        actual_usd, first = per_seed[0]
        print(f"   {old} -> {new}: actual ${actual_usd:.4f} (seed 0)")
        rng = np.random.default_rng(0)
        for index, label in enumerate(labels):
            actual, estimate = first[index]
            ratios = [a.sum() / e.sum() for a, e in (row[1][index] for row in per_seed)]
            print(
                f"     {label + ':':<40} {bootstrap_ratio(actual, estimate, rng)}; "
                f"over seeds x{min(ratios):.2f}-{max(ratios):.2f}"
            )


def one_pair(
    recorded: Any, old: str, new: str, chosen: list[str], prefix: str
) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """Warm ``new`` from a log of ``old``'s answers to ``chosen``: the actual cost, and
    (actual, estimate) per item for each estimator."""
    data = Dataset("alpaca", tuple(recorded.dataset[i] for i in chosen))
    outs = {
        model: {normal(recorded.dataset[i].prompt): recorded.outcome(i, model).output or ""
                for i in chosen}
        for model in (old, new)
    }  # fmt: skip
    db = f"{prefix}-{old}.duckdb"
    with Gateway([answering(outs[old], "old")], log=db, prices={"old/m": PRICE}) as gw:
        for item in data:
            gw.chat("old/m", item.prompt)
    gw = Gateway(
        [answering(outs[new], "new")],
        log=f"{prefix}-{new}-warm.duckdb",
        prices={"new/m": PRICE},
        middleware=[ExactCache()],
    )
    with gw:
        from_log = plan_warming(gw, log=db, top=len(chosen), target="new/m")
        from_refs = plan_warming(gw, dataset=data, target="new/m")
        warm(from_log, gw)
        rows = gw.query("SELECT request_json, cost_usd FROM calls WHERE attempt >= 1")
    actual_by = {
        normal(json.loads(r)["messages"][-1]["content"]): c
        for r, c in zip(rows.request_json, rows.cost_usd, strict=True)
    }
    order = [normal(e.request.messages[-1].text) for e in from_log.entries]
    actual = np.array([actual_by[p] for p in order])
    est_log = np.array([e.estimate_usd for e in from_log.entries])
    refs = {normal(e.request.messages[-1].text): e.estimate_usd for e in from_refs.entries}
    est_ref = np.array([refs[p] for p in order])
    naive = np.array(
        [PRICE.input_per_mtok * e.input_tokens / 1e6 + PRICE.output_per_mtok * 256 / 1e6
         for e in from_log.entries]
    )  # fmt: skip
    return float(actual.sum()), [(actual, est_log), (actual, est_ref), (actual, naive)]


def zipf_calls(prompts: list[str], n: int, exponent: float, rng: random.Random) -> list[str]:
    weights = [1.0 / (rank + 1) ** exponent for rank in range(len(prompts))]
    return rng.choices(prompts, weights=weights, k=n)


def day2_hits(cache: ExactCache, calls: list[str]) -> tuple[float, float]:
    provider = FunctionProvider(lambda r: "answer", name="p")
    with Gateway([provider], log=None, prices=P_PRICES, middleware=[cache]) as gw:
        hits = [gw.chat("p/m", prompt).cache_status == "hit" for prompt in calls]
    return sum(hits) / len(hits), sum(hits[:EARLY]) / EARLY


def part_b(prompts: list[str], seeds: int, calls: int, sizes: tuple[int, ...], exponent: float,
           tmp: str) -> None:  # fmt: skip
    print(
        f"B. day 2 exact hit rate (all {calls} calls / first {EARLY}), SYNTHETIC Zipf "
        f"popularity (exponent {exponent}) over {len(prompts)} real prompts; "
        f"day 1 = {2 * calls} calls; mean [95% t-interval] over {seeds} seeds"
    )
    results: dict[str, list[tuple[float, float]]] = {}
    cpu = {"plan": 0.0, "warm": 0.0}
    for seed in range(seeds):
        rng = random.Random(seed)
        ranked = prompts[:]
        rng.shuffle(ranked)  # popularity rank -> prompt
        day1 = zipf_calls(ranked, 2 * calls, exponent, rng)
        day2 = zipf_calls(ranked, calls, exponent, random.Random(10_000 + seed))
        db = f"{tmp}/b-{seed}.duckdb"
        provider = FunctionProvider(lambda r: "answer", name="p")
        with Gateway([provider], log=db, prices=P_PRICES) as gw:
            for prompt in day1:
                gw.chat("p/m", prompt)
        results.setdefault("cold", []).append(day2_hits(ExactCache(), day2))
        for n in sizes:
            cache = ExactCache()
            with Gateway([provider], log=None, prices=P_PRICES, middleware=[cache]) as gw:
                started = time.process_time()
                plan = plan_warming(gw, log=db, top=n)
                cpu["plan"] += time.process_time() - started
                started = time.process_time()
                warm(plan, gw)
                cpu["warm"] += time.process_time() - started
                everything = plan_warming(gw, log=db, top=10**6)
            results.setdefault(f"top {n} of day 1", []).append(day2_hits(cache, day2))
            cache = ExactCache()
            with Gateway([provider], log=None, prices=P_PRICES, middleware=[cache]) as gw:
                picked = rng.sample(list(everything.entries), min(n, len(everything.entries)))
                warm(replace(everything, entries=tuple(picked)), gw)
            results.setdefault(f"random {n} of day 1", []).append(day2_hits(cache, day2))
            cache = ExactCache()
            with Gateway([provider], log=None, prices=P_PRICES, middleware=[cache]) as gw:
                oracle = Dataset.from_records(
                    "top", [{"id": str(i), "prompt": p} for i, p in enumerate(ranked[:n])]
                )
                warm(plan_warming(gw, dataset=oracle, target="p/m"), gw)
            results.setdefault(f"oracle {n} (true top)", []).append(day2_hits(cache, day2))
    for arm, values in results.items():
        print(f"   {arm:<24} {t_interval([v[0] for v in values])}   "
              f"first {EARLY}: {t_interval([v[1] for v in values])}")  # fmt: skip
    plans = seeds * len(sizes)
    print(
        f"   CPU per plan_warming(log, top=N) {cpu['plan'] / plans * 1000:.0f} ms, per warm "
        f"{cpu['warm'] / plans * 1000:.0f} ms (day-1 logs of {2 * calls} rows; mean of {plans})"
    )
    distinct = Counter(zipf_calls(prompts, calls, exponent, random.Random(0)))
    print(f"   (day 2 of seed 0 asks {len(distinct)} distinct prompts)")


def part_c(rows: int, distinct: int, repeats: int, tmp: str) -> None:
    """plan_warming(log=..., top=100) on a log of ``rows`` ok calls over ``distinct``
    requests, against the one GROUP BY any top-N needs (the same rows), interleaved."""
    import duckdb

    db = f"{tmp}/c.duckdb"
    with Gateway([FunctionProvider(lambda r: "a", name="p")], log=db, prices=P_PRICES) as gw:
        gw.chat("p/m", "seed row")  # a migrated log with one real row
    conn = duckdb.connect(db)
    conn.execute(
        'INSERT INTO calls (call_id, "timestamp", provider_name, request_model, request_json, '
        "response_text, finish_reason, status, attempt, cache_status, input_tokens, "
        "output_tokens, cost_usd, bodies, simulated) SELECT 'c-' || i, now(), 'p', 'm', "
        '\'{"model":"m","messages":[{"role":"user","content":"prompt \' || '
        "(i % ?) || '\"}]}', 'answer', 'stop', 'ok', 1, 'miss', 5, 1, 0.0, 'full', false "
        "FROM range(?) t(i)",
        [distinct, rows],
    )
    conn.execute("CHECKPOINT")
    conn.close()
    floor_sql = (
        "SELECT request_json, count(*) AS n FROM calls WHERE status = 'ok' "
        "GROUP BY ALL ORDER BY n DESC LIMIT 100"
    )
    plan_t, floor_t = [], []
    with Gateway([FunctionProvider(lambda r: "a", name="p")], log=db, prices=P_PRICES,
                 middleware=[ExactCache()]) as gw:  # fmt: skip
        for _ in range(repeats):  # interleaved, so a busy neighbour slows both alike
            plan_t.append(timed(lambda: plan_warming(gw, log=True, top=100)))
            floor_t.append(timed(lambda: gw.log.execute(floor_sql)))
    best = min(plan_t), min(floor_t)
    print(
        f"C. plan_warming(log, top=100) over {rows:,} ok rows of {distinct:,} distinct requests: "
        f"{best[0][0] * 1000:.0f} ms wall, {best[0][1] * 1000:.0f} ms CPU; the bare GROUP BY "
        f"top-100 query: {best[1][0] * 1000:.0f} ms wall, {best[1][1] * 1000:.0f} ms CPU "
        f"(x{best[0][1] / max(best[1][1], 1e-9):.1f} CPU; best of {repeats}, interleaved)"
    )


def timed(function: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def t_interval(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}
    half = t.get(len(values), 2.0) * sd / math.sqrt(len(values))
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--a-seeds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=50_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {platform.system()}")
    shared = shared_data_dir_or_none()
    with tempfile.TemporaryDirectory(prefix="bench-warming-") as tmp:
        if shared is not None:
            part_a(args.items, args.a_seeds, tmp)
            from aigw_lab.datasets.recordings import load_recording

            prompts = sorted({normal(i.prompt) for i in load_recording("alpaca_eval").items})
        else:
            print("A. skipped: no shared data folder")
            prompts = sorted({normal(i.prompt) for i in bundled_dataset().items})
        part_b(prompts, args.seeds, args.calls, tuple(args.sizes), args.zipf, tmp)
        if args.log_rows:
            part_c(args.log_rows, args.distinct, 3, tmp)


if __name__ == "__main__":
    main()
