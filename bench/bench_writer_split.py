"""Where the call-log writer's time per row goes, split by step, at the batch sizes it uses.

    python bench/bench_writer_split.py [--quick] [--rows N] [--rounds R]

Issue 13 §1 (the writer sustains >= 200,000 pre-built rows/s). The same gateway-shaped rows
(``bench_log_writer.realistic_record``, each allocated on its own, as the gateway's are)
go through the writer's two steps outside any thread, so each is timed by itself:

1. **building** the Arrow table from the rows (`aigw_lab.store.row_tables.RowTables`): the
   current chunked ``zip(*rows)`` transposition against the previous one
   (``map(itemgetter(i), rows)`` per column), interleaved, thread CPU per row, at 1,000,
   5,000 and 122,880 rows (a DuckDB row group: the largest batch the writer merges);
2. **inserting** the built tables into a fresh log database the way the writer does
   (`aigw_lab.store.insert_path.InsertPath`, 64MiB checkpoints), split into the calling
   thread's CPU in ``execute``, DuckDB's other threads during the inserts (process CPU
   minus the calling thread), and the final ``CHECKPOINT`` (what a long-running log pays
   at its checkpoints), for: 5,000-row inserts (the writer's ``batch_size``); 25 of them in
   one explicit transaction (DuckDB writes a transaction's full row groups straight to the
   file); one 125,000-row single-chunk insert (the writer's merged batch when it falls a
   row group behind); and 5,000-row inserts into a ``TEMP`` staging table merged into
   ``calls`` every row group (a staging table with no write-ahead log).

CPU (``time.thread_time``/``process_time``) is printed beside wall time, with the load
average: on the shared 2-core box the wall figures move with load; read CPU and the
ratios inside one run. ``--quick``: 2 rounds of 250,000 rows, about two minutes quiet.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_log_writer import realistic_record  # noqa: E402

TARGET_ROWS_PER_S = 200_000
ROW_GROUP = 122_880


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def med(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]"


def bench_building(rows: list, rounds: int) -> None:
    from aigw_lab.store.batches import ColumnBatches
    from aigw_lab.store.row_tables import RowTables
    from aigw_lab.store.schema import COLUMN_TYPES

    batches = ColumnBatches(COLUMN_TYPES, arrow=True)
    tables = RowTables(batches)
    getters = [itemgetter(i) for i in range(len(COLUMN_TYPES))]

    def by_map(batch: list) -> object:  # the writer's transposition until session 9
        arrays = [
            convert(list(map(get, batch)))
            for get, convert in zip(getters, batches.converters, strict=True)
        ]
        return batches.table(arrays, json=True)

    def by_zip(batch: list) -> object:
        return tables.to_table(batch, raw=False)[0]

    print("## 1. Building a batch's Arrow table: thread CPU µs per row, median [range]")
    print(f"load average at the start: {load()}")
    print(
        f"| {'rows':>7} | {'previous: map per column':>26} | {'now: zip, 2,048-row chunks':>26} "
        f"| {'now / previous':>14} |"
    )
    print(f"|{'-' * 9}|{'-' * 28}|{'-' * 28}|{'-' * 16}|")
    for size in (1_000, 5_000, ROW_GROUP):
        reps = max(1, 20_000 // size)
        cpu: dict[str, list[float]] = {"map": [], "zip": []}
        for turn in range(max(3, rounds * 2 + 1)):
            offset = (turn * size) % max(1, len(rows) - size)
            batch = rows[offset : offset + size]
            sides = (("map", by_map), ("zip", by_zip))
            for label, build in sides if turn % 2 else sides[::-1]:
                start = time.thread_time()
                for _ in range(reps):
                    build(batch)
                cpu[label].append((time.thread_time() - start) / reps / size * 1e6)
        ratio = [z / m for z, m in zip(cpu["zip"], cpu["map"], strict=True)]
        print(
            f"| {size:>7,} | {med(cpu['map']):>26} | {med(cpu['zip']):>26} | "
            f"{statistics.median(ratio):>13.2f}x |"
        )
    print(f"load average at the end: {load()}\n")


def one_insert_run(folder: Path, tables: list, mode: str) -> dict[str, float]:
    # lazy: duckdb and pyarrow are only needed by this section
    import duckdb
    import pyarrow as pa

    from aigw_lab.store.insert_path import InsertPath, tune_log_database
    from aigw_lab.store.schema import MIGRATIONS, apply_migrations

    path = folder / f"{mode}-{time.perf_counter_ns()}.duckdb"
    conn = duckdb.connect(str(path))
    tune_log_database(conn, None)
    apply_migrations(conn, MIGRATIONS, where="bench")
    cursor = conn.cursor()
    inserts = InsertPath(cursor, json_typed=True)
    n = sum(t.num_rows for t in tables)
    if mode == "staging":
        cursor.execute("CREATE TEMP TABLE staging AS SELECT * FROM calls LIMIT 0")
    groups = [tables]
    if mode == "single":
        groups = [
            [pa.concat_tables(tables[s : s + 25]).combine_chunks()]
            for s in range(0, len(tables), 25)
        ]
    thread0, cpu0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
    staged = 0
    for group in groups if mode == "single" else [tables]:
        for index, table in enumerate(group):
            if mode == "transaction" and index % 25 == 0:
                cursor.execute("BEGIN")
            if mode == "staging":
                _aigw_staged = table  # noqa: F841 - read by name by DuckDB
                cursor.execute("INSERT INTO staging BY NAME SELECT * FROM _aigw_staged")
                staged += table.num_rows
                if staged >= ROW_GROUP or index == len(group) - 1:
                    cursor.execute(
                        "BEGIN; INSERT INTO calls SELECT * FROM staging; DELETE FROM staging; "
                        "COMMIT"
                    )
                    staged = 0
            else:
                inserts.insert(table, built=True)
            if mode == "transaction" and (index % 25 == 24 or index == len(group) - 1):
                cursor.execute("COMMIT")
    thread1, cpu1 = time.thread_time(), time.process_time()
    cursor.execute("CHECKPOINT")
    cpu2, wall2 = time.process_time(), time.perf_counter()
    assert cursor.execute("SELECT count(*) FROM calls").fetchone()[0] == n
    cursor.close()
    conn.close()
    for file in folder.glob(path.name + "*"):
        file.unlink()
    return {
        "thread": (thread1 - thread0) / n * 1e6,
        "others": ((cpu1 - cpu0) - (thread1 - thread0)) / n * 1e6,
        "checkpoint": (cpu2 - cpu1) / n * 1e6,
        "total": (cpu2 - cpu0) / n * 1e6,
        "wall": (wall2 - wall0) / n * 1e6,
    }


def bench_inserting(rows: list, rounds: int) -> None:
    # lazy: duckdb is only needed by this section
    import duckdb

    from aigw_lab.store.batches import ColumnBatches
    from aigw_lab.store.row_tables import RowTables
    from aigw_lab.store.schema import COLUMN_TYPES

    tables_of = RowTables(ColumnBatches(COLUMN_TYPES, arrow=True))
    n = len(rows) - len(rows) % 5_000
    tables = [tables_of.to_table(rows[s : s + 5_000], raw=False)[0] for s in range(0, n, 5_000)]
    modes = {
        "5,000-row inserts (the writer's batch)": "each",
        "25 x 5,000 in one transaction": "transaction",
        "125,000-row single-chunk inserts": "single",
        "TEMP staging, merged per row group": "staging",
    }
    results: dict[str, list[dict[str, float]]] = {label: [] for label in modes}
    print(
        f"## 2. DuckDB {duckdb.__version__}: CPU µs per row to insert {n:,} built rows, "
        f"{rounds} rounds, median [range]"
    )
    print(f"load average at the start: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-writer-split-") as folder:
        labels = list(modes)
        for turn in range(rounds):
            for label in labels if turn % 2 == 0 else labels[::-1]:
                results[label].append(one_insert_run(Path(folder), tables, modes[label]))
    print(
        f"| {'insert shape':<40} | {'calling thread':>20} | {'DuckDB threads':>20} | "
        f"{'final checkpoint':>20} | {'total CPU':>20} | {'wall':>7} |"
    )
    print(f"|{'-' * 42}|{'-' * 22}|{'-' * 22}|{'-' * 22}|{'-' * 22}|{'-' * 9}|")
    for label, runs in results.items():
        cells = [med([r[key] for r in runs]) for key in ("thread", "others", "checkpoint", "total")]
        wall = statistics.median(r["wall"] for r in runs)
        print(f"| {label:<40} | " + " | ".join(f"{c:>20}" for c in cells) + f" | {wall:>7.2f} |")
    print(f"load average at the end: {load()}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 250,000 rows")
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds = 250_000, 2
    print(
        f"bench_writer_split: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.machine()} | "
        f"{os.cpu_count()} cores | Python {platform.python_version()} | {platform.system()}\n"
    )
    rows = [realistic_record(i) for i in range(max(args.rows, ROW_GROUP + 10_000))]
    bench_building(rows, args.rounds)
    bench_inserting(rows[: args.rows], args.rounds)
    print(
        f"(target: the writer sustains >= {TARGET_ROWS_PER_S:,} rows/s, i.e. "
        f"{1e6 / TARGET_ROWS_PER_S:.1f} µs of wall per row with both cores)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
