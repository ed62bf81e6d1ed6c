"""What does one insert of a paced log's batch cost DuckDB, by the ways it could be made?

    python bench/bench_log_insert_variants.py [--quick] [--rows 1,500,2000] [--rounds R]

Issue 13 §1 (session 11). At 100 calls/s with the 5 s batch age the writer inserts about 500
rows at a time, and each insert has a fixed cost. This script inserts the same pre-built
gateway-shaped Arrow table (``bench_log_writer.realistic_record`` rows through the writer's
own `RowTables`) into a fresh call-log database per variant, sides taking turns in a new
random order each round, and prints process CPU per insert (DuckDB's threads included) with
the user and system parts (``getrusage``), median [range] over rounds:

* ``as shipped``: the writer's `InsertPath` (replacement scan, ``arrow.json`` columns);
* ``positional``: ``INSERT INTO calls (cols) SELECT *`` instead of ``BY NAME``;
* ``relation``: ``from_arrow(table).insert_into("calls")``;
* ``in a transaction``: ``BEGIN``/``COMMIT`` around each insert (what one costs by itself);
* ``threads = 1``: the database's ``threads`` setting at 1 (not a candidate: the setting is
  global to the database instance, which the log's readers and analysis share, and DuckDB
  refuses it per connection);
* ``fsync_mode = NONE``: no sync of the write-ahead log at commit (not a candidate: DuckDB
  says it may corrupt the database on a power loss).

Then the fixed cost by column count: one-row inserts into tables of 1, 10 and 49 VARCHAR
columns. ``--quick``: 5 rounds of 1- and 500-row inserts (about a minute).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def variants(folder: Path, table):  # noqa: ANN001, ANN201 - a pyarrow table; callables
    # lazy: duckdb and the log's modules load only when the bench runs
    import duckdb

    from aigw_lab.store.insert_path import InsertPath, tune_log_database
    from aigw_lab.store.schema import COLUMN_TYPES, MIGRATIONS, apply_migrations

    columns = ", ".join(f'"{name}"' for name in COLUMN_TYPES)

    def cursor(name: str, *settings: str):  # noqa: ANN202
        conn = duckdb.connect(str(folder / f"{name}.duckdb"))
        apply_migrations(conn, MIGRATIONS, where="bench")
        tune_log_database(conn, None)
        for setting in settings:
            conn.execute(setting)
        return conn.cursor()

    def shipped(cur):  # noqa: ANN001, ANN202
        path = InsertPath(cur, json_typed=True)
        return lambda: path.insert(table, built=True)

    def positional(cur):  # noqa: ANN001, ANN202
        sql = f"INSERT INTO calls ({columns}) SELECT * FROM _batch"

        def insert() -> None:
            _batch = table  # noqa: F841 - read by name by DuckDB
            cur.execute(sql)

        return insert

    def relation(cur):  # noqa: ANN001, ANN202
        return lambda: cur.from_arrow(table).insert_into("calls")

    def in_transaction(cur):  # noqa: ANN001, ANN202
        path = InsertPath(cur, json_typed=True)

        def insert() -> None:
            cur.execute("BEGIN")
            path.insert(table, built=True)
            cur.execute("COMMIT")

        return insert

    return {
        "as shipped": shipped(cursor("shipped")),
        "positional": positional(cursor("positional")),
        "relation insert_into": relation(cursor("relation")),
        "in a transaction": in_transaction(cursor("transaction")),
        "threads = 1 (global)": shipped(cursor("threads", "SET threads = 1")),
        "fsync_mode = NONE": shipped(cursor("fsync", "SET fsync_mode = 'NONE'")),
    }


def bench_rows(rows: int, rounds: int, reps: int) -> None:
    from bench_log_writer import realistic_record

    from aigw_lab.store.batches import ColumnBatches
    from aigw_lab.store.row_tables import RowTables
    from aigw_lab.store.schema import COLUMN_TYPES

    tables = RowTables(ColumnBatches(COLUMN_TYPES, arrow=True))
    table = tables.to_table([realistic_record(i) for i in range(rows)], raw=False)[0]
    folder = Path(tempfile.mkdtemp(prefix="bench-insert-variants-"))
    sides = variants(folder, table)
    spent: dict[str, list[tuple[float, float]]] = {label: [] for label in sides}
    for _ in range(rounds):
        for label in random.sample(list(sides), len(sides)):
            insert = sides[label]
            before = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(reps):
                insert()
            after = resource.getrusage(resource.RUSAGE_SELF)
            spent[label].append(
                (
                    (after.ru_utime - before.ru_utime) / reps * 1e3,
                    (after.ru_stime - before.ru_stime) / reps * 1e3,
                )
            )
    print(f"\n### {rows:,}-row inserts, {rounds} rounds x {reps}; load average {load()}")
    print(
        f"| {'variant':<22} | {'CPU ms/insert':>20} | {'user':>6} | {'sys':>5} "
        f"| {'vs shipped':>10} |"
    )
    print(f"|{'-' * 24}|{'-' * 22}|{'-' * 8}|{'-' * 7}|{'-' * 12}|")
    shipped = statistics.median(u + s for u, s in spent["as shipped"])
    for label, values in spent.items():
        total = [u + s for u, s in values]
        med = statistics.median(total)
        print(
            f"| {label:<22} | {f'{med:.2f} [{min(total):.2f}-{max(total):.2f}]':>20} "
            f"| {statistics.median(u for u, _ in values):>6.2f} "
            f"| {statistics.median(s for _, s in values):>5.2f} | {med / shipped:>9.2f}x |"
        )


def bench_columns(rounds: int) -> None:
    import duckdb
    import pyarrow as pa

    folder = Path(tempfile.mkdtemp(prefix="bench-insert-columns-"))
    print(f"\n### one-row inserts by column count (VARCHAR), {rounds} rounds; load {load()}")
    for count in (1, 10, 49):
        conn = duckdb.connect(str(folder / f"c{count}.duckdb"))
        conn.execute("CREATE TABLE t (" + ", ".join(f"c{i} VARCHAR" for i in range(count)) + ")")
        cur = conn.cursor()
        _batch = pa.table({f"c{i}": ["x" * 20] for i in range(count)})  # noqa: F841
        values = []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(50):
                cur.execute("INSERT INTO t BY NAME SELECT * FROM _batch")
            values.append((time.process_time() - start) / 50 * 1e3)
        med = statistics.median(values)
        print(
            f"  {count:>2} columns: {med:.2f} ms CPU per insert "
            f"[{min(values):.2f}-{max(values):.2f}]"
        )
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1- and 500-row inserts, 5 rounds")
    parser.add_argument("--rows", default="1,500,2000", help="rows per insert, comma-separated")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds = "1,500", 5
    import duckdb

    print(
        f"bench_log_insert_variants: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | "
        f"{platform.machine()} | {os.cpu_count()} cores | Python {platform.python_version()} | "
        f"DuckDB {duckdb.__version__}{' | --quick' if args.quick else ''}"
    )
    for rows in (int(r) for r in args.rows.split(",")):
        bench_rows(rows, args.rounds, reps=10)
    bench_columns(args.rounds)
    print(f"\nload average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
