"""The team log's write and read paths against a real PostgreSQL cluster on loopback.

Why PostgreSQL and why COPY (docs/deployment.md, "One call log for a team"). A PostgreSQL 15
cluster (Debian's binaries, started here with its default durability: fsync on) gets call
rows by each candidate write path, in interleaved rounds, every path inserting the same
rows into a truncated ``calls`` table:

- ``executemany``: ``INSERT ... VALUES (%s, ...)`` through psycopg's ``executemany``
  (pipelined since psycopg 3.1), one transaction per batch;
- ``COPY text``: ``COPY calls (...) FROM STDIN`` with ``write_row`` (what `TeamLogSink` does);
- ``COPY binary``: the same in binary format (types declared with ``set_types``);
- ``TeamLogSink``: the sink itself (``append`` of each row, then ``flush``): binary COPY
  plus its spool, its queue and its thread;
- ``DuckDB file``: the same rows into a local `CallLog` file (``append_many`` + ``flush``;
  the log opened once, before the rounds), the single-process path, as the reference.

Each prints rows/s by wall time and client CPU microseconds per row (this process only: the
PostgreSQL server's own CPU is not counted), as median [min, max] over rounds, with
``os.getloadavg()``. Then, at paced call rates (100 and 1,000 rows/s for a few seconds): the
process CPU per row of a gateway-like loop that appends each row to a `TeamLogSink`, against
the same loop appending nowhere (interleaved). Last, `TeamLogMirror.sync` of the rows into a
new mirror: rows/s.

Usage: ``python bench/bench_team_log.py [--quick] [--rounds N] [--rows N]``. ``--quick``
(37 s at load average 17 on 2 cores) reproduces the headline figures: batches of
2,000 only, 10,000 rows, 3 rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from aigw_lab.store import CallLog
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.store.team_log import TeamLogSink
from aigw_lab.store.team_log_schema import duckdb_columns, ensure_schema
from aigw_lab.store.team_mirror import TeamLogMirror
from aigw_lab.testing.postgres import PostgresCluster, find_pg_bin

_COLS = ", ".join(f'"{c}"' for c in CALL_COLUMNS)


def make_rows(n: int, seed: int = 0) -> list[CallRecord]:
    """``n`` rows of a realistic size (a ~250-character request, a ~400-character answer)."""
    rng = random.Random(seed)
    start = datetime(2026, 12, 6, tzinfo=UTC)
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(40))
        rows.append(
            CallRecord(
                call_id=f"b-{seed}-{i}",
                trace_id=f"t-{seed}-{i}",
                timestamp=start + timedelta(milliseconds=i),
                provider_name="openai",
                request_model=rng.choice(["gpt-x", "gpt-y", "claude-z"]),
                api_format="openai",
                request_json=f'{{"messages": [{{"role": "user", "content": "{prompt}"}}]}}',
                response_text=prompt * 2,
                finish_reason="stop",
                input_tokens=rng.randint(10, 500),
                output_tokens=rng.randint(10, 500),
                cost_usd=rng.random() / 1000,
                latency_ms=rng.random() * 1000,
                upstream_ms=rng.random() * 900,
                overhead_ms=rng.random(),
                tenant_id=rng.choice(["a", "b", "c"]),
                tags_json='{"env": "prod"}',
            )
        )
    return rows


def _pg_types(conn: psycopg.Connection) -> list[str]:
    kinds = {c: k for c, k in duckdb_columns()["calls"]}
    names = {"VARCHAR": "text", "JSON": "text", "TIMESTAMP WITH TIME ZONE": "timestamptz",
             "INTEGER": "int4", "BIGINT": "int8", "DOUBLE": "float8", "BOOLEAN": "bool",
             "VARCHAR[]": "text[]"}  # fmt: skip
    return [names[kinds[c]] for c in CALL_COLUMNS]


def executemany(conn: psycopg.Connection, rows: list[CallRecord], batch: int) -> None:
    sql = f"INSERT INTO calls ({_COLS}) VALUES ({', '.join(['%s'] * len(CALL_COLUMNS))})"
    for start in range(0, len(rows), batch):
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(sql, [tuple(r) for r in rows[start : start + batch]])


def copy_text(conn: psycopg.Connection, rows: list[CallRecord], batch: int) -> None:
    for start in range(0, len(rows), batch):
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(f"COPY calls ({_COLS}) FROM STDIN") as copy:
                for row in rows[start : start + batch]:
                    copy.write_row(row)


def copy_binary(conn: psycopg.Connection, rows: list[CallRecord], batch: int) -> None:
    types = _pg_types(conn)
    for start in range(0, len(rows), batch):
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(f"COPY calls ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows[start : start + batch]:
                    copy.write_row(row)


def duckdb_file(log: CallLog, rows: list[CallRecord]) -> None:
    log.append_many(rows)
    log.flush()


def through_sink(sink: TeamLogSink, rows: list[CallRecord]) -> None:
    for row in rows:
        sink.append(row)
    sink.flush(timeout=600)


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f} [{min(values):.1f}, {max(values):.1f}]"


def write_paths(url: str, folder: Path, rows: list[CallRecord], rounds: int, batch: int) -> None:
    conn = psycopg.connect(url, autocommit=True)
    ensure_schema(conn)
    # Opened once, outside the timing, like the connection: each round inserts into it.
    log = CallLog(folder / f"reference-{batch}.duckdb", batch_size=batch)
    sink = TeamLogSink(url, spool_dir=folder / f"sink-{batch}", batch_size=batch)
    sink.flush(timeout=60)  # connected, its schema checked
    paths: dict[str, Callable[[], None]] = {
        "executemany": lambda: executemany(conn, rows, batch),
        "COPY text": lambda: copy_text(conn, rows, batch),
        "COPY binary": lambda: copy_binary(conn, rows, batch),
        "DuckDB file": lambda: duckdb_file(log, rows),
        "TeamLogSink": lambda: through_sink(sink, rows),
    }
    rate: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths)
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for name in order:
            conn.execute("TRUNCATE calls")
            log.execute("DELETE FROM calls")
            wall0, cpu0 = time.perf_counter(), time.process_time()
            paths[name]()
            wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
            rate[name].append(len(rows) / wall)
            cpu[name].append(used / len(rows) * 1e6)
    base = statistics.median(rate["executemany"])
    print(f"\nwrite paths: {len(rows)} rows in batches of {batch}, {rounds} rounds "
          f"(loadavg {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f})")  # fmt: skip
    print(f"  {'path':<13} {'rows/s median [min, max]':>34} {'client CPU us/row':>30}  x exmany")
    for name in paths:
        ratio = statistics.median(rate[name]) / base
        print(f"  {name:<13} {_stats(rate[name]):>34} {_stats(cpu[name]):>30}  {ratio:5.2f}x")
    conn.close()
    log.close()
    sink.close()


def _paced(seconds: float, rate: float, append: Callable[[CallRecord], None],
           rows: list[CallRecord]) -> float:  # fmt: skip
    """Append ``rate`` rows per second for ``seconds``; the process CPU per row, in us."""
    n = int(seconds * rate)
    cpu0, start = time.process_time(), time.perf_counter()
    for i in range(n):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        append(rows[i % len(rows)])
    return (time.process_time() - cpu0) / n * 1e6


def paced(url: str, folder: Path, rows: list[CallRecord], seconds: float, rounds: int) -> None:
    print(f"\npaced appends, {seconds:.0f} s each, {rounds} rounds interleaved "
          f"(loadavg {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f})")  # fmt: skip
    for rate in (100.0, 1000.0):
        with_sink: list[float] = []
        without: list[float] = []
        for r in range(rounds):
            sink = TeamLogSink(url, spool_dir=folder / f"spool-{rate}-{r}")
            sink.flush()  # connected and schema checked before the clock starts
            for name in ("sink", "none") if r % 2 == 0 else ("none", "sink"):
                if name == "sink":
                    with_sink.append(_paced(seconds, rate, sink.append, rows))
                    sink.flush()
                else:
                    without.append(_paced(seconds, rate, lambda row: None, rows))
            sink.close()
        extra = [a - b for a, b in zip(with_sink, without, strict=True)]
        print(f"  {rate:6.0f} rows/s: process CPU us/row with sink {_stats(with_sink)}, "
              f"without {_stats(without)}; the sink adds {_stats(extra)} us/row")  # fmt: skip


def mirror_sync(url: str, folder: Path, rows: list[CallRecord], rounds: int) -> None:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("TRUNCATE calls")
    copy_text(conn, rows, 5000)
    conn.close()
    rates, cpus = [], []
    for r in range(rounds):
        with TeamLogMirror(url, folder / f"mirror-{r}.duckdb") as mirror:
            _ = mirror.log  # the file and its tables, outside the timing
            wall0, cpu0 = time.perf_counter(), time.process_time()
            copied = mirror.sync().rows["calls"]
            wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
        assert copied == len(rows)
        rates.append(copied / wall)
        cpus.append(used / copied * 1e6)
    print(f"\nmirror sync of {len(rows)} rows into a new mirror, {rounds} rounds "
          f"(loadavg {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}): rows/s "
          f"{_stats(rates)}, client CPU us/row {_stats(cpus)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the headline figures, under a minute")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    n = args.rows or (10_000 if args.quick else 50_000)
    if find_pg_bin() is None:
        sys.exit("PostgreSQL's binaries are not installed (Debian's postgresql package)")
    print(f"bench_team_log.py {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"psycopg {psycopg.__version__}")  # fmt: skip
    rows = make_rows(n)
    with tempfile.TemporaryDirectory() as tmp, PostgresCluster.start_new(fast=False) as pg:
        folder = Path(tmp)
        for batch in (2000,) if args.quick else (100, 2000):
            write_paths(pg.url, folder, rows, rounds, batch)
        paced(pg.url, folder, rows, 2.0 if args.quick else 5.0, 2 if args.quick else 4)
        mirror_sync(pg.url, folder, rows, rounds)


if __name__ == "__main__":
    main()
