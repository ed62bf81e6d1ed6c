"""A semantic cache of a million entries (issue 13 §3): lookup time and recall of
`BackgroundIVFIndex` against exact search, and the wait of concurrent callers while the
cache fills from 0.

    python bench/bench_semantic_index.py --quick                 # ~2 min: 150k entries
    python bench/bench_semantic_index.py --size 1000000          # the 1M figures
    python bench/bench_semantic_index.py --size 1000000 --vectors synthetic --fill-only \
        --previous-index main --rounds 2      # main's index and this tree's, in turns

Per vector source (``--vectors``):

* ``static``: real prompts from the shared data (QQP, GPTCache pairs, MMLU; about 153k
  distinct) embedded by the static embedder (256-d), 2,000 held out as fresh queries;
  skipped, saying so, when the data is absent;
* ``synthetic``: 384-d unit vectors drawn around 4,096 centres with a common direction
  (sentence embeddings group by topic and share a mean direction); its nearest-neighbour
  similarities are printed beside the real ones so the two can be compared.

Phases, each printing wall and CPU time and ``os.getloadavg()``:

1. fill: one thread adds ``size`` entries to a `MemorySemanticStore` (one `add` each, as the
   cache does) while two threads look up near-duplicates; every add's and lookup's latency
   is kept: p50 / p99.9 / max, the fill's wall time, and when the index was idle; with
   ``--fill-baseline`` the same fill over exact search (`NumpyIndex`) runs after it. Where
   a caller waited: every wait over 50 ms is split into those that overlap a garbage
   collection of the process (``gc.callbacks``: the interpreter stops every thread while
   it walks a million entries' objects, whatever the index does), those inside a stall of
   the whole process (a watchdog thread that sleeps 1 ms woke over 50 ms late while the
   process used under half a core: no core was free, the machine's load) and the rest
   (the index's lock, the GIL held by maintenance, or the call's own work);
2. lookups, interleaved query by query with exact search over the same vectors (the
   baseline, `NumpyIndex`): p50 / p99 wall and CPU per lookup (k=4), and recall@1 against
   exact search on near-duplicate queries (a stored vector moved to cosine 0.95, a
   paraphrase) and on fresh queries (not stored), with a bootstrap 95% interval, and on the
   fresh queries whose exact best is at least 0.9 (those a cache would serve).
"""

from __future__ import annotations

import argparse
import csv
import gc
import glob
import json
import linecache
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import types
from functools import partial
from pathlib import Path

import numpy as np
from _semantic_holders import HolderSampler
from _semantic_layouts import (  # bench/ is the script's folder, on sys.path
    PreviousStore,
    entry,
    entry_bytes,
    full_collections,
    gc_only,
    load,
    synthetic,
    unit,
)
from _semantic_waits import (
    CallProbe,
    LockWaits,
    OneLock,
    ThreadCPU,
    TimedLock,
    TimedSearchLock,
    maintenance_state,
    merged,
)

from aigw_lab.gateway.semantic_match import NumpyIndex
from aigw_lab.gateway.semantic_store import MemorySemanticStore
from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex
from aigw_lab.gateway.vector_locks import start_daemon_thread

DATA = Path(os.environ.get("AIGW_LAB_SHARED_DATA", Path(__file__).parents[2] / "shared/data"))


def previous_index(rev: str) -> type:
    """`BackgroundIVFIndex` as of git ``rev`` (``--previous-index``, the baseline in the same
    process): its module and those it imports (``vector_rows``, ``vector_locks``, and
    ``vector_ivf_build`` from session 13 on) compiled
    from that commit under other names, so both versions run side by side."""
    root = Path(__file__).resolve().parents[1]
    saved = {}
    modules = {}
    # vector_ivf_build (session 13) is compiled only where the commit has it.
    for name in ("vector_rows", "vector_locks", "vector_ivf_build", "vector_index_ann"):
        path = f"aigw_lab/gateway/{name}.py"
        shown = subprocess.run(
            ["git", "-C", str(root), "show", f"{rev}:{path}"],
            capture_output=True,
            text=True,
            check=name != "vector_ivf_build",
        )
        if shown.returncode:
            continue
        source = shown.stdout
        module = types.ModuleType(f"_previous_{name}")
        module.__file__ = f"{rev}:{path}"
        # its source, for tracebacks and _semantic_holders' look at the line a thread is on
        linecache.cache[module.__file__] = (len(source), None, source.splitlines(True), path)
        sys.modules[module.__name__] = module  # a dataclass looks its module up
        full = f"aigw_lab.gateway.{name}"
        saved[full] = sys.modules.get(full)
        # Its imports of the two others find the previous versions while it runs.
        sys.modules[full] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 (ours)
        modules[name] = module
    for full, module in saved.items():
        sys.modules[full] = module
    return modules["vector_index_ann"].BackgroundIVFIndex


def cached_synthetic(n: int, dim: int) -> np.ndarray:
    """`synthetic` vectors (seed 0), kept in /tmp between runs (a million take a while)."""
    name = f"aigw-bench-semantic/synthetic-{n}x{dim}-seed0.npy"
    path = Path(tempfile.gettempdir()) / name
    if path.exists():
        return np.load(path)
    vectors = synthetic(np.random.default_rng(0), n, dim)
    path.parent.mkdir(exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), vectors)
    path.with_suffix(".tmp.npy").replace(path)
    return vectors


def real_texts() -> list[str]:
    texts: list[str] = []
    with tarfile.open(DATA / "gptcache_semantic_cache_pairs/similiar_qqp_full.json.gz") as tf:
        for member in tf.getmembers():
            if member.isfile():
                for item in json.load(tf.extractfile(member)):
                    texts += [item["text_a"], item["text_b"]]
    pairs = json.loads((DATA / "gptcache_semantic_cache_pairs/mock_data.json").read_text())
    texts += [t for item in pairs for t in (item["origin"], item["similar"])]
    for path in sorted(glob.glob(str(DATA / "routellm_gpt4_vs_mixtral/mmlu/*.csv"))):
        with open(path, encoding="utf-8") as handle:
            texts += [row["prompt"] for row in csv.DictReader(handle)]
    return list(dict.fromkeys(t for t in texts if t and t.strip()))


def static_vectors() -> np.ndarray | None:
    if not (DATA / "gptcache_semantic_cache_pairs").is_dir():
        print(f"static: no shared data at {DATA}; skipped")
        return None
    from aigw_lab.static_embedder import StaticEmbedder

    texts, embedder = real_texts(), StaticEmbedder()
    start, cpu = time.perf_counter(), time.process_time()
    rows = [embedder.embed(texts[i : i + 4096]) for i in range(0, len(texts), 4096)]
    vectors = unit(np.concatenate(rows))
    print(
        f"static: {len(texts):,} real prompts embedded in {time.perf_counter() - start:.1f} s "
        f"wall, {time.process_time() - cpu:.1f} s CPU ({load()})"
    )
    return np.random.default_rng(7).permutation(vectors)


def near(rng: np.random.Generator, rows: np.ndarray, cosine: float = 0.95) -> np.ndarray:
    noise = rng.standard_normal(rows.shape, dtype=np.float32)
    noise -= (noise * rows).sum(axis=1, keepdims=True) * rows
    return unit(cosine * rows + np.sqrt(1 - cosine**2) * unit(noise))


def pct(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q)) if values else float("nan")


def timed(factory, waits: list[float], per_call: LockWaits, previous_locks: bool = False):
    """``factory`` with its index's locks timed; ``previous_locks``: with the faiss lock and
    the maintenance thread's priority as before session 9 (the baseline)."""

    def build(dim: int):
        index = factory(dim)
        if hasattr(index, "_idle"):  # the Condition keeps the inner lock
            index._lock = TimedLock(index._lock, waits, per_call, "index")
        if hasattr(index, "_ivf_lock"):
            if previous_locks:
                index._ivf_lock = OneLock()
                index._spawn = partial(start_daemon_thread, nice=0)
            index._ivf_lock = TimedSearchLock(index._ivf_lock, waits, per_call, "faiss")
        return index

    return build


class Pauses:
    """Garbage collections (start, end, generation) and the watchdog's scheduling gaps."""

    def __init__(self) -> None:
        self.collections: list[tuple[float, float, int]] = []
        self.gaps: list[float] = []
        self.stalls: list[tuple[float, float]] = []  # the process off the CPU
        self._started = 0.0

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.collections.append((self._started, time.perf_counter(), info["generation"]))

    def watchdog(self, stop: threading.Event) -> None:
        last, cpu = time.perf_counter(), time.process_time()
        while not stop.is_set():
            time.sleep(0.001)
            now, now_cpu = time.perf_counter(), time.process_time()
            self.gaps.append(now - last - 0.001)
            if now - last > 0.05 and now_cpu - cpu < 0.5 * (now - last):
                self.stalls.append((last, now))
            last, cpu = now, now_cpu

    def during_gc(self, start: float, end: float) -> bool:
        return any(s < end and e > start for s, e, _ in self.collections)

    def during_stall(self, start: float, end: float) -> bool:
        return any(s < end and e > start for s, e in self.stalls)


def split_waits(name: str, waits: list[tuple[float, float]], pauses: Pauses) -> str:
    """Waits over 50 ms: how many overlap a collection, a process-wide stall, neither."""
    long = [(s, e) for s, e in waits if e - s > 0.05]
    gc_hit = [w for w in long if pauses.during_gc(*w)]
    stalled = [w for w in long if not pauses.during_gc(*w) and pauses.during_stall(*w)]
    rest = [e - s for s, e in long if not pauses.during_gc(s, e) and not pauses.during_stall(s, e)]
    worst = f"{max(rest) * 1e3:.1f} ms" if rest else "none"
    return (
        f"{name} > 50 ms: {len(long)}: {len(gc_hit)} during a GC, {len(stalled)} in a stall "
        f"of the process (off the CPU), {len(rest)} neither (worst {worst})"
    )


def fill(
    vectors: np.ndarray,
    factory,
    queries: np.ndarray,
    label: str,
    store_class=MemorySemanticStore,
    adds_per_second: float = 0.0,
    previous_locks: bool = False,
    probe_adds: bool = True,
    sample_holders: bool = True,
) -> MemorySemanticStore:
    """Add every vector through a store while two threads look up; print the waits."""
    lock_waits: list[float] = []
    add_probe, look_probes = CallProbe(), [CallProbe(), CallProbe()]
    per_call = LockWaits()
    for probe in (add_probe, *look_probes):
        probe.locks = per_call
    timed_factory = timed(factory, lock_waits, per_call, previous_locks)
    store = store_class(len(vectors) + 1, index_factory=timed_factory)
    store._lock = TimedLock(store._lock, [], per_call, "store")
    state = maintenance_state(lambda: store._indexes.get("p"))
    cpu_by_thread = ThreadCPU()
    adds: list[float] = []
    add_waits: list[tuple[float, float]] = []
    looks: list[list[float]] = [[], []]
    look_waits: list[list[tuple[float, float]]] = [[], []]
    stop = threading.Event()
    pauses = Pauses()
    holders = HolderSampler(cpu_by_thread.names)

    def watchdog() -> None:
        cpu_by_thread.name("watchdog")
        pauses.watchdog(stop)

    def reader(slot: int) -> None:
        i, probe = slot, look_probes[slot]
        cpu_by_thread.name(f"looker {slot}")
        while not stop.is_set():
            query = queries[i % len(queries)]
            start, end = probe.call(lambda: store.search("p", query, 4), state)  # noqa: B023
            looks[slot].append(end - start)
            if end - start > 0.05:
                look_waits[slot].append((start, end))
            i += 2
            time.sleep(0.0005)  # a caller at a realistic rate, not a spin

    threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in (0, 1)]
    threads.append(threading.Thread(target=watchdog, daemon=True))
    threads.append(threading.Thread(target=cpu_by_thread.run, args=(stop,), daemon=True))
    if sample_holders:
        threads.append(threading.Thread(target=holders.run, args=(stop,), daemon=True))
    cpu_by_thread.name("adder")
    cpu_by_thread.sample()
    gc.callbacks.append(pauses.on_gc)
    for thread in threads:
        thread.start()
    wall, cpu = time.perf_counter(), time.process_time()
    pace = 1.0 / adds_per_second if adds_per_second else 0.0
    for i in range(len(vectors)):
        item = entry(i, vectors[i])
        if probe_adds:
            start, end = add_probe.call(lambda: store.add(item), state)  # noqa: B023 (now)
        else:  # the fill's time as a target: no probe's ~13 µs per add
            start = time.perf_counter()
            store.add(item)
            end = time.perf_counter()
        adds.append(end - start)
        if end - start > 0.05:
            add_waits.append((start, end))
        # Paced: sleep once 2 ms ahead. A sleep after every add (100 µs at 10,000/s) hands
        # the GIL over and waits to get it back each time: the adder managed 4,600 adds/s.
        ahead = wall + (i + 1) * pace - time.perf_counter() if pace else 0.0
        if ahead > 0.002:
            time.sleep(ahead)
    filled = time.perf_counter() - wall
    index = store._indexes["p"]
    if hasattr(index, "wait_idle"):
        index.wait_idle()
    idle = time.perf_counter() - wall
    stop.set()
    for thread in threads:
        thread.join()
    gc.callbacks.remove(pauses.on_gc)
    cpu = time.process_time() - cpu
    looked = looks[0] + looks[1]
    holder_text = ""
    if sample_holders:
        holder_text = (
            f"    {holders.attribute(merged(look_probes).slow, 'lookups')}\n"
            f"    {holders.gil_waits()}\n"
        )
    full = [e - s for s, e, g in pauses.collections if g == 2]
    print(
        f"  fill {label} ({store_class.__name__}): {len(vectors):,} adds in {filled:.1f} s "
        f"wall (index idle at {idle:.1f} s), {cpu:.1f} s CPU, {load()}\n"
        f"    add    ms: p50 {pct(adds, 0.5) * 1e3:.3f}  p99.9 {pct(adds, 0.999) * 1e3:.1f}  "
        f"max {max(adds) * 1e3:.1f}\n"
        f"    lookup ms: p50 {pct(looked, 0.5) * 1e3:.3f}  p99.9 {pct(looked, 0.999) * 1e3:.1f}"
        f"  max {max(looked) * 1e3:.1f}  ({len(looked):,} lookups during the fill)\n"
        f"    callers' wait for the index's lock: p99.9 {pct(lock_waits, 0.999) * 1e3:.2f} ms, "
        f"max {max(lock_waits, default=0) * 1e3:.1f} ms over {len(lock_waits):,} takes\n"
        f"    {split_waits('adds', add_waits, pauses)}\n"
        f"    {split_waits('lookups', look_waits[0] + look_waits[1], pauses)}\n"
        f"    {add_probe.summary('adds') if probe_adds else 'adds: not probed'}\n"
        f"    {merged(look_probes).summary('lookups')}\n"
        f"{holder_text}"
        f"    CPU s by thread: {cpu_by_thread.summary()}\n"
        f"    GC: {len(pauses.collections):,} collections, {len(full)} full, longest "
        f"{max((e - s for s, e, _ in pauses.collections), default=0) * 1e3:.1f} ms, full ones "
        f"{sum(full):.1f} s in all; watchdog's longest scheduling gap "
        f"{max(pauses.gaps, default=0) * 1e3:.1f} ms, p99.9 {pct(pauses.gaps, 0.999) * 1e3:.1f} ms"
        f"; {len(pauses.stalls)} stalls off the CPU, longest "
        f"{max((e - s for s, e in pauses.stalls), default=0) * 1e3:.1f} ms"
    )
    if hasattr(index, "builds"):
        print(
            f"    index: {index!r}, {index.builds} builds, {index.flushes} batched adds; "
            f"longest maintenance step under the lock: {index.max_locked[0] * 1e3:.1f} ms "
            f"wall, {index.max_locked[1] * 1e3:.1f} ms CPU; vectors held: "
            f"{index.nbytes / (len(index) * vectors.shape[1] * 4):.2f}x their float32 bytes"
        )
    return store


def exact_view(vectors: np.ndarray) -> NumpyIndex:
    """A NumpyIndex over ``vectors`` without a second copy (its own layout, filled in)."""
    index = NumpyIndex(vectors.shape[1])
    index._matrix = vectors
    index._ids = list(range(len(vectors)))
    index._rows = {i: i for i in range(len(vectors))}
    return index


def recall(agree: np.ndarray, rng: np.random.Generator) -> str:
    if not len(agree):
        return "n/a"
    boots = [agree[rng.integers(0, len(agree), len(agree))].mean() for _ in range(1000)]
    low, high = np.quantile(boots, [0.025, 0.975])
    return f"{agree.mean():.4f} [{low:.4f}, {high:.4f}] (n={len(agree)})"


def lookups(
    store: MemorySemanticStore,
    vectors: np.ndarray,
    fresh: np.ndarray,
    n: int,
    seed: int,
    nprobes: list[int],
    reranks: list[int] = (),
) -> None:
    """Each query through the index, through it at each of ``nprobes`` (set on its IVF
    index for that search) and of ``reranks`` (candidates re-scored exactly), through the
    store (the index plus building the entries a lookup returns) and through exact search,
    interleaved query by query."""
    rng = np.random.default_rng(seed)
    index = store._indexes["p"]
    exact = exact_view(vectors)
    dups = near(rng, vectors[rng.choice(len(vectors), n, replace=False)])
    ivf = getattr(index, "_ivf", None)

    def through_store(q, k):
        return [(e.entry_id, sim) for e, sim in store.search("p", q, k)]

    sides = [("ann", index.search, {}), ("store", through_store, {})]
    if ivf is not None:
        sides += [(f"nprobe={v}", index.search, {"nprobe": v}) for v in nprobes]
        sides += [(f"rerank={v}", index.search, {"rerank": v}) for v in reranks]
    sides.append(("exact", exact.search, {}))
    rerank = getattr(index, "rerank", None)
    deep = getattr(index, "deep_nprobe", None)  # the index's second pass (session 11)
    times = {name: [] for name, _, _ in sides}
    cpus = {name: [] for name, _, _ in sides}
    found = {name: [] for name, _, _ in sides}
    default = ivf.nprobe if ivf is not None else 0
    order = np.random.default_rng(seed + 1)
    for kind, queries in (("dup", dups), ("fresh", fresh[:n])):
        for q in queries:
            # Interleaved query by query, in a random order each time: the exact scan leaves
            # the caches cold for whoever comes next, and a rotation (before session 8) kept
            # the sides' cyclic order, so the default side ("ann") followed it almost always.
            for j in order.permutation(len(sides)).tolist():
                name, search, setting = sides[j]
                if ivf is not None:
                    ivf.nprobe = setting.get("nprobe", default)
                    index.rerank = setting.get("rerank", rerank)
                    index.deep_nprobe = None if "nprobe" in setting else deep  # one pass
                w, c = time.perf_counter(), time.thread_time()
                best = search(q, 4)
                times[name].append(time.perf_counter() - w)
                cpus[name].append(time.thread_time() - c)
                found[name].append((kind, best[0][0], best[0][1]))
    if ivf is not None:
        ivf.nprobe, index.rerank, index.deep_nprobe = default, rerank, deep
    print(f"  lookups ({n:,} near-duplicate + {min(n, len(fresh)):,} fresh), {load()}")
    for name, _, _ in sides:
        t, c = times[name], cpus[name]
        # near-duplicates first, then fresh queries (the loop above): hits, then misses
        dup, fresh_cpu = c[: len(dups)], c[len(dups) :]
        print(
            f"    {name:10s} ms: p50 {pct(t, 0.5) * 1e3:.3f} wall / {pct(c, 0.5) * 1e3:.3f} CPU, "
            f"p99 {pct(t, 0.99) * 1e3:.3f} wall / {pct(c, 0.99) * 1e3:.3f} CPU; CPU p50 "
            f"near-duplicates {pct(dup, 0.5) * 1e3:.3f} / fresh {pct(fresh_cpu, 0.5) * 1e3:.3f}"
        )
    print(f"    ann / exact, p50 wall: x{pct(times['ann'], 0.5) / pct(times['exact'], 0.5):.4f}")
    for name, _, _ in sides[:-1]:
        if name == "store":  # the same answers as "ann" (its entries' ids)
            continue
        for kind in ("dup", "fresh"):
            # (the same id; an answer as similar as the exact best, a tie with a stored
            # duplicate; the exact best's similarity)
            pairs = [
                (a[1] == e[1], a[2] >= e[2] - 1e-6, e[2])
                for a, e in zip(found[name], found["exact"], strict=True)
                if a[0] == kind
            ]
            agree = np.array([ok for ok, _, _ in pairs], dtype=float)
            served = np.array([ok for ok, _, sim in pairs if sim >= 0.9], dtype=float)
            tied = np.array([ok for _, ok, sim in pairs if sim >= 0.9], dtype=float)
            sims = [sim for _, _, sim in pairs]
            print(
                f"    {name} recall@1 {kind:5s}: {recall(agree, rng)}; exact best similarity "
                f"p10/p50/p90 {pct(sims, 0.1):.3f}/{pct(sims, 0.5):.3f}/{pct(sims, 0.9):.3f}; "
                f"where it is >= 0.9: {recall(served, rng)}, counting an equally similar "
                f"entry (a duplicate) as found: {recall(tied, rng)}"
            )


def run(name: str, vectors: np.ndarray, args: argparse.Namespace) -> None:
    held = min(2000, len(vectors) // 10)
    fresh, stored = vectors[:held], np.ascontiguousarray(vectors[held:])
    print(f"\n== {name}: {len(stored):,} entries x {stored.shape[1]} dims ({load()})")
    rng = np.random.default_rng(1)
    queries = near(rng, stored[rng.choice(len(stored), 4096, replace=False)])
    settings = dict(
        nprobe=args.nprobe,
        nlist=args.nlist,
        codes=args.codes,
        rerank=args.rerank,
        maintenance_threads=args.maintenance_threads,
        spawn=partial(start_daemon_thread, nice=args.maintenance_nice),
    )
    deep = {} if args.deep_nprobe is None else {"deep_nprobe": args.deep_nprobe or None}
    if args.niter:  # this tree's side only, like --deep-nprobe
        deep["niter"] = args.niter
    factory = partial(BackgroundIVFIndex, **settings, **deep)
    if args.previous_layout:  # the baseline first, so both fills start from a fresh heap
        fill(stored, factory, queries, "BackgroundIVFIndex", PreviousStore)
        gc.collect()
    if args.previous_locks:  # the baseline first (same run), then this session's
        fill(
            stored,
            factory,
            queries,
            "BackgroundIVFIndex, previous locks (baseline)",
            adds_per_second=args.add_rate,
            previous_locks=True,
        )
        gc.collect()
    if args.previous_index:  # the baseline and this tree's index, in turns
        previous = partial(previous_index(args.previous_index), **settings)
        for turn in range(args.rounds):
            sides = [(previous, f"BackgroundIVFIndex as of {args.previous_index}")]
            sides.append((factory, "BackgroundIVFIndex (this tree)"))
            for side, label in sides if turn % 2 == 0 else sides[::-1]:
                store = fill(
                    stored,
                    side,
                    queries,
                    f"round {turn + 1}: {label}",
                    adds_per_second=args.add_rate,
                    probe_adds=False,
                    sample_holders=args.holders,
                )
                if not args.fill_only:  # each side's recall and p50 on the same queries
                    lookups(store, stored, fresh, args.queries, 2, args.nprobes, args.reranks)
                del store
                gc.collect()
        return
    store = fill(
        stored,
        factory,
        queries,
        "BackgroundIVFIndex",
        adds_per_second=args.add_rate,
        probe_adds=args.probe_adds,
        sample_holders=args.holders,
    )
    if args.fill_only:
        return
    if args.gc_phase:
        full_collections(store, stored)
    lookups(store, stored, fresh, args.queries, seed=2, nprobes=args.nprobes, reranks=args.reranks)
    del store
    if args.fill_baseline:
        fill(stored, NumpyIndex, queries, "NumpyIndex (exact, the baseline)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="150k entries, both sources")
    parser.add_argument(
        "--quick-1m",
        action="store_true",
        help="the 1M figures in a few minutes: 1M synthetic entries (vectors cached under "
        "/tmp), 200 + 200 queries, nprobe 4 and 6 beside the default, adds not probed, no "
        "full-collection phase",
    )
    parser.add_argument(
        "--no-gc-phase", dest="gc_phase", action="store_false", help="no full-collection phase"
    )
    parser.add_argument(
        "--no-probe-adds",
        dest="probe_adds",
        action="store_false",
        help="time adds without attributing their waits (the fill's time as measured)",
    )
    parser.add_argument(
        "--no-holders",
        dest="holders",
        action="store_false",
        help="no sampler of who ran while a slow lookup waited (_semantic_holders.py)",
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--vectors", nargs="+", default=None, choices=("static", "synthetic"))
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument(
        "--dim",
        type=int,
        default=384,
        help="synthetic vectors' dimension (384: MiniLM; 256: the static fast embedder)",
    )
    parser.add_argument("--nlist", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--codes", choices=("sq8", "flat"), default="sq8")
    parser.add_argument(
        "--nprobes", type=int, nargs="*", default=[], help="also look up at these nprobe"
    )
    parser.add_argument(
        "--reranks", type=int, nargs="*", default=[], help="also look up with these rerank"
    )
    parser.add_argument("--rerank", type=int, default=16)
    parser.add_argument("--maintenance-threads", type=int, default=1)
    parser.add_argument(
        "--maintenance-nice",
        type=int,
        default=0,
        help="run maintenance jobs this much below the callers' priority (Linux)",
    )
    parser.add_argument("--fill-baseline", action="store_true", help="also fill exact search")
    parser.add_argument("--memory", action="store_true", help="memory per entry, both layouts")
    parser.add_argument(
        "--gc-only",
        action="store_true",
        help="only time full collections with --size entries in both layouts (exact index)",
    )
    parser.add_argument(
        "--previous-layout",
        action="store_true",
        help="also fill (first) a store of one object per entry, the layout before session 8",
    )
    parser.add_argument(
        "--add-rate", type=float, default=0.0, help="adds per second in the fill (0: flat out)"
    )
    parser.add_argument("--fill-only", action="store_true", help="only the fill phase")
    parser.add_argument(
        "--previous-locks",
        action="store_true",
        help="also fill (first) with the faiss lock exclusive for searches and the "
        "maintenance thread at the callers' priority (before session 9)",
    )
    parser.add_argument(
        "--previous-index",
        metavar="REV",
        default=None,
        help="BackgroundIVFIndex as of git REV (e.g. main) and this tree's, in turns in one "
        "process (adds not probed); each fill followed by its lookups' recall and p50 "
        "unless --fill-only (no GC phase, no exact fill)",
    )
    parser.add_argument(
        "--niter",
        type=int,
        default=0,
        help="this tree's k-means iterations per build (0: the index's default, 10)",
    )
    parser.add_argument(
        "--deep-nprobe",
        type=int,
        default=None,
        help="this tree's second pass for a miss (0: one pass; default: the index's, 32)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --previous-index: fills of each side, their order alternating per round",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for this run (seconds; default: Python's 0.005)",
    )
    args = parser.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.quick:
        args.size, args.queries = 150_000, 1000
        args.vectors = args.vectors or ["static", "synthetic"]
    if args.quick_1m:
        args.size, args.queries, args.vectors = 1_000_000, 200, ["synthetic"]
        args.nprobes = args.nprobes or [4, 6]
        args.gc_phase = args.probe_adds = False
    sources = args.vectors or ["synthetic"]
    if args.gc_only:
        gc_only(args.size, rounds=5)
        return 0
    if args.memory or args.quick:
        entry_bytes()
    print(
        f"bench_semantic_index: size {args.size:,}, nlist {args.nlist}, nprobe {args.nprobe}, "
        f"codes {args.codes}, maintenance threads {args.maintenance_threads}, nice "
        f"{args.maintenance_nice}, {load()}"
    )
    if "static" in sources:
        vectors = static_vectors()
        if vectors is not None:
            run("static embedder, real prompts", vectors[: args.size], args)
            del vectors
    if "synthetic" in sources:
        held = min(2000, args.size // 10)
        run("synthetic", cached_synthetic(args.size + held, args.dim), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
