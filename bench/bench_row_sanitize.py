"""What does making every call-log row storable cost? (`aigw_lab.store.sanitize_record`)

    python bench/bench_row_sanitize.py [--rows N] [--rounds R] [--calls C]

The gateway runs `sanitize_record` on every row it queues (lone surrogates replaced, text
over ``[log] max_body_chars`` cut). This measures it against baselines from the same run,
interleaved round by round so machine noise hits both alike, with CPU time beside wall time:

* building the same rows (``bench_log_writer.realistic_record``: a ``json.dumps``, f-strings,
  a datetime), the per-row work the gateway already does;
* one whole `Gateway.chat` call against an in-process mock provider with an in-memory log
  (the cheapest call the gateway can make; real calls take milliseconds).

Row kinds: ``clean`` (ASCII, the usual case), ``unicode`` (non-ASCII text, no surrogates:
the regex scan runs), ``surrogate`` (one lone surrogate in the answer: replaced and flagged)
and ``oversize`` (a 2,000,000-character answer with the default 1,000,000 cap).
Then the writer: one batch of ``--batch-rows`` rows inserted clean, with one row Arrow cannot
convert (a string in ``input_tokens``: found by bisecting the column, then dead-lettered),
with one lone surrogate (found the same way, then sanitised by the writer) and with one row
DuckDB refuses (a CHECK constraint: found by bisecting the insert), interleaved, in the same
run. Prints medians over rounds; exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_log_writer import realistic_record  # noqa: E402

from aigw_lab import Gateway  # noqa: E402
from aigw_lab.store import CallLog  # noqa: E402
from aigw_lab.store.sanitize import sanitize_record  # noqa: E402
from aigw_lab.store.schema import MIGRATIONS, Migration  # noqa: E402
from aigw_lab.testing.fakes import MockProvider  # noqa: E402


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _rows(kind: str, n: int) -> list:
    rows = [realistic_record(i) for i in range(n)]
    if kind == "unicode":
        return [r._replace(response_text=f"réponse {i} — 日本語 🚀") for i, r in enumerate(rows)]
    if kind == "surrogate":
        return [r._replace(response_text=f"bad \ud800 {i}") for i, r in enumerate(rows)]
    if kind == "oversize":
        big = "x" * 2_000_000
        return [r._replace(response_text=big) for r in rows[: max(1, n // 1000)]]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per round and kind")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2_000, help="gateway calls per round")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="writer batch size")
    parser.add_argument("--batch-rounds", type=int, default=3)
    args = parser.parse_args(argv)

    kinds = ["clean", "unicode", "surrogate", "oversize"]
    pools = {kind: _rows(kind, args.rows) for kind in kinds}
    mock = MockProvider("mock", models=("m1",))
    gateway = Gateway([mock], log=":memory:", prices={})
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    import warnings

    warnings.simplefilter("ignore")  # no price for mock/m1: irrelevant here
    for _ in range(200):  # warm up imports and caches
        gateway.chat("mock/m1", messages)

    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in ["build", "call", *kinds]}
    for _ in range(args.rounds):
        samples["build"].append(_timed(lambda: [realistic_record(i) for i in range(args.rows)]))
        samples["call"].append(
            _timed(lambda: [gateway.chat("mock/m1", messages) for _ in range(args.calls)])
        )
        for kind in kinds:
            pool = pools[kind]
            samples[kind].append(_timed(lambda pool=pool: [sanitize_record(r) for r in pool]))
    gateway.close()

    def per_row_us(name: str, count: int) -> tuple[float, float]:
        wall = statistics.median(w for w, _ in samples[name]) / count * 1e6
        cpu = statistics.median(c for _, c in samples[name]) / count * 1e6
        return wall, cpu

    build_wall, build_cpu = per_row_us("build", args.rows)
    call_wall, call_cpu = per_row_us("call", args.calls)
    cpus = os.cpu_count()
    print("call-log row sanitising benchmark (bench/bench_row_sanitize.py)")
    print(
        f"{date.today()} | {platform.machine()} | {cpus} cores | "
        f"Python {platform.python_version()} | {platform.system()} | "
        f"{args.rows:,} rows x {args.rounds} rounds, medians"
    )
    print()
    header = f"| {'work':<46} | {'wall µs/row':>11} | {'cpu µs/row':>10} | {'vs build':>8} |"
    header += f" {'vs call':>7} |"
    print(header)
    print("|" + "|".join("-" * (len(p)) for p in header.split("|")[1:-1]) + "|")

    def line(label: str, wall: float, cpu: float) -> None:
        print(
            f"| {label:<46} | {wall:>11.3f} | {cpu:>10.3f} | {wall / build_wall:>7.2f}x |"
            f" {wall / call_wall:>6.3f}x |"
        )

    for kind in kinds:
        count = len(pools[kind])
        wall, cpu = per_row_us(kind, count)
        line(f"sanitize_record, {kind} rows", wall, cpu)
    line("baseline: building the row (realistic_record)", build_wall, build_cpu)
    line("baseline: one Gateway.chat (mock, memory log)", call_wall, call_cpu)
    print()
    bench_bad_batches(args.batch_rows, args.batch_rounds)
    return 0


def _refusing_migrations() -> tuple[Migration, ...]:
    first = MIGRATIONS[0]
    body = first.apply.rstrip().removesuffix(")") + ",\n    CHECK (call_id <> 'poison')\n)"
    return (Migration(1, first.name, body), *MIGRATIONS[1:])


def bench_bad_batches(n: int, rounds: int) -> None:
    """One batch of ``n`` rows through a `CallLog`, clean or with one bad row mid-batch."""
    warnings.simplefilter("ignore")  # the dead-letter warnings
    rows = [realistic_record(i) for i in range(n)]
    middle = n // 2

    def with_row(**change: object) -> list:
        return rows[:middle] + [rows[middle]._replace(**change)] + rows[middle + 1 :]

    cases = {
        "clean batch": rows,
        "one unconvertible row (dead-lettered)": with_row(input_tokens="many"),
        "one lone surrogate (sanitised by the writer)": with_row(response_text="a\ud800"),
        "one row DuckDB refuses (dead-lettered)": with_row(call_id="poison"),
    }
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, data in cases.items():
            inserts: list[int] = []
            folder = tempfile.mkdtemp(prefix="aigw-bench-")
            log = CallLog(
                os.path.join(folder, "c.duckdb"),
                batch_size=n,
                flush_interval=60,
                migrations=_refusing_migrations(),
                before_insert=inserts.append,
            )
            wall, cpu = _timed(lambda log=log, data=data: (log.append_many(data), log.flush()))
            health = log.health()
            assert health.rows_written + health.rows_dead_lettered == n
            log.close()
            samples[name].append((wall, cpu, len(inserts)))
    clean = statistics.median(w for w, _, _ in samples["clean batch"])
    print(f"writer: one batch of {n:,} rows, {rounds} rounds interleaved, medians")
    print()
    header = f"| {'batch':<46} | {'wall s':>7} | {'cpu s':>7} | {'inserts':>7} | {'vs clean':>8} |"
    print(header)
    print("|" + "|".join("-" * len(p) for p in header.split("|")[1:-1]) + "|")
    for name, values in samples.items():
        wall = statistics.median(w for w, _, _ in values)
        cpu = statistics.median(c for _, c, _ in values)
        inserts = int(statistics.median(k for _, _, k in values))
        print(f"| {name:<46} | {wall:>7.2f} | {cpu:>7.2f} | {inserts:>7} | {wall / clean:>7.2f}x |")


if __name__ == "__main__":
    raise SystemExit(main())
