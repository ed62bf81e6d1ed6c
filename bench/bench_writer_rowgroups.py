"""Whole row groups per insert: what the call-log writer gains by cutting merged batches there.

    python bench/bench_writer_rowgroups.py [--quick] [--rows N] [--rounds R] [--spool]
                                           [--only inserts|writer|memory]

Issue 13 §1 (the writer sustains >= 200,000 pre-built rows/s). DuckDB writes a whole row
group (122,880 rows) of one insert straight to the database file; anything less goes
through its write-ahead log and is compressed again at every checkpoint. The writer merges
waiting batches when it falls behind, up to a row group; until session 10 it merged whole
5,000-row batches only, so a merged insert held 120,000 rows, one row group minus 2,880,
and never took the direct path. Now the batch that does not fit is split. Two sections,
sides interleaved in a new random order every round:

1. **One insert's size** (``inserts``): the same gateway-shaped rows, built into Arrow
   tables beforehand, inserted through the writer's insert path
   (`aigw_lab.store.insert_path.InsertPath`) into a new log database, 1,000 / 5,000 /
   20,000 (the writer's batches at the rates the gateway produces), 120,000 (the previous
   merge) and 122,880 (the new one) rows per insert, then a final ``CHECKPOINT`` (what a
   long-running log pays at its checkpoints). CPU per row: the inserting thread, the whole
   process (DuckDB's threads included), and the whole process with the checkpoint.
2. **The writer flat out** (``writer``): pre-built gateway rows (a pool of 10,000) appended
   to a `CallLog` with ``durability="none"`` (no spool: its frames are the appending
   thread's, see ``bench_spool.py``) as fast as one thread can, then flushed; rows/s by
   wall, and CPU µs per row on the appending thread, the writer thread and the rest of the
   process (DuckDB's threads), at ``batch_size`` 1,000 / 5,000 / 20,000. Sides: the
   previous merge (emulated: whole batches only) with the previous default ``max_queue``
   (100,000), the same merge with ``max_queue`` 250,000, and what ships now: the row-group
   cut with the default ``max_queue`` (250,000). (With ``max_queue`` 100,000 the cut never
   applies: fewer rows than a row group can wait.) The final checkpoint is not in these
   figures (each log is closed after the timing). With ``--spool``, also the previous and
   the current side at ``batch_size`` 5,000 with the spool on (``durability="os"``, as
   shipped: the appending thread writes each row's frame).
3. **A full queue's memory** (``memory``): what ``max_queue`` costs while the writer is
   stuck (its first insert held by ``before_insert``): resident memory before and after
   ``max_queue`` distinct gateway-shaped rows are queued, 100,000 (the previous default)
   and 250,000 (the current), each in a fresh process.

CPU (``time.thread_time``, ``process_time``, the writer thread's own clock) is printed
beside wall time, with the load average: on the shared 2-core box wall figures move with
the load; read CPU and the ratios inside one run. ``--quick``: 2 rounds, 400,000 rows per
writer run and 491,520 per insert run, about two minutes on a quiet box.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_log_writer import realistic_record  # noqa: E402

TARGET_ROWS_PER_S = 200_000
ROW_GROUP = 122_880


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def med(values: list[float], fmt: str = "{:.2f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}-{fmt.format(max(values))}]"
    )


# --- 1. one insert's size -------------------------------------------------------------------


def one_insert_run(folder: Path, tables: list, rows: int) -> tuple[float, float, float]:
    # lazy: duckdb is only needed here
    import duckdb

    from aigw_lab.store.insert_path import InsertPath, tune_log_database
    from aigw_lab.store.schema import MIGRATIONS, apply_migrations

    path = folder / f"insert-{time.perf_counter_ns()}.duckdb"
    conn = duckdb.connect(str(path))
    tune_log_database(conn, None)
    apply_migrations(conn, MIGRATIONS, where="bench")
    inserts = InsertPath(conn.cursor(), json_typed=True)
    cpu0, thread0 = time.process_time(), time.thread_time()
    for table in tables:
        inserts.insert(table, built=True)
    thread1, cpu1 = time.thread_time(), time.process_time()
    conn.execute("CHECKPOINT")
    cpu2 = time.process_time()
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == rows
    conn.close()
    for file in folder.glob(path.name + "*"):
        file.unlink()
    per_row = 1e6 / rows
    return (
        (thread1 - thread0) * per_row,
        (cpu1 - cpu0) * per_row,
        (cpu2 - cpu0) * per_row,
    )


def bench_inserts(rows: int, rounds: int) -> None:
    from aigw_lab.store.batches import ColumnBatches
    from aigw_lab.store.row_tables import RowTables
    from aigw_lab.store.schema import COLUMN_TYPES

    sizes = (1_000, 5_000, 20_000, 120_000, ROW_GROUP)
    rows = rows // ROW_GROUP * ROW_GROUP  # the same rows for every size
    records = [realistic_record(i) for i in range(rows)]
    build = RowTables(ColumnBatches(COLUMN_TYPES, arrow=True))
    tables = {
        size: [build.to_table(records[s : s + size], raw=False)[0] for s in range(0, rows, size)]
        for size in sizes
    }
    del records
    results: dict[int, list[tuple[float, float, float]]] = {size: [] for size in sizes}
    print(
        f"## 1. CPU µs per row to insert {rows:,} built rows, by rows per insert; "
        f"{rounds} rounds, median [range]"
    )
    print(f"load average at the start: {load()}")
    folder = Path(tempfile.mkdtemp(prefix="bench-rowgroups-"))
    try:
        for _ in range(rounds):
            order = list(sizes)
            random.shuffle(order)
            for size in order:
                results[size].append(one_insert_run(folder, tables[size], rows))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"| {'rows per insert':>15} | {'inserting thread':>20} | {'process':>20} "
        f"| {'process + checkpoint':>20} | {'vs 120,000':>10} |"
    )
    print(f"|{'-' * 17}|{'-' * 22}|{'-' * 22}|{'-' * 22}|{'-' * 12}|")
    previous = statistics.median(r[2] for r in results[120_000])
    for size, runs in results.items():
        cells = [med([r[k] for r in runs]) for k in range(3)]
        ratio = statistics.median(r[2] for r in runs) / previous
        print(f"| {size:>15,} | " + " | ".join(f"{c:>20}" for c in cells) + f" | {ratio:>9.2f}x |")
    print(f"load average at the end: {load()}\n")


# --- 2. the writer flat out -----------------------------------------------------------------


def merge_whole_batches(log) -> None:  # noqa: ANN001 - a CallLog
    """Make ``log``'s writer merge waiting batches the way it did until session 10: whole
    batches only, up to a row group (so at 5,000-row batches 120,000 rows, never a whole
    group). Bench-only: reaches into the writer's private parts."""
    writer = log._writer

    def merged():  # noqa: ANN202
        pending, most = writer._pending, writer._max_batch
        batch, raw = pending.popleft()
        while pending and len(batch) + len(pending[0][0]) <= most:
            more, more_raw = pending.popleft()
            batch += more
            raw = raw or more_raw
        return batch, raw

    writer._merged = merged


#: The writer section's sides: (label, max_queue, emulation).
WRITER_SIDES = {
    "previous: whole batches, max_queue 100k": (100_000, merge_whole_batches),
    "whole batches, max_queue 250k": (250_000, merge_whole_batches),
    "now: row-group cut, max_queue 250k": (250_000, None),
}


def thread_cpu(thread) -> float:  # noqa: ANN001
    """CPU seconds of another thread of this process (Linux: its CPU-time clock)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError):
        return float("nan")


#: With ``--spool``: the same two sides with the spool on, at the default batch_size only.
SPOOL_SIDES = {
    "previous, spool on": (100_000, merge_whole_batches),
    "now, spool on": (250_000, None),
}


def bench_writer(rows: int, rounds: int, spool: bool) -> None:
    from aigw_lab.store import CallLog

    pool = [realistic_record(i) for i in range(10_000)]
    batch_sizes = (1_000, 5_000, 20_000)
    folder = Path(tempfile.mkdtemp(prefix="bench-rowgroups-"))
    results = {(b, label): [] for b in batch_sizes for label in WRITER_SIDES}
    if spool:
        results.update({(5_000, label): [] for label in SPOOL_SIDES})
    print(
        f"## 2. The writer flat out: {rows:,} pre-built gateway rows per run, no spool, "
        f"{rounds} rounds, median [range]"
    )
    print(f"load average at the start: {load()}")
    try:
        for turn in range(rounds):
            order = list(results)
            random.shuffle(order)
            for batch_size, label in order:
                max_queue, emulate = {**WRITER_SIDES, **SPOOL_SIDES}[label]
                log = CallLog(
                    folder / f"w{turn}-{batch_size}-{len(results[(batch_size, label)])}.duckdb",
                    batch_size=batch_size,
                    max_queue=max_queue,
                    durability="os" if label in SPOOL_SIDES else "none",
                )
                if emulate is not None:
                    emulate(log)
                append, writer_thread = log.append, log._writer.thread
                t0, wt0 = time.thread_time(), thread_cpu(writer_thread)
                c0, w0 = time.process_time(), time.perf_counter()
                for i in range(rows):
                    append(pool[i % 10_000], built=True)
                log.flush()
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                caller, writer = time.thread_time() - t0, thread_cpu(writer_thread) - wt0
                assert log.rows_written == rows
                log.close()
                results[(batch_size, label)].append((wall, cpu, caller, writer))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"| {'batch_size':>10} | {'side':<40} | {'rows/s by wall':>26} | {'rows/CPU-s':>10} "
        f"| {'µs CPU/row: appending':>21} | {'writer thread':>13} | {'DuckDB threads':>14} "
        f"| {'CPU vs previous':>15} |"
    )
    widths = (12, 42, 28, 12, 23, 15, 16, 17)
    print("|" + "|".join("-" * w for w in widths) + "|")
    for batch_size in batch_sizes:
        previous = statistics.median(r[1] for r in results[(batch_size, next(iter(WRITER_SIDES)))])
        for label in [*WRITER_SIDES, *SPOOL_SIDES]:
            if (batch_size, label) not in results:
                continue
            if label in SPOOL_SIDES:  # compared with its own previous side
                previous = statistics.median(r[1] for r in results[(5_000, "previous, spool on")])
            runs = results[(batch_size, label)]
            by_wall = [rows / r[0] for r in runs]
            cpu = statistics.median(r[1] for r in runs)
            caller = statistics.median(r[2] / rows * 1e6 for r in runs)
            writer = statistics.median(r[3] / rows * 1e6 for r in runs)
            others = statistics.median((r[1] - r[2] - r[3]) / rows * 1e6 for r in runs)
            print(
                f"| {batch_size:>10,} | {label:<40} | {med(by_wall, '{:,.0f}'):>26} "
                f"| {rows / cpu:>10,.0f} | {caller:>21.2f} | {writer:>13.2f} | {others:>14.2f} "
                f"| {cpu / previous:>14.2f}x |"
            )
    best = max(statistics.median(rows / r[0] for r in results[key]) for key in results)
    verdict = "met" if best >= TARGET_ROWS_PER_S else "NOT met"
    print(
        f"target: >= {TARGET_ROWS_PER_S:,} pre-built rows/s by wall: {verdict} in this run "
        f"(best side's median {best:,.0f})"
    )
    print(f"load average at the end: {load()}\n")


# --- 3. a full queue's memory ----------------------------------------------------------------


def queue_memory(max_queue: int) -> None:
    """Run in a fresh process: queue ``max_queue`` distinct rows while the writer's first
    insert is held; print the resident memory they added (MiB) and per row (bytes)."""
    from bench_log_writer import rss_mib

    from aigw_lab.store import CallLog

    held, release = threading.Event(), threading.Event()

    def hold_first(rows: int) -> None:
        if not held.is_set():
            held.set()
            release.wait()

    with tempfile.TemporaryDirectory(prefix="bench-rowgroups-") as folder:
        log = CallLog(
            Path(folder) / "m.duckdb",
            max_queue=max_queue,
            durability="none",
            flush_interval=0.01,
            before_insert=hold_first,
        )
        log.append(realistic_record(0), built=True)
        assert held.wait(60)
        before = rss_mib()
        for i in range(1, max_queue):
            log.append(realistic_record(i), built=True)
        added = rss_mib() - before
        release.set()
        log.close()
    print(f"{added:.1f} {added * 2**20 / max_queue:.0f}")


def bench_memory() -> None:
    print("## 3. A full queue's memory: distinct gateway-shaped rows queued behind a held writer")
    print(f"load average at the start: {load()}")
    for max_queue in (100_000, 250_000):
        done = subprocess.run(
            [sys.executable, __file__, "--queue-memory", str(max_queue)],
            capture_output=True,
            text=True,
            check=True,
        )
        added, per_row = done.stdout.split()
        print(
            f"max_queue {max_queue:>7,}: the full queue added {float(added):.0f} MiB of "
            f"resident memory ({per_row} bytes per row)"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, about two minutes")
    parser.add_argument("--rows", type=int, default=400_000, help="rows per writer run")
    parser.add_argument("--insert-rows", type=int, default=737_280, help="rows per insert run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=("inserts", "writer", "memory"), help="run one section only"
    )
    parser.add_argument("--spool", action="store_true", help="also spool-on sides (section 2)")
    parser.add_argument("--queue-memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.queue_memory:
        queue_memory(args.queue_memory)
        return 0
    if args.quick:
        args.rows, args.insert_rows, args.rounds = 400_000, 491_520, 2
    print(
        f"bench_writer_rowgroups: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | "
        f"{platform.machine()} | {os.cpu_count()} cores | Python {platform.python_version()} | "
        f"{platform.system()}{' | --quick' if args.quick else ''}\n"
    )
    if args.only in (None, "inserts"):
        bench_inserts(args.insert_rows, args.rounds)
    if args.only in (None, "writer"):
        bench_writer(args.rows, args.rounds, args.spool)
    if args.only in (None, "memory"):
        bench_memory()
    print(
        f"(target: the writer sustains >= {TARGET_ROWS_PER_S:,} rows/s, i.e. "
        f"{1e6 / TARGET_ROWS_PER_S:.1f} µs of wall per row)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
