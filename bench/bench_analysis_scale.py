"""How fast is the experiment analysis on a big call log?

    python bench/bench_analysis_scale.py [--rows N] [--items I] [--targets T] [--n-boot B]

Builds a synthetic experiment log of about N call rows (default 10,000,000) in a temporary
DuckDB file: T targets x I items x as many repetitions as fit, about 10% of units retried
(two rows), 3% failed, 5% cache hits, one 0/1 score per unit that ended ok. The rows are
made in numpy/pyarrow and inserted straight into the ``calls`` and ``scores`` tables (bench
only; the gateway writes through `CallLog`). Then it times, on one read-only connection:

* ``target_summary`` (per-target aggregation in DuckDB plus the item bootstrap in numpy:
  its cost grows with items x targets x n_boot, not with rows);
* ``paired_comparison`` of two targets;
* ``unit_frame`` as the report uses it (2,000 units per target) and in full;
* ``cost_over_time`` per hour;
* opening a snapshot of the file (what ``aigw-lab report --db`` does first).

Baselines from the same run put them in proportion: ``SELECT target, count(*) ... GROUP BY
target`` (one scan, four groups) and ``GROUP BY trace_id`` (one scan, a group per trace: the
shape of the first step of the unit aggregation). Prints seconds, rows/s and ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aigw_lab.analysis import cost_over_time, paired_comparison, target_summary, unit_frame
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


def timed(label: str, rows: int, run: Callable[[], Any], results: dict[str, float]) -> Any:
    began = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - began
    results[label] = seconds
    print(f"  {label:<34} {seconds:8.2f} s  {rows / seconds:>14,.0f} rows/s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-full-units",
        action="store_true",
        help="skip materialising every unit as a DataFrame",
    )
    args = parser.parse_args()

    import duckdb

    print(
        f"python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"{os.cpu_count()} cpus, {platform.machine()}"
    )
    with tempfile.TemporaryDirectory(prefix="aigw-bench-") as folder:
        path = Path(folder) / "calls.duckdb"
        began = time.perf_counter()
        shape = build_log(
            path, rows=args.rows, items=args.items, targets=args.targets, seed=args.seed
        )
        size = path.stat().st_size / 1e6
        print(
            f"built {shape['rows']:,} rows ({shape['units']:,} units = {shape['targets']} "
            f"targets x {shape['items']:,} items x {shape['repetitions']} repetitions, "
            f"{shape['scores']:,} scores) in {time.perf_counter() - began:.1f} s, "
            f"{size:,.0f} MB"
        )
        rows = shape["rows"]
        results: dict[str, float] = {}
        print("baselines:")
        conn = duckdb.connect(str(path), read_only=True)
        try:
            count_sql = "SELECT target, count(*) FROM calls GROUP BY target"
            trace_sql = "SELECT count(*) FROM (SELECT trace_id, count(*) FROM calls GROUP BY 1)"
            timed(
                "GROUP BY target (count)", rows, lambda: conn.execute(count_sql).fetchall(), results
            )
            timed(
                "GROUP BY trace_id (count)",
                rows,
                lambda: conn.execute(trace_sql).fetchall(),
                results,
            )
            print("analysis:")
            summary = timed(
                "target_summary",
                rows,
                lambda: target_summary(conn, experiment_id="bench", n_boot=args.n_boot),
                results,
            )
            timed(
                "target_summary (n_boot=2, ~SQL only)",
                rows,
                lambda: target_summary(conn, experiment_id="bench", n_boot=2),
                results,
            )
            names = summary["target"].tolist()
            timed(
                "paired_comparison",
                rows,
                lambda: paired_comparison(
                    conn, names[-1], names[-2], experiment_id="bench", n_boot=args.n_boot
                ),
                results,
            )
            timed(
                "unit_frame (2,000 per target)",
                rows,
                lambda: unit_frame(conn, "bench", max_per_target=2000),
                results,
            )
            if not args.skip_full_units:
                timed("unit_frame (every unit)", rows, lambda: unit_frame(conn, "bench"), results)
            timed(
                "cost_over_time (hour)",
                rows,
                lambda: cost_over_time(conn, experiment_id="bench"),
                results,
            )
        finally:
            conn.close()
        timed("CallLog.snapshot(path) open", rows, lambda: CallLog.snapshot(path).close(), results)
        print(
            summary[
                [
                    "target",
                    "units",
                    "error_rate",
                    "latency_p50_ms",
                    "quality_mean",
                    "quality_ci_low",
                    "quality_ci_high",
                ]
            ].to_string(index=False)
        )
        base = results["GROUP BY target (count)"]
        per_trace = results["GROUP BY trace_id (count)"]
        print("ratios (time / baseline):")
        for label, seconds in results.items():
            print(
                f"  {label:<34} {seconds / base:7.1f}x count-by-target  "
                f"{seconds / per_trace:5.1f}x group-by-trace"
            )


if __name__ == "__main__":
    main()
