"""How fast is the experiment analysis on a big call log, from the rollups?

    python bench/bench_analysis_scale.py [--rows N] [--rounds R] [--reference] [--quick]
    python bench/bench_analysis_scale.py --quick      # 1M rows, 3 rounds, with the reference
    python bench/bench_analysis_scale.py --quick --split   # and where each analysis's CPU goes
    python bench/bench_analysis_scale.py --quick --rows 10000000   # the 10M headline, cached

``--quick --rows N`` (N given) is the large-log headline in about 3 minutes: the log of N
rows is built and rolled up once into ``--cache`` (default ``$TMPDIR/aigw-bench-analysis``;
about 4-8 minutes at 10M, printed) and reused by every later run, read in place (nothing is
appended to it); then 3 interleaved rounds of the analyses against the baseline on one open
connection, and 3 of ``target_summary`` of the file's path (a fresh connection each time:
the rollups read cold, as a notebook does). No reference, no incremental refresh, no copy.

Builds a synthetic experiment log of about N call rows (default 10,000,000) in a temporary
DuckDB file: T targets x I items x as many repetitions as fit, about 10% of units retried
(two rows), 3% failed, 5% cache hits, one 0/1 score per unit that ended ok. The rows are
made in numpy/pyarrow and inserted straight into the ``calls`` and ``scores`` tables (bench
only; the gateway writes through `CallLog`). ``--keep PATH`` keeps it; ``--log PATH`` reuses
one (copied, so the original stays as it was).

Then, on one read-write connection (what a process owning the log has):

* the first rollup refresh, the one-time build a never-rolled-up log's first analysis pays
  (CPU per 1M calls);
* R interleaved rounds of the baseline ``GROUP BY trace_id`` over the same calls table,
  ``target_summary`` and ``paired_comparison`` (n_boot=1000, and n_boot=2: the bootstrap's
  share) and ``cost_over_time``; with ``--reference`` also the previous implementation over
  every row (`aigw_lab.analysis.reference`, with the index-drawn bootstrap it always had).
  Wall and CPU time per case, medians with their range and ratios to the same round's
  baseline;
* an incremental refresh after appending min(N/10, 1M) new call rows (CPU per 1M new calls),
  one after 10,000 more (a merge's fixed cost), and a refresh with nothing new;
* ``target_summary`` of the file's path (what a notebook does) while the rollups are behind
  by 1,000 calls (each analysis merges them in a private copy of the file) and, once they
  are current, R interleaved rounds of: read in place (no copy), the same forced through
  the private copy (what every path analysis paid before), and the bare file copy;
* with ``--split``, where each analysis's CPU goes: every SQL statement's CPU (the refresh
  check, the default scorer, each aggregation) and the rest (Python: bootstrap, frames),
  best of R runs.

Load averages are printed with the results: on a shared machine wall times follow the load,
ratios and CPU times much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aigw_lab.analysis import cost_over_time, paired_comparison, target_summary
from aigw_lab.store import CallLog

_T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
_CHUNK_UNITS = 1_000_000


def build_log(path: Path, *, rows: int, items: int, targets: int, seed: int) -> dict[str, int]:
    """Write the synthetic experiment to ``path``; return its shape."""
    import duckdb

    CallLog(path).close()  # the real schema, by the real migrations
    rng = np.random.default_rng(seed)
    # ~1.1 rows per unit (10% retried), so this many units give about `rows` rows.
    units_wanted = int(rows / 1.1)
    repetitions = max(1, units_wanted // (items * targets))
    n_units = items * targets * repetitions
    target_names = pa.array([f"bench/target-{t:02d}" for t in range(targets)])
    accuracy = np.linspace(0.5, 0.9, targets)
    base_latency = np.linspace(200.0, 2000.0, targets)
    base_cost = np.geomspace(0.0001, 0.01, targets)
    conn = duckdb.connect(str(path))
    written = scores_written = 0
    for start in range(0, n_units, _CHUNK_UNITS):
        unit = np.arange(start, min(n_units, start + _CHUNK_UNITS), dtype=np.int64)
        target = unit % targets
        item = (unit // targets) % items
        rep = unit // (targets * items)
        shape = rng.random(len(unit))
        retried = shape < 0.10
        failed = (shape >= 0.10) & (shape < 0.13)
        cache_hit = (shape >= 0.13) & (shape < 0.18)
        n_rows = 1 + retried
        row_unit = np.repeat(np.arange(len(unit)), n_rows)
        attempt = np.ones(len(row_unit), dtype=np.int32)
        second = np.zeros(len(row_unit), dtype=bool)
        second[np.cumsum(n_rows)[retried] - 1] = True
        attempt[second] = 2
        first_of_retry = retried[row_unit] & ~second
        t = target[row_unit]
        ok = ~failed[row_unit] & ~first_of_retry
        latency = base_latency[t] * rng.uniform(0.5, 1.8, len(row_unit))
        latency[first_of_retry] = 40.0
        cost = np.where(ok & ~cache_hit[row_unit], base_cost[t], 0.0)
        started = _T0_US + (unit[row_unit] * 3_000) + np.where(second, 200_000, 0)
        call_ids = pc.cast(pa.array(written + np.arange(len(row_unit))), pa.string())
        trace_ids = pc.cast(pa.array(unit[row_unit]), pa.string())
        status = np.where(ok, "ok", "error")
        table = pa.table(
            {
                "call_id": call_ids,
                "trace_id": trace_ids,
                "timestamp": pa.array(started, type=pa.timestamp("us", tz="UTC")),
                "provider_name": pa.array(np.full(len(row_unit), "sim-bench")),
                "request_model": pc.take(target_names, pa.array(t)),
                "status": pa.array(status),
                "error_type": pa.array(
                    np.where(ok, None, np.where(first_of_retry, "rate_limited", "timeout"))
                ),
                "cost_usd": pa.array(cost),
                "latency_ms": pa.array(latency),
                "ttft_ms": pa.array(np.where(ok, latency * 0.2, np.nan), from_pandas=True),
                "cache_status": pa.array(np.where(cache_hit[row_unit], "hit", "miss")),
                "attempt": pa.array(attempt),
                "experiment_id": pa.array(np.full(len(row_unit), "bench")),
                "simulated": pa.array(np.ones(len(row_unit), dtype=bool)),
                "run_id": pa.array(np.full(len(row_unit), "bench-run")),
                "item_id": pc.cast(pa.array(item[row_unit]), pa.string()),
                "target": pc.take(target_names, pa.array(t)),
                "repetition": pa.array(rep[row_unit].astype(np.int32)),
            }
        )
        conn.register("chunk", table)
        conn.execute("INSERT INTO calls BY NAME SELECT * FROM chunk")
        conn.unregister("chunk")
        outcome = np.cumsum(n_rows) - 1  # each unit's last row
        scored = ~failed
        value = (rng.random(len(unit)) < accuracy[target]).astype(float)
        scores = pa.table(
            {
                "call_id": pc.take(call_ids, pa.array(outcome[scored])),
                "trace_id": pc.take(trace_ids, pa.array(outcome[scored])),
                "experiment_id": pa.array(np.full(int(scored.sum()), "bench")),
                "target": pc.take(target_names, pa.array(target[scored])),
                "scorer": pa.array(np.full(int(scored.sum()), "exact_match")),
                "kind": pa.array(np.full(int(scored.sum()), "scorer")),
                "value": pa.array(value[scored]),
            }
        )
        conn.register("chunk", scores)
        conn.execute("INSERT INTO scores BY NAME SELECT * FROM chunk")
        conn.unregister("chunk")
        written += len(row_unit)
        scores_written += int(scored.sum())
    conn.execute("CHECKPOINT")
    conn.close()
    return {
        "rows": written,
        "units": n_units,
        "items": items,
        "targets": targets,
        "repetitions": repetitions,
        "scores": scores_written,
    }


def _cpu() -> float:
    # Process CPU time: DuckDB's worker threads are this process's threads.
    return time.process_time()


def measure(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of one run."""
    wall, cpu = time.perf_counter(), _cpu()
    value = run()
    return time.perf_counter() - wall, _cpu() - cpu, value


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def append_new_calls(conn: Any, rows: int, tag: str = "new", shift: int = 100_000) -> int:
    """Append ``rows`` call rows of new units (the first rows again, as another repetition
    with fresh ids ending in ``-tag``) and their scores, as a gateway would between two
    analyses."""
    conn.execute(
        f"""
        INSERT INTO calls SELECT * REPLACE (
            call_id || '-{tag}' AS call_id, trace_id || '-{tag}' AS trace_id,
            repetition + {shift} AS repetition)
        FROM calls WHERE rowid < {rows}
        """
    )
    conn.execute(
        f"""
        INSERT INTO scores SELECT * REPLACE (
            call_id || '-{tag}' AS call_id, trace_id || '-{tag}' AS trace_id)
        FROM scores WHERE call_id IN (SELECT call_id FROM calls WHERE rowid < {rows})
        """
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="call rows (default 10,000,000)")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--quick", action="store_true", help="1M rows, 3 rounds: the headline in ~2 minutes"
    )
    parser.add_argument(
        "--log",
        type=Path,
        help="a log built by an earlier run (--keep): copied, so it stays never-rolled-up",
    )
    parser.add_argument("--keep", type=Path, help="keep the built log at this path")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "aigw-bench-analysis",
        help="where --quick --rows N keeps its built, rolled-up log between runs",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also time today's implementation over every call row (slow at 10M)",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="print each analysis's CPU by SQL statement and the Python rest",
    )
    args = parser.parse_args()
    cached = args.quick and args.rows is not None
    if args.quick and not cached:
        args.rows, args.rounds, args.reference = 1_000_000, 3, True
    if args.rows is None:
        args.rows = 10_000_000

    import duckdb

    from aigw_lab.analysis.rollups import refresh_rollups

    print(
        f"python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"{os.cpu_count()} cpus, {platform.machine()}, {_load()}"
    )
    if cached:
        path = cached_log(args)
        conn = duckdb.connect(str(path))
        try:
            analysis_rounds(conn, args)
        finally:
            conn.close()
        path_rounds(path, rounds=args.rounds, copies=False)
        print(f"end: {_load()}")
        return
    with tempfile.TemporaryDirectory(prefix="aigw-bench-") as folder:
        path = Path(folder) / "calls.duckdb"
        if args.log is not None:
            shutil.copyfile(args.log, path)
            conn = duckdb.connect(str(path))
            rows = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            conn.close()
            print(f"copied {args.log}: {rows:,} rows")
        else:
            began = time.perf_counter()
            shape = build_log(
                path, rows=args.rows, items=args.items, targets=args.targets, seed=args.seed
            )
            rows = shape["rows"]
            print(
                f"built {rows:,} rows ({shape['units']:,} units = {shape['targets']} "
                f"targets x {shape['items']:,} items x {shape['repetitions']} repetitions, "
                f"{shape['scores']:,} scores) in {time.perf_counter() - began:.1f} s, "
                f"{path.stat().st_size / 1e6:,.0f} MB"
            )
            if args.keep is not None:
                shutil.copyfile(path, args.keep)
        # The read-write connection the gateway's process would have: the rollups persist.
        CallLog(path).close()  # migrate to the current schema (the rollup tables)
        conn = duckdb.connect(str(path))
        try:
            wall, cpu, done = measure(lambda: refresh_rollups(conn))
            per_million = cpu / done.calls * 1e6 if done.calls else float("nan")
            print(
                f"first refresh (the one-time build; a first analysis pays it): {wall:.2f} s "
                f"wall, {cpu:.2f} s CPU for {done.calls:,} calls = {per_million:.2f} "
                f"s CPU per 1M calls; {_load()}"
            )
            analysis_rounds(conn, args)
            new = max(1, min(rows // 10, 1_000_000))
            append_new_calls(conn, new)
            wall, cpu, done = measure(lambda: refresh_rollups(conn))
            print(
                f"incremental refresh of {done.calls:,} new calls ({done.scores:,} scores): "
                f"{wall:.2f} s wall, {cpu:.2f} s CPU = {cpu / done.calls * 1e6:.2f} s CPU per "
                f"1M new calls; {_load()}"
            )
            append_new_calls(conn, 10_000, tag="small", shift=200_000)
            wall, cpu, done = measure(lambda: refresh_rollups(conn))
            print(
                f"small refresh of {done.calls:,} new calls (the fixed cost of a merge): "
                f"{wall:.2f} s wall, {cpu:.2f} s CPU; {_load()}"
            )
            wall, cpu, _ = measure(lambda: refresh_rollups(conn))
            print(f"refresh with nothing new: {wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU")
            append_new_calls(conn, 1_000, tag="snap", shift=300_000)
            conn.execute("CHECKPOINT")
        finally:
            conn.close()
        # A path's rollups that are behind are merged in a private copy of the file.
        wall, cpu, _ = measure(lambda: target_summary(path, experiment_id="bench"))
        print(
            f"target_summary of the path, rollups behind by 1,000 calls (private copy): "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU; {_load()}"
        )
        refresh_rollups(path)
        print(f"the path's rollups current; file {path.stat().st_size / 1e6:,.0f} MB")
        path_rounds(path, rounds=args.rounds)
        print(f"end: {_load()}")


def cached_log(args: argparse.Namespace) -> Path:
    """The rolled-up log of ``args``' shape in ``args.cache``, built (and its rollups
    refreshed) the first time; reused as it is afterwards."""
    import duckdb

    from aigw_lab.analysis.rollups import refresh_rollups

    name = f"calls-{args.rows}-{args.items}-{args.targets}-{args.seed}.duckdb"
    path = args.cache / name
    if path.is_file():
        conn = duckdb.connect(str(path), read_only=True)
        try:
            rows = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            current = conn.execute(
                "SELECT calls_rowid = (SELECT max(rowid) FROM calls) FROM rollup_state"
            ).fetchall() == [(True,)]
        finally:
            conn.close()
        if current:
            print(f"cached log {path}: {rows:,} rows, rollups current, {_size(path)}")
            return path
        path.unlink()  # a build cut short: start again
    args.cache.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    building.unlink(missing_ok=True)
    print(f"building the cached log once (about 4-8 minutes at 10M rows): {path}")
    wall, cpu, shape = measure(
        lambda: build_log(
            building, rows=args.rows, items=args.items, targets=args.targets, seed=args.seed
        )
    )
    print(f"  built {shape['rows']:,} rows in {wall:.0f} s wall, {cpu:.0f} s CPU; {_load()}")
    CallLog(building).close()  # migrate to the current schema (the rollup tables)
    wall, cpu, done = measure(lambda: refresh_rollups(building))
    print(f"  first refresh of {done.calls:,} calls: {wall:.0f} s wall, {cpu:.1f} s CPU; {_load()}")
    building.rename(path)  # only a finished, rolled-up log has the cached name
    return path


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.0f} MB"


def drawn(run: Callable[[], Any]) -> Any:
    """``run`` with every bootstrap interval drawn, none computed (bench only: the session 8
    way, counted for few distinct values, 1,000 index draws per item otherwise)."""
    from aigw_lab.analysis import saddlepoint

    real = saddlepoint.MIN_ITEMS
    saddlepoint.MIN_ITEMS = 2**62
    try:
        return run()
    finally:
        saddlepoint.MIN_ITEMS = real


def analysis_rounds(conn: Any, args: argparse.Namespace) -> None:
    """Interleaved rounds of the baseline and the analyses on ``conn`` (rollups current),
    with medians, ranges and ratios; with ``--split``, each analysis's CPU by statement.
    "paired_comparison (drawn, s8)" is the same analysis with the bootstrap drawn as in
    session 8 (`drawn`), interleaved for the comparison."""
    from aigw_lab.analysis.reference import (
        reference_cost_over_time,
        reference_paired_comparison,
        reference_target_summary,
    )

    summary = target_summary(conn, experiment_id="bench", n_boot=2)
    names = summary["target"].tolist()
    a, b = names[-1], names[-2]
    trace_sql = "SELECT count(*) FROM (SELECT trace_id, count(*) FROM calls GROUP BY 1)"
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("GROUP BY trace_id (baseline)", lambda: conn.execute(trace_sql).fetchall()),
        (
            "target_summary",
            lambda: target_summary(conn, experiment_id="bench", n_boot=args.n_boot),
        ),
        (
            "target_summary (n_boot=2)",
            lambda: target_summary(conn, experiment_id="bench", n_boot=2),
        ),
        (
            "paired_comparison",
            lambda: paired_comparison(conn, a, b, experiment_id="bench", n_boot=args.n_boot),
        ),
        (
            "paired_comparison (drawn, s8)",
            lambda: drawn(
                lambda: paired_comparison(conn, a, b, experiment_id="bench", n_boot=args.n_boot)
            ),
        ),
        (
            "paired_comparison (n_boot=2)",
            lambda: paired_comparison(conn, a, b, experiment_id="bench", n_boot=2),
        ),
        ("cost_over_time (hour)", lambda: cost_over_time(conn, experiment_id="bench")),
    ]
    if args.reference:
        cases += [
            (
                "reference target_summary",
                lambda: reference_target_summary(conn, experiment_id="bench", n_boot=args.n_boot),
            ),
            (
                "reference paired_comparison",
                lambda: reference_paired_comparison(
                    conn, a, b, experiment_id="bench", n_boot=args.n_boot
                ),
            ),
            (
                "reference cost_over_time",
                lambda: reference_cost_over_time(conn, experiment_id="bench"),
            ),
        ]
    walls: dict[str, list[float]] = {label: [] for label, _ in cases}
    cpus: dict[str, list[float]] = {label: [] for label, _ in cases}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} ({_load()}):")
        for label, run in cases:  # interleaved: every case once per round
            wall, cpu, _ = measure(run)
            walls[label].append(wall)
            cpus[label].append(cpu)
            print(f"  {label:<30} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    base_wall = walls[cases[0][0]]
    base_cpu = cpus[cases[0][0]]
    print(
        f"median over {args.rounds} rounds [min-max]; ratio = time / the same round's "
        "GROUP BY trace_id, median [min-max]:"
    )
    for label, _ in cases:
        w, c = walls[label], cpus[label]
        rw = [x / y for x, y in zip(w, base_wall, strict=True)]
        rc = [x / y for x, y in zip(c, base_cpu, strict=True)]
        print(
            f"  {label:<30} wall {_med(w):6.2f} s [{min(w):.2f}-{max(w):.2f}]  "
            f"CPU {_med(c):6.2f} s [{min(c):.2f}-{max(c):.2f}]  "
            f"ratio wall {_med(rw):5.2f}x [{min(rw):.2f}-{max(rw):.2f}]  "
            f"CPU {_med(rc):5.2f}x [{min(rc):.2f}-{max(rc):.2f}]"
        )
    if args.split:
        split_cases = [c for c in cases if c[0] != cases[0][0]]
        print_split(split_cases, rounds=args.rounds, baseline=min(base_cpu))


def path_rounds(path: Path, *, rounds: int, copies: bool = True) -> None:
    """Interleaved: a path analysis read in place, and with ``copies`` the same forced
    through the private copy (as before the in-place read) and the bare copy of the file."""
    from aigw_lab.analysis import rollups
    from aigw_lab.store.files import copy_database

    def through_copy() -> Any:
        real = rollups._open_if_current
        rollups._open_if_current = lambda _path: None  # bench only: the old path
        try:
            return target_summary(path, experiment_id="bench")
        finally:
            rollups._open_if_current = real

    def bare_copy() -> None:
        with tempfile.TemporaryDirectory(prefix="aigw-bench-copy-") as folder:
            copy_database(path, Path(folder))

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("path, in place", lambda: target_summary(path, experiment_id="bench")),
        ("path, private copy (before)", through_copy),
        ("the file copy alone", bare_copy),
    ]
    if not copies:
        cases = cases[:1]
    walls: dict[str, list[float]] = {label: [] for label, _ in cases}
    cpus: dict[str, list[float]] = {label: [] for label, _ in cases}
    for round_ in range(rounds):
        print(f"path round {round_ + 1} ({_load()}):")
        for label, run in cases:
            wall, cpu, _ = measure(run)
            walls[label].append(wall)
            cpus[label].append(cpu)
            print(f"  {label:<30} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    for label, _ in cases:
        w, c = walls[label], cpus[label]
        print(
            f"  {label:<30} wall {_med(w):6.2f} s [{min(w):.2f}-{max(w):.2f}]  "
            f"CPU {_med(c):6.2f} s [{min(c):.2f}-{max(c):.2f}]"
        )


def print_split(
    cases: list[tuple[str, Callable[[], Any]]], *, rounds: int, baseline: float
) -> None:
    """Each case's CPU by SQL statement (the reader the analyses use, timed) and the rest
    (Python: bootstrap, frames), from its cheapest of ``rounds`` runs."""
    from aigw_lab.analysis import _source, rollups

    statements: list[tuple[float, str]] = []
    real = rollups._connection_reader

    def timed_reader(conn: Any, *, where: str) -> Any:
        read = real(conn, where=where)

        def timed(sql: str, params: Any = ()) -> Any:
            cpu = _cpu()
            try:
                return read(sql, params)
            finally:
                statements.append((_cpu() - cpu, " ".join(sql.split())[:70]))

        return timed

    rollups._connection_reader = timed_reader
    _source._connection_reader = timed_reader
    try:
        print(f"split (best of {rounds}; CPU ms; baseline GROUP BY {baseline * 1000:.0f} ms):")
        for label, run in cases:
            if label.startswith("reference"):
                continue
            best: tuple[float, list[tuple[float, str]]] | None = None
            for _ in range(rounds):
                statements.clear()
                _, cpu, _ = measure(run)
                if best is None or cpu < best[0]:
                    best = (cpu, list(statements))
            assert best is not None
            total, parts = best
            sql = sum(c for c, _ in parts)
            print(
                f"  {label}: {total * 1000:.0f} ms = SQL {sql * 1000:.0f} ms "
                f"({len(parts)} statements) + Python {(total - sql) * 1000:.0f} ms; {_load()}"
            )
            for cpu, text in parts:
                print(f"      {cpu * 1000:6.1f} ms  {text}")
    finally:
        rollups._connection_reader = real
        _source._connection_reader = real


def _med(values: list[float]) -> float:
    return float(np.median(values))


if __name__ == "__main__":
    main()
