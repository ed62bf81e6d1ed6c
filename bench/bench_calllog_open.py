"""What opening a brand-new call log costs, and how much of it is migrating the schema.

Tests and users open many fresh logs (the test suite hundreds of times), so this cost is paid
often. Interleaved rounds, each on new files in a temporary directory:

- ``connect``: ``duckdb.connect`` of a new file and close (the floor: DuckDB's own cost);
- ``migrate, one statement per call``: the migrations applied as ``apply_migrations`` did
  before 2026-12-06 (a round trip per migration and per recorded version), on a new file;
- ``migrate, as applied now``: ``apply_migrations`` on a new file;
- ``CallLog open+close``: the whole ``CallLog(path).close()`` in a private (0700) folder,
  where the file is created in place;
- ``CallLog open+close, 0755 folder``: the same where others may enter the folder, so the
  file is first made in a staging folder, closed and reopened (every new log before
  2026-12-06).

Prints median CPU (process time) and wall milliseconds per operation, and ratios against the
per-statement baseline measured in the same run. Usage: ``python bench/bench_calllog_open.py
[--rounds N] [--fresh N]``.

``--fresh N`` (default 3; 0 skips it) also opens and closes a log in N new processes each,
interleaved, and prints the whole process's CPU from start to close, imports included: with
pyarrow (the ``fast-log`` extra), with pyarrow blocked (the pandas batches of the core
install), and what ``import pandas`` alone costs. With pyarrow, the first ``pa.array`` call
imports pandas (pyarrow's pandas shim checks whether a value is a pandas object), so the
writer's first batch pays for pandas on either path; see docs/performance.md, "The log
writer's side".
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from aigw_lab.store import CallLog
from aigw_lab.store.schema import _CREATE_SCHEMA_MIGRATIONS, MIGRATIONS, apply_migrations


def _per_statement(conn: duckdb.DuckDBPyConnection) -> None:
    """The previous way: one execute per statement (the baseline)."""
    conn.execute(_CREATE_SCHEMA_MIGRATIONS)
    conn.execute("SELECT version FROM schema_migrations").fetchall()
    conn.execute("BEGIN TRANSACTION")
    for migration in MIGRATIONS:
        conn.execute(str(migration.apply))
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, now())",
            [migration.version, migration.name],
        )
    conn.execute("COMMIT")


_FRESH = {
    "fresh process: import + CallLog open+close (pyarrow)": "",
    "fresh process: the same, pyarrow blocked (pandas batches)": (
        "import sys; sys.modules['pyarrow'] = None; "
    ),
}
_OPEN = (
    "import os, sys, tempfile, time; from aigw_lab.store import CallLog; "
    "CallLog(os.path.join(tempfile.mkdtemp(), 'calls.duckdb')).close(); "
    "print(time.process_time(), 'pandas' in sys.modules)"
)


def fresh_processes(rounds: int) -> None:
    """Import, open and close in new processes: whole-process CPU, and whether pandas was
    imported; against ``import pandas`` alone, interleaved."""
    import subprocess
    import sys

    cases = {**_FRESH, "fresh process: import pandas alone": None}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    pandas: dict[str, bool] = {}
    for _ in range(rounds):
        for name, prefix in cases.items():
            code = (
                "import time, sys; import pandas; print(time.process_time(), True)"
                if prefix is None
                else prefix + _OPEN
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.split()
            cpu[name].append(float(out[0]))
            pandas[name] = out[1] == "True"
    print(f"\n{'fresh process (whole-process CPU, imports included)':60s} {'CPU ms':>8s} pandas")
    for name in cases:
        print(f"{name:60s} {statistics.median(cpu[name]) * 1e3:8.0f} {pandas[name]}")


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--fresh", type=int, default=3, help="rounds of fresh processes")
    args = parser.parse_args()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    folder = Path(tempfile.mkdtemp(prefix="aigw-bench-open-"))  # 0700
    shared = folder / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    counter = iter(range(10**9))

    def fresh() -> Path:
        return folder / f"log{next(counter)}.duckdb"

    def connect() -> None:
        duckdb.connect(str(fresh())).close()

    def old_migrate() -> None:
        conn = duckdb.connect(str(fresh()))
        _per_statement(conn)
        conn.close()

    def new_migrate() -> None:
        conn = duckdb.connect(str(fresh()))
        apply_migrations(conn)
        conn.close()

    def calllog() -> None:
        CallLog(fresh()).close()

    def calllog_staged() -> None:
        CallLog(shared / fresh().name).close()

    cases: dict[str, Callable[[], None]] = {
        "connect": connect,
        "migrate, one statement per call": old_migrate,
        "migrate, as applied now": new_migrate,
        "CallLog open+close": calllog,
        "CallLog open+close, 0755 folder": calllog_staged,
    }
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm-up: imports, DuckDB's first instance
        run()
    for _ in range(args.rounds):
        for name, run in cases.items():
            c, w = time.process_time(), time.perf_counter()
            run()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    base = "migrate, one statement per call"
    base_cpu, base_wall = statistics.median(cpu[base]), statistics.median(wall[base])
    print(f"{'case':34s} {'CPU ms':>8s} {'wall ms':>8s} {'CPU ratio':>10s} {'wall ratio':>10s}")
    for name in cases:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        ratios = f"{c / base_cpu:10.2f} {w / base_wall:10.2f}"
        print(f"{name:34s} {c * 1e3:8.1f} {w * 1e3:8.1f} {ratios}")
    if args.fresh:
        fresh_processes(args.fresh)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
