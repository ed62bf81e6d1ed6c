"""How fast does the call log take rows, end to end, and does its memory stay flat?

    python bench/bench_log_writer.py [--rows N] [--batch-size B] [--max-queue Q]
    python bench/bench_log_writer.py --checkpoints 3 --rows 400000 [--insert-rows 4000]
    python bench/bench_log_writer.py --quick    # the same, 2 rounds of 300,000 rows

One thread appends N realistic `CallRecord`s to a `CallLog` on a temporary file as fast as
it can, then flushes; rows/s is N over that whole time. Two modes: records built fresh for
every row (what the gateway does: the record's construction is part of the cost), and
records taken from a pre-built pool (the writer alone). Baselines, measured in the same run
on the same machine, put the numbers in proportion:

* ``executemany``: DuckDB's row-at-a-time parameterised insert (20k rows; the naive way);
* ``raw arrow``: the same rows transposed to one pyarrow table and inserted with one
  statement, with no queue or thread (about the ceiling for this machine).

``--compare-paths R`` instead compares how batches are built: pyarrow tables against the
pandas columns the core install uses (pyarrow is optional), R rounds interleaved (arrow,
pandas, pandas, arrow, ...), each in a fresh process (the pandas one with pyarrow import
blocked, as when it is not installed), each path flat out (``--rows`` pre-built
records appended then flushed) and at a realistic rate (``--rate`` rows/s for
``--seconds``, the appender sleeping between rows). Wall time and process CPU time (all
threads) are printed side by side, as medians, with pandas / arrow ratios.

``--checkpoints R`` measures what DuckDB does after the inserts: ``--rows`` pre-built rows
inserted in ``--insert-rows``-row batches (the writer's size at 2,000 calls/s with a 2 s age)
straight through the writer's insert path into a new file, then one final ``CHECKPOINT``
and close, with DuckDB's default checkpoint threshold (16MB) against the call log's
(`aigw_lab.store.insert_path.CHECKPOINT_THRESHOLD`), R rounds interleaved. It prints
process CPU per row (DuckDB's threads included) and wall per row, the file's size and the
largest write-ahead log seen; then the same rows through a whole `CallLog` (spool on, a
flush every ``--insert-rows`` rows, close included), process CPU per row for both.

Memory: resident set size is sampled every 5% of the rows; "growth after warm-up" is the
largest sample minus the one at 20%, which stays small when the bounded queue works.
Rows are appended as the gateway appends its own (``built=True``: JSON columns stored
without re-validation; see docs/call_log.md). CPU time (all threads) is printed beside wall
time, and the load average at the start and end. Exits 0; the target (>= 200,000 rows/s,
issue 13 §1) is reported, not enforced. For the same at paced call rates, and a run of
the previous insert path beside the current one, see ``bench_log_rates.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path

from aigw_lab.store import CALL_COLUMNS, CallLog, CallRecord
from aigw_lab.store.schema import arrow_schema

TARGET_ROWS_PER_S = 200_000  # issue 13 §1 (was 100,000)
_T0 = datetime(2025, 1, 1, tzinfo=UTC)
_MODELS = [
    ("openai", "gpt-4o-mini", "openai"),
    ("anthropic", "claude-3-5-haiku", "anthropic"),
    ("workers-ai", "@cf/meta/llama-3.1-8b-instruct", "workers-ai"),
]
_PROMPTS = [
    "What is 2 + 2?",
    "Summarise the following paragraph in one sentence: the quick brown fox jumps over it.",
    "Translate to French: the weather is nice today, let's go for a walk by the river.",
]


def realistic_record(i: int) -> CallRecord:
    """A row like the gateway writes: mostly successes, some errors, retries, cache hits."""
    provider, model, api_format = _MODELS[i % 3]
    prompt = _PROMPTS[i % len(_PROMPTS)]
    failed = i % 17 == 0
    request = {"model": model, "messages": [{"role": "user", "content": prompt}], "n": i % 5}
    return CallRecord(
        call_id=f"call_{i:012x}",
        trace_id=f"trace_{i // 2:012x}",
        timestamp=_T0 + timedelta(microseconds=i * 731),
        provider_name=provider,
        request_model=model,
        response_model=None if failed else f"{model}-2024-07-18",
        response_id=None if failed else f"resp_{i:010d}",
        api_format=api_format,
        request_json=json.dumps(request),
        response_text=None if failed else f"Answer number {i}: " + prompt[::-1][:60],
        finish_reason=None if failed else "stop",
        status="error" if failed else "ok",
        error_type="rate_limited" if failed else None,
        error_message="429 Too Many Requests: slow down" if failed else None,
        http_status_code=429 if failed else 200,
        input_tokens=None if failed else 12 + i % 300,
        output_tokens=None if failed else 5 + i % 700,
        cache_read_input_tokens=None if failed else i % 64,
        cost_usd=None if failed or i % 11 == 0 else (i % 1000) * 1.7e-7,
        latency_ms=50.0 + (i * 7919) % 4000 / 3.0,
        ttfb_ms=20.0 + i % 300,
        ttft_ms=None if failed else 25.0 + i % 310,
        upstream_ms=49.0 + (i * 7919) % 4000 / 3.0,
        overhead_ms=0.02 + (i % 50) / 1000,
        stream=i % 4 == 0,
        cache_status="hit" if i % 23 == 0 else "miss",
        attempt=2 if i % 2 else 1,
        user_id=f"user-{i % 97}",
        experiment_id="bench",
        tags_json='{"team": "research", "run": "bench"}',
        simulated=True,
    )


def rss_mib() -> float:
    """Current resident set size (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def bench_calllog(path: Path, rows: int, *, fresh: bool, batch_size: int, **settings):
    """Append ``rows`` records (built fresh or from a pool), flush; return rows/s and RSS."""
    pool = [] if fresh else [realistic_record(i) for i in range(10_000)]
    samples: list[float] = []
    every = max(1, rows // 20)
    log = CallLog(path, batch_size=batch_size, **settings)
    append = log.append
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(rows):
        append(realistic_record(i) if fresh else pool[i % 10_000], built=True)
        if i % every == 0:
            samples.append(rss_mib())
    log.flush()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    samples.append(rss_mib())
    written = log.rows_written
    log.close()
    assert written == rows, f"wrote {written} of {rows} rows"
    return rows / elapsed, samples, rows / cpu


def bench_executemany(path: Path, records: list[CallRecord]) -> float:
    import duckdb

    conn = duckdb.connect(str(path))
    _create_calls(conn)
    as_tuple = attrgetter(*CALL_COLUMNS)
    values = [as_tuple(r) for r in records]
    placeholders = ", ".join("?" * len(CALL_COLUMNS))
    started = time.perf_counter()
    conn.executemany(f"INSERT INTO calls VALUES ({placeholders})", values)
    elapsed = time.perf_counter() - started
    conn.close()
    return len(records) / elapsed


def bench_raw_arrow(path: Path, records: list[CallRecord]) -> float:
    """The same rows as one pyarrow table and one INSERT: no queue, no thread."""
    import duckdb
    import pyarrow as pa

    conn = duckdb.connect(str(path))
    _create_calls(conn)
    schema = arrow_schema()
    started = time.perf_counter()
    arrays = [
        pa.array(list(map(attrgetter(name), records)), type=field.type)
        for name, field in zip(CALL_COLUMNS, schema, strict=True)
    ]
    batch = pa.Table.from_arrays(arrays, schema=schema)
    conn.register("batch", batch)
    conn.execute("INSERT INTO calls SELECT * FROM batch")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(records) / elapsed


def timed_flat_out(path: Path, pool: list[CallRecord], rows: int) -> tuple[float, float]:
    """Append ``rows`` pool records as fast as possible and flush: (wall s, CPU s)."""
    log = CallLog(path)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(rows):
        log.append(pool[i % len(pool)])
    log.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert log.rows_written == rows
    log.close()
    return wall, cpu


def timed_at_rate(path: Path, pool: list[CallRecord], rate: float, seconds: float):
    """Append at ``rate`` rows/s for ``seconds``, then flush: (rows, CPU s, flush wall s).
    CPU is the whole process (the pacing loop's sleeps cost none)."""
    log = CallLog(path)
    rows = int(rate * seconds)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(rows):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        log.append(pool[i % len(pool)])
    flushed = time.perf_counter()
    log.flush()
    flushed = time.perf_counter() - flushed
    cpu = time.process_time() - cpu
    assert log.rows_written == rows
    log.close()
    return rows, cpu, flushed


def one_checkpoint_run(folder: Path, table, rows: int, per_insert: int, threshold: str | None):  # noqa: ANN001
    """Insert ``rows`` rows as ``table`` (``per_insert`` rows) over and over, then checkpoint
    and close: (process CPU s, wall s, MiB on disk, largest WAL MiB)."""
    import duckdb

    from aigw_lab.store.insert_path import InsertPath, tune_log_database

    path = folder / f"ckpt-{time.perf_counter_ns()}.duckdb"
    conn = duckdb.connect(str(path))
    if threshold is None:
        tune_log_database(conn, None)
    else:
        conn.execute(f"SET checkpoint_threshold = '{threshold}'")
    _create_calls(conn)
    cursor = conn.cursor()
    inserts = InsertPath(cursor, json_typed=True)
    wal = path.with_name(path.name + ".wal")
    largest_wal = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rows // per_insert):
        inserts.insert(table, built=True)
        if wal.exists():
            largest_wal = max(largest_wal, wal.stat().st_size)
    cursor.close()
    conn.execute("CHECKPOINT")
    conn.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    size = sum(f.stat().st_size for f in folder.glob(path.name + "*")) / 2**20
    for f in folder.glob(path.name + "*"):
        f.unlink()
    return cpu, wall, size, largest_wal / 2**20


def compare_checkpoints(args: argparse.Namespace) -> int:
    """DuckDB's default checkpoint threshold against the call log's, interleaved."""
    import statistics

    from aigw_lab.store.batches import ColumnBatches
    from aigw_lab.store.insert_path import CHECKPOINT_THRESHOLD
    from aigw_lab.store.schema import COLUMN_TYPES

    batches = ColumnBatches(COLUMN_TYPES, arrow=True)
    records = [realistic_record(i) for i in range(args.insert_rows)]
    arrays = [batches.convert(i, [r[i] for r in records]) for i in range(len(COLUMN_TYPES))]
    table = batches.table(arrays, json=True)
    rows = args.rows // args.insert_rows * args.insert_rows
    sides = {"DuckDB default (16MB)": "16MB", f"call log ({CHECKPOINT_THRESHOLD})": None}
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in sides}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-log-ckpt-") as folder:
        for round_ in range(args.checkpoints):
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for name in order:
                results[name].append(
                    one_checkpoint_run(Path(folder), table, rows, args.insert_rows, sides[name])
                )
    print(
        f"checkpoint threshold: {rows:,} rows in {args.insert_rows:,}-row inserts, then a "
        f"final CHECKPOINT; {args.checkpoints} rounds interleaved, medians [min-max]"
    )
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.machine()} | {os.cpu_count()} "
        f"cores | Python {platform.python_version()} | load average at the start "
        + " ".join(f"{x:.2f}" for x in load_start)
    )
    print()
    print("| threshold | CPU µs/row (all threads) | wall µs/row | file MiB | largest WAL MiB |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, runs in results.items():
        cpu = [c / rows * 1e6 for c, _, _, _ in runs]
        wall = [w / rows * 1e6 for _, w, _, _ in runs]
        medians[name] = statistics.median(cpu)
        print(
            f"| {name} | {statistics.median(cpu):.2f} [{min(cpu):.2f}-{max(cpu):.2f}] | "
            f"{statistics.median(wall):.2f} [{min(wall):.2f}-{max(wall):.2f}] | "
            f"{statistics.median(r[2] for r in runs):.1f} | "
            f"{max(r[3] for r in runs):.1f} |"
        )
    before, after = medians.values()
    print(f"CPU per row, call log / DuckDB default: {after / before:.2f}")
    whole_log_checkpoints(args, rows, sides)
    print("load average at the end " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


def whole_log_checkpoints(args: argparse.Namespace, rows: int, sides: dict) -> None:
    """The same rows through a whole `CallLog` (spool on, built rows, a flush every
    ``--insert-rows`` rows): process CPU per row, both thresholds, interleaved."""
    import statistics

    pool = [realistic_record(i) for i in range(10_000)]
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="bench-log-ckpt-") as folder:
        for round_ in range(args.checkpoints):
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for name in order:
                threshold = sides[name]
                config = None if threshold is None else {"checkpoint_threshold": threshold}
                path = Path(folder) / f"log-{round_}-{threshold}.duckdb"
                log = CallLog(path, config=config, batch_size=args.insert_rows)
                start = time.process_time()
                for i in range(rows):
                    log.append(pool[i % 10_000], built=True)
                    if i % args.insert_rows == args.insert_rows - 1:
                        log.flush()
                log.close()
                cpu[name].append((time.process_time() - start) / rows * 1e6)
                for leftover in Path(folder).glob(path.name + "*"):
                    if leftover.is_file():
                        leftover.unlink()
    print(
        f"\nthrough a whole CallLog (spool on, a flush every {args.insert_rows:,} rows, close "
        "included): process CPU µs per row"
    )
    for name, values in cpu.items():
        print(
            f"  {name:<24} {statistics.median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]"
        )


_BLOCK_PYARROW = "import sys; sys.modules['pyarrow'] = None; "  # as if not installed


def one_path(args: argparse.Namespace) -> int:
    """One path's measures as JSON (run by `compare_paths` in a fresh process)."""
    from aigw_lab.store.batches import arrow_installed

    pool = [realistic_record(i) for i in range(10_000)]
    with tempfile.TemporaryDirectory(prefix="bench-log-path-") as folder:
        wall, cpu = timed_flat_out(Path(folder) / "flat.duckdb", pool, args.rows)
        rows, rate_cpu, flush = timed_at_rate(
            Path(folder) / "rate.duckdb", pool, args.rate, args.seconds
        )
    measures = {
        "arrow": arrow_installed(),
        "flat_wall": wall,
        "flat_cpu": cpu,
        "rate_cpu": rate_cpu / rows * 1e6,
        "rate_flush": flush * 1e3,
    }
    print(json.dumps(measures))
    return 0


def compare_paths(args: argparse.Namespace) -> int:
    """Arrow against pandas batches, each round in two fresh processes (the pandas one with
    pyarrow import blocked, as in the core install), interleaved; medians and ratios."""
    import statistics
    import subprocess

    results: dict[str, list[dict[str, float]]] = {"arrow": [], "pandas": []}
    argv = [f"--rows={args.rows}", f"--rate={args.rate}", f"--seconds={args.seconds}"]
    for round_ in range(args.compare_paths):
        order = ("arrow", "pandas") if round_ % 2 == 0 else ("pandas", "arrow")
        for name in order:
            block = _BLOCK_PYARROW if name == "pandas" else ""
            code = (
                f"{block}import runpy; sys.argv = {[__file__, '--one-path', *argv]!r}; "
                f"runpy.run_path({__file__!r}, run_name='__main__')"
            )
            done = subprocess.run(
                [sys.executable, "-c", "import sys; " + code],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            assert measured["arrow"] == (name == "arrow"), measured
            results[name].append(measured)
    med = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "arrow"}
        for name, runs in results.items()
    }
    print(
        f"call log batches, arrow vs pandas (pyarrow blocked): {args.compare_paths} rounds "
        f"interleaved, fresh process each; flat out {args.rows:,} rows; "
        f"at {args.rate:,.0f} rows/s for {args.seconds} s"
    )
    print(
        f"{datetime.now(UTC):%Y-%m-%d} | {platform.machine()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()} | load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| measure (median) | arrow | pandas | pandas / arrow |")
    print("|---|---|---|---|")
    lines = [
        ("flat out: rows/s (wall)", "flat_wall", lambda v: args.rows / v, "{:,.0f}"),
        ("flat out: CPU µs per row", "flat_cpu", lambda v: v / args.rows * 1e6, "{:.2f}"),
        ("at rate: CPU µs per row", "rate_cpu", lambda v: v, "{:.1f}"),
        ("at rate: final flush ms", "rate_flush", lambda v: v, "{:.1f}"),
    ]
    for label, key, show, fmt in lines:
        arrow, pandas = show(med["arrow"][key]), show(med["pandas"][key])
        print(f"| {label} | {fmt.format(arrow)} | {fmt.format(pandas)} | {pandas / arrow:.2f} |")
    return 0


def _create_calls(conn) -> None:
    from aigw_lab.store.schema import apply_migrations

    apply_migrations(conn)


def record_size_bytes(record: CallRecord) -> int:
    """Approximate memory one record holds: the object plus its own field values (None and
    booleans are shared singletons, so they do not count)."""
    values = [getattr(record, name) for name in CALL_COLUMNS]
    return sys.getsizeof(record) + sum(
        sys.getsizeof(v) for v in values if v is not None and not isinstance(v, bool)
    )


def build_rate(rows: int) -> float:
    """Records built per second with no logging at all: the ceiling for the fresh mode."""
    started = time.perf_counter()
    for i in range(rows):
        realistic_record(i)
    return rows / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per CallLog run")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument(
        "--max-queue", type=int, default=None, help="rows waiting in memory (default: CallLog's)"
    )
    parser.add_argument("--executemany-rows", type=int, default=5_000)
    parser.add_argument("--arrow-rows", type=int, default=100_000)
    parser.add_argument(
        "--compare-paths", type=int, default=0, metavar="R", help="arrow vs pandas, R rounds"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="rows/s (--compare-paths)")
    parser.add_argument("--seconds", type=float, default=4.0, help="(--compare-paths)")
    parser.add_argument(
        "--checkpoints", type=int, default=0, metavar="R", help="checkpoint threshold, R rounds"
    )
    parser.add_argument("--insert-rows", type=int, default=4_000, help="(--checkpoints)")
    parser.add_argument(
        "--quick", action="store_true", help="the headline: --checkpoints 2 --rows 300000"
    )
    parser.add_argument("--one-path", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_path:
        return one_path(args)
    if args.quick:
        args.checkpoints, args.rows = 2, 300_000
    if args.compare_paths:
        return compare_paths(args)
    if args.checkpoints:
        return compare_checkpoints(args)
    settings = {"batch_size": args.batch_size, "max_queue": args.max_queue}
    if args.max_queue is None:
        # CallLog's own default, so the bench measures what a user gets
        del settings["max_queue"]

    with tempfile.TemporaryDirectory(prefix="bench-log-") as folder:
        tmp = Path(folder)
        baseline = [realistic_record(i) for i in range(max(args.executemany_rows, args.arrow_rows))]
        executemany = bench_executemany(tmp / "many.duckdb", baseline[: args.executemany_rows])
        raw_arrow = bench_raw_arrow(tmp / "arrow.duckdb", baseline[: args.arrow_rows])
        del baseline
        building = build_rate(min(args.rows, 200_000))

        load_start = os.getloadavg()
        pool_rate, pool_rss, pool_cpu = bench_calllog(
            tmp / "pool.duckdb", args.rows, fresh=False, **settings
        )
        fresh_rate, fresh_rss, fresh_cpu = bench_calllog(
            tmp / "fresh.duckdb", args.rows, fresh=True, **settings
        )
        size_mib = (tmp / "fresh.duckdb").stat().st_size / 2**20

    print(
        f"call log writer benchmark: {args.rows:,} rows, batch_size={args.batch_size:,}, "
        f"max_queue={'default' if args.max_queue is None else f'{args.max_queue:,}'}"
    )
    print(
        f"{datetime.now(UTC):%Y-%m-%d} | {platform.machine()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()} | {platform.system()}"
    )
    print()
    print(f"| {'run':<48} | {'rows/s':>9} | {'vs executemany':>14} | {'vs raw arrow':>12} |")
    print(f"|{'-' * 50}|{'-' * 11}|{'-' * 16}|{'-' * 14}|")
    table = [
        ("CallLog, pre-built records (the writer)", pool_rate),
        ("CallLog, record built per row (gateway-like)", fresh_rate),
        ("  for scale: building records only, no log", building),
        (f"baseline: executemany ({args.executemany_rows:,} rows)", executemany),
        (f"baseline: raw arrow, one insert ({args.arrow_rows:,} rows)", raw_arrow),
    ]
    for name, rate in table:
        print(
            f"| {name:<48} | {rate:>9,.0f} | {rate / executemany:>13.1f}x | "
            f"{rate / raw_arrow:>11.2f}x |"
        )
    print()
    for label, samples in (("pre-built", pool_rss), ("built per row", fresh_rss)):
        quarters = [samples[min(len(samples) - 1, q * len(samples) // 4)] for q in (1, 2, 3, 4)]
        print(
            f"RSS, {label}: start {samples[0]:.0f} MiB; at 25/50/75/100% of rows "
            + "/".join(f"{q:.0f}" for q in quarters)
            + f" MiB; max {max(samples):.0f} MiB"
        )
    keep_all = args.rows * record_size_bytes(realistic_record(1)) / 2**20
    print(
        f"(holding all {args.rows:,} records would take ~{keep_all:,.0f} MiB; "
        f"process peak {peak_rss_mib():.0f} MiB; database {size_mib:.0f} MiB on disk)"
    )
    print(
        f"rows per CPU second (all threads): pre-built {pool_cpu:,.0f}, built per row "
        f"{fresh_cpu:,.0f}; load average at the start "
        + " ".join(f"{x:.2f}" for x in load_start)
        + ", at the end "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    verdict = "met" if pool_rate >= TARGET_ROWS_PER_S else "NOT met"
    print(f"target: the writer sustains >= {TARGET_ROWS_PER_S:,} rows/s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
