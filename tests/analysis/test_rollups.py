"""The rollups give the reference's frames: a property test over small random logs (retries,
failures, cache hits, several traces and scores per unit, rescoring, rows arriving in any
order across several refreshes, call ids shared by rows of different units, rows delivered
twice, targets outside experiments, item ids equal to trace ids), plus the histogram's stated
error bound, the read-only and incremental paths, and proof that the analyses read the
rollups at all.

Every property test also runs `EDGE_CASES`, one log holding each of those cases, as an explicit
example. Session 12 checked what the examples catch with seven mutants of the refresh script
(`_refresh_script`: the old result calls left out of the re-merged scores, NULL targets
compared with ``=`` in the DELETE, costs counting distinct call ids, old rows matched on the
raw item id, rescored calls left out, old units matched without their repetition, new rows
matched on the raw repetition; bench/rollups_mutants.py): `EDGE_CASES` alone fails the
chunked-refresh test on all seven and the analyses test on six (all but the costs), and
random examples alone caught each of the seven in all of 10 runs of the chunked test, within
3-14 examples, while in the analyses test they missed two of them (the old result calls,
rescored calls) in 3 and 2 of 10 runs of 80 examples, both of which `EDGE_CASES` fails
there. So the chunked test draws 40 random logs (80 before) and the analyses test 25 (40
before) beside it (docs/performance.md, "The heaviest tests' CPU, session 12")."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from aigw_lab.analysis import cost_over_time, paired_comparison, target_summary
from aigw_lab.analysis._rolled import summary_tables
from aigw_lab.analysis._source import _connection_reader
from aigw_lab.analysis.reference import (
    reference_cost_over_time,
    reference_paired_comparison,
    reference_target_summary,
)
from aigw_lab.analysis.rollups import (
    HISTOGRAM_RELATIVE_ERROR,
    _refresh,
    fresh_rollups,
    refresh_rollups,
)
from aigw_lab.errors import StoreError
from aigw_lab.store import CallLog
from aigw_lab.store.schema import apply_migrations
from tests.analysis.conftest import row as call_row

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CALL_FIELDS = (
    "call_id", "trace_id", "timestamp", "provider_name", "request_model", "status",
    "error_type", "cache_status", "latency_ms", "ttft_ms", "cost_usd", "attempt",
    "fallback_from", "experiment_id", "target", "item_id", "repetition", "simulated",
)  # fmt: skip
SCORE_FIELDS = ("score_id", "call_id", "scorer", "value", "created_at", "experiment_id")

LATENCIES = [None, 0.0, 1.5, 10.0, 99.9, 250.5, 1000.0, 4321.0]


@st.composite
def random_logs(draw: st.DrawFn) -> dict[str, Any]:
    """Calls and scores of a small log, and the chunks they arrive in."""
    n_traces = draw(st.integers(1, 18))
    starts = draw(st.lists(st.integers(0, 7_200_000), min_size=n_traces, max_size=n_traces,
                           unique=True))  # fmt: skip
    calls: list[tuple[Any, ...]] = []
    first = 0  # the index of the current trace's first row
    for t, start_ms in enumerate(starts):
        experiment = draw(st.sampled_from(["exp", "exp", "exp", "other", None]))
        # A target outside any experiment too: the unit key compares NULLs as equal.
        target = draw(st.sampled_from(["a", "b", "b", None] if experiment else [None, "a"]))
        # An item id may equal another trace's id: both coalesce to the same unit key.
        item = draw(st.sampled_from(["i0", "i1", "i2", "t0", None]))
        repetition = draw(st.sampled_from([0, 0, 1, None]))
        model = draw(st.sampled_from(["m1", "m2"]))
        previous_first, first = first, len(calls)
        attempts = draw(st.integers(1, 3))
        for attempt in range(1, attempts + 1):
            call_id = f"c{len(calls)}"
            shared = draw(st.sampled_from(["own", "own", "first", "any"])) if t else ""
            # The call id of a row of another trace (and often another unit; "first" makes
            # this trace's result row share the previous trace's first attempt, its result
            # until a late retry row arrives): call_id has no unique key, and rows merged
            # from another log keep their ids (test_a_unit_sharing_a_call_id_keeps_its_...).
            if shared == "first" and attempt == attempts:
                call_id = calls[previous_first][0]
            elif shared == "any":
                call_id = calls[draw(st.integers(0, len(calls) - 1))][0]
            calls.append(
                (
                    call_id,
                    f"t{t}",
                    T0 + timedelta(milliseconds=start_ms + 150 * (attempt - 1)),
                    "sim",
                    model,
                    draw(st.sampled_from(["ok", "ok", "error", None])),
                    draw(st.sampled_from([None, "timeout"])),
                    draw(st.sampled_from(["hit", "miss", None])),
                    draw(st.sampled_from(LATENCIES)),
                    draw(st.sampled_from([None, 0.0, 5.0, 31.0])),
                    draw(st.sampled_from([None, 0.0, 0.001, 0.01, 0.5])),
                    attempt,
                    draw(st.sampled_from([None, None, "x/y"])),
                    experiment,
                    target,
                    item,
                    repetition,
                    draw(st.booleans()),
                )
            )
    # A row delivered twice (an at-least-once copy): the same values, a second rowid.
    calls += draw(st.lists(st.sampled_from(calls), max_size=2))
    n_scores = draw(st.integers(0, 2 * len(calls)))
    moments = draw(st.lists(st.integers(0, 10_000), min_size=n_scores, max_size=n_scores,
                            unique=True))  # fmt: skip
    scores = [
        (
            f"s{i}",
            f"c{draw(st.integers(0, len(calls) - 1))}",
            draw(st.sampled_from(["s1", "s1", "s2", None])),
            draw(st.sampled_from([0.0, 1.0, 1.0, 0.5, None])),
            T0 + timedelta(seconds=moment),
            "exp",
        )
        for i, moment in enumerate(moments)
    ]
    # Rows arrive in any order (late rows), in chunks with a refresh after each.
    calls = draw(st.permutations(calls))
    scores = draw(st.permutations(scores))
    chunks = draw(st.integers(1, 4))
    return {"calls": calls, "scores": scores, "chunks": chunks}


def _edge_call(call_id: str, trace: str, seconds: float, **fields: Any) -> tuple[Any, ...]:
    """A row of `EDGE_CASES` (CALL_FIELDS' order): an ok miss of target a, item i0, unless
    ``fields`` say otherwise."""
    values = {
        "call_id": call_id, "trace_id": trace, "timestamp": T0 + timedelta(seconds=seconds),
        "provider_name": "sim", "request_model": "m1", "status": "ok", "error_type": None,
        "cache_status": "miss", "latency_ms": 99.9, "ttft_ms": 5.0, "cost_usd": 0.01,
        "attempt": 1, "fallback_from": None, "experiment_id": "exp", "target": "a",
        "item_id": "i0", "repetition": 0, "simulated": False,
    } | fields  # fmt: skip
    return tuple(values[f] for f in CALL_FIELDS)


_RETRIED = _edge_call("c1", "t0", 0.15, attempt=2, cache_status="hit", latency_ms=10.0)
#: The cases the module docstring lists, in one log of three chunks, so that each property
#: test meets them in every run whatever it draws (an explicit `@example`). First and second
#: chunk: a failed attempt and its retry (a cache hit), a fallback, a second repetition, a
#: call outside any experiment (no item: its trace id stands in), an item id equal to
#: another trace's id with a NULL repetition, a result row sharing its call id with another
#: unit's, an experiment without a target. Last chunk, after two refreshes: the retry
#: delivered twice, and a later trace or attempt of five units rolled up before (one with
#: each of a NULL target, a NULL item, a NULL repetition, another repetition beside it, and
#: the shared call id as its old result, which the later ok trace replaces). Scores on
#: several calls, one without a scorer, rescored later (the latest counts), and new scores
#: of a unit the last chunk does not touch.
EDGE_CASES: dict[str, Any] = {
    "calls": [
        _edge_call(
            "c0",
            "t0",
            0.0,
            status="error",
            error_type="timeout",
            latency_ms=None,
            ttft_ms=None,
            cost_usd=None,
        ),
        _RETRIED,
        _edge_call(
            "c2", "t1", 1.0, target="b", request_model="m2", fallback_from="x/y", latency_ms=250.5
        ),
        _edge_call("c7", "t8", 1.5, repetition=1, latency_ms=31.0),
        _edge_call(
            "c3",
            "t2",
            2.0,
            experiment_id=None,
            target=None,
            item_id=None,
            repetition=None,
            status="error",
            latency_ms=1000.0,
            cost_usd=0.5,
        ),
        _edge_call("c4", "t3", 3.0, target="b", item_id="t0", repetition=None, ttft_ms=None),
        _edge_call("c2", "t4", 4.0, item_id="i1", repetition=1, latency_ms=4321.0),
        _edge_call("c5", "t5", 5.0, experiment_id="other", target=None, latency_ms=0.0),
        _RETRIED,  # delivered twice
        _edge_call("c6", "t6", 6.0, latency_ms=1.5, cost_usd=0.001),  # (a, i0, 0) again
        _edge_call(
            "c8",
            "t2",
            2.15,
            experiment_id=None,
            target=None,
            item_id=None,
            repetition=None,
            attempt=2,
        ),  # a late retry of the call outside
        _edge_call("c9", "t7", 7.0, target="b", item_id="t0", repetition=None),
        _edge_call("c10", "t9", 8.0, target="b", request_model="m2"),  # replaces c2 of (b, i0)
    ],
    "scores": [
        ("s0", "c1", "s1", 1.0, T0 + timedelta(seconds=10), "exp"),
        ("s1", "c2", "s1", 1.0, T0 + timedelta(seconds=11), "exp"),
        ("s2", "c4", None, 0.5, T0 + timedelta(seconds=12), "exp"),
        ("s3", "c4", "s2", 0.5, T0 + timedelta(seconds=13), "exp"),
        ("s4", "c0", "s1", 0.0, T0 + timedelta(seconds=14), "exp"),
        ("s5", "c2", "s2", None, T0 + timedelta(seconds=15), "exp"),
        ("s6", "c1", "s1", 0.0, T0 + timedelta(seconds=20), "exp"),  # rescored: now 0
        ("s7", "c6", "s1", 1.0, T0 + timedelta(seconds=21), "exp"),
        ("s8", "c7", "s1", 0.0, T0 + timedelta(seconds=22), "exp"),  # an untouched unit's
    ],
    "chunks": 3,
}


def _connection() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(":memory:")
    apply_migrations(conn)
    return conn


class _Copies:
    """Fresh migrated logs for the property tests' examples, each a copy of one migrated
    in-memory template attached to the same DuckDB instance, on a cursor of its own whose
    current database it is (as a log file's connection has its file's): 3-4 ms of CPU each
    instead of 20-25 ms for a `_connection` (a new instance, then the migrations), which was
    a quarter of the chunked-refresh test's CPU (docs/performance.md, "The test suite's time,
    session 11"). Same tables, columns, defaults, constraints and rows as a fresh one, every
    table's rowids starting at 0 (`test_a_copy_is_a_fresh_migrated_log`)."""

    #: Copies kept attached: an example uses at most two, so older ones are detached.
    KEEP = 4

    def __init__(self) -> None:
        self.template = _connection()
        self.made = 0
        self.live: list[tuple[str, duckdb.DuckDBPyConnection]] = []

    def new(self) -> duckdb.DuckDBPyConnection:
        while len(self.live) >= self.KEEP:
            name, cursor = self.live.pop(0)
            cursor.close()
            self.template.execute(f"DETACH {name}")
        self.made += 1
        name = f"example_{self.made}"
        self.template.execute(f"ATTACH ':memory:' AS {name}")
        self.template.execute(f"COPY FROM DATABASE memory TO {name}")
        cursor = self.template.cursor()
        cursor.execute(f"USE {name}")
        self.live.append((name, cursor))
        return cursor

    def close(self) -> None:
        for _, cursor in self.live:
            cursor.close()
        self.template.close()


@pytest.fixture(scope="module")
def copies() -> Iterator[_Copies]:
    made = _Copies()
    yield made
    made.close()


def _insert(conn: duckdb.DuckDBPyConnection, table: str, fields: tuple[str, ...], rows) -> None:
    # One INSERT of all the rows, in their order (the same rows and rowids as a row at a time):
    # DuckDB's executemany runs each row as its own statement, about 9x the CPU for a chunk of
    # 30 calls, and it was a fifth of these property tests' time (docs/performance.md, "The
    # test suite's time, session 10").
    if rows:
        row = f"({', '.join('?' for _ in fields)})"
        conn.execute(
            f"INSERT INTO {table} ({', '.join(fields)}) VALUES {', '.join([row] * len(rows))}",
            [value for r in rows for value in r],
        )


def _load_in_chunks(conn: duckdb.DuckDBPyConnection, log: dict[str, Any]) -> None:
    k = log["chunks"]
    calls, scores = log["calls"], log["scores"]
    for i in range(k):
        _insert(conn, "calls", CALL_FIELDS, calls[i * len(calls) // k : (i + 1) * len(calls) // k])
        part = scores[i * len(scores) // k : (i + 1) * len(scores) // k]
        _insert(conn, "scores", SCORE_FIELDS, part)
        if i < k - 1:
            refresh_rollups(conn)  # a watermark that units and scores span


def _same(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        frame.reset_index(drop=True),
        reference.reset_index(drop=True),
        check_dtype=False,
        rtol=1e-9,
        atol=1e-12,
    )


# No shrinking: the logs are small already, and shrinking one of them took minutes.
_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],
    "database": None,
}


_CATALOG = (
    "SELECT schema_name, table_name, sql FROM duckdb_tables() WHERE database_name = ?",
    "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = ?",
    "SELECT index_name, sql FROM duckdb_indexes() WHERE database_name = ?",
    "SELECT sequence_name, start_value FROM duckdb_sequences() WHERE database_name = ?",
    "SELECT table_name, column_name, column_index, column_default, data_type, is_nullable "
    "FROM duckdb_columns() WHERE database_name = ?",
    "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() "
    "WHERE database_name = ?",
)


def _described(conn: duckdb.DuckDBPyConnection) -> list[Any]:
    """Everything a fresh log's database holds: its catalog, each table's rows and rowids
    (but when each migration was applied)."""
    (database,) = conn.execute("SELECT current_database()").fetchone()
    described: list[Any] = [sorted(conn.execute(sql, [database]).fetchall()) for sql in _CATALOG]
    for (table,) in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", [database]
    ).fetchall():
        columns = "* EXCLUDE (applied_at)" if table == "schema_migrations" else "*"
        rows = conn.execute(f"SELECT rowid, {columns} FROM main.{table} ORDER BY ALL")
        described.append((table, rows.fetchall()))
    return described


def test_a_copy_is_a_fresh_migrated_log() -> None:
    # What the property tests below run on (`_Copies`) is what `_connection` makes, even
    # after earlier copies were written to and detached.
    copies = _Copies()
    try:
        for _ in range(_Copies.KEEP + 2):
            copy = copies.new()
            assert _described(copy) == _described(_connection())
            _insert(copy, "calls", CALL_FIELDS, [call_row_values("c0")])
            refresh_rollups(copy)
            assert copy.execute("SELECT count(*) FROM main.rollup_units").fetchone() == (1,)
        assert len(copies.live) == _Copies.KEEP
    finally:
        copies.close()


def call_row_values(call_id: str) -> tuple[Any, ...]:
    return (call_id, "t0", T0, "sim", "m1", "ok", None, "miss", 10.0, None, 0.001, 1, None,
            "exp", "a", "i0", 0, True)  # fmt: skip


@pytest.mark.slow  # about 20-40 s on a loaded 2-core box
@settings(max_examples=25, **_SETTINGS)
@given(log=random_logs(), experiment=st.sampled_from(["exp", None]),
       scorer=st.sampled_from(["s1", "s2", None]))  # fmt: skip
@example(log=EDGE_CASES, experiment="exp", scorer="s1")
@example(log=EDGE_CASES, experiment=None, scorer="s2")
def test_rolled_up_analyses_equal_the_reference(copies, log, experiment, scorer):
    conn = copies.new()
    _load_in_chunks(conn, log)
    summary = target_summary(conn, experiment_id=experiment, scorer=scorer, n_boot=50)
    expected = reference_target_summary(
        conn, experiment_id=experiment, scorer=scorer, n_boot=50, bootstrap="auto"
    )
    _same(summary, expected)  # small logs: percentiles exact too
    assert summary.attrs == expected.attrs
    for freq in ("second", "hour"):
        _same(
            cost_over_time(conn, freq=freq, experiment_id=experiment),
            reference_cost_over_time(conn, freq=freq, experiment_id=experiment),
        )
    targets = sorted({t for t in summary["target"] if isinstance(t, str)})
    for a, b in [(x, y) for x in targets for y in targets if x < y][:2]:
        _same(
            paired_comparison(conn, a, b, experiment_id=experiment, scorer=scorer, n_boot=50),
            reference_paired_comparison(
                conn, a, b, experiment_id=experiment, scorer=scorer, n_boot=50, bootstrap="auto"
            ),
        )


_ROLLUP_CONTENT = (
    "SELECT * FROM rollup_units ORDER BY ALL",
    "SELECT * FROM rollup_scores ORDER BY ALL",
    "SELECT experiment_id, target, second, sum(cost_usd), sum(calls) FROM rollup_costs "
    "GROUP BY ALL ORDER BY ALL",
)


@pytest.mark.slow  # about 8-15 s on a loaded 2-core box
@settings(max_examples=40, **_SETTINGS)
@given(log=random_logs())
@example(log=EDGE_CASES)
def test_refreshes_in_chunks_build_the_rollups_one_refresh_builds(copies, log):
    # The merge's own invariant, cheaper to check than the analyses (so more examples):
    # whatever chunks the rows arrive in, the tables end as one refresh of them all makes.
    chunked = copies.new()
    _load_in_chunks(chunked, log | {"chunks": max(3, log["chunks"])})  # refreshes between
    refresh_rollups(chunked)
    whole = copies.new()
    _insert(whole, "calls", CALL_FIELDS, log["calls"])
    _insert(whole, "scores", SCORE_FIELDS, log["scores"])
    refresh_rollups(whole)
    for sql in _ROLLUP_CONTENT:
        assert _rounded(chunked.execute(sql).fetchall()) == _rounded(
            whole.execute(sql).fetchall()
        ), sql


def _rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with floats to 9 decimals: partial sums added in another order differ in the
    last bits (1.011 against 1.0110000000000001)."""
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def _scored_experiment() -> duckdb.DuckDBPyConnection:
    """2 targets x 300 items x 3 repetitions, every unit scored 0/1 by s1: item means take
    4 values, so the public functions count picks per value instead of drawing indices."""
    conn = _connection()
    conn.execute(
        """
        INSERT INTO calls (call_id, trace_id, "timestamp", provider_name, request_model, status,
                           latency_ms, cost_usd, attempt, experiment_id, target, item_id,
                           repetition, simulated)
        SELECT 'c' || i, 't' || i, TIMESTAMPTZ '2026-03-01 09:00:00+00' + to_milliseconds(i),
               'sim', 'm', 'ok', 100 + (i * 37) % 1000, 0.001 * (1 + i % 2), 1, 'exp',
               't' || (i % 2), 'item' || (i // 2 % 300), i // 600, false
        FROM range(1800) r(i)
        """
    )
    conn.execute(
        """
        INSERT INTO scores (score_id, call_id, scorer, value, created_at, experiment_id)
        SELECT 's' || i, 'c' || i, 's1', (hash(i) % 10 < 6 + 2 * (i % 2))::INT::DOUBLE,
               TIMESTAMPTZ '2026-03-01 10:00:00+00', 'exp'
        FROM range(1800) r(i)
        """
    )
    return conn


def test_counted_intervals_agree_with_the_historical_ones_within_monte_carlo_error():
    conn = _scored_experiment()
    summary = target_summary(conn, experiment_id="exp", n_boot=2000)
    _same(
        summary, reference_target_summary(conn, experiment_id="exp", n_boot=2000, bootstrap="auto")
    )
    historical = reference_target_summary(conn, experiment_id="exp", n_boot=2000)
    interval = ["quality_ci_low", "quality_ci_high"]
    _same(summary.drop(columns=interval), historical.drop(columns=interval))
    # Different draws of the same distribution: the bounds move by Monte Carlo error only
    # (about 0.002 at 2,000 replicates), far less than the interval's width (about 0.08).
    assert not summary[interval].equals(historical[interval])
    pd.testing.assert_frame_equal(summary[interval], historical[interval], atol=0.01, rtol=0)
    paired = paired_comparison(conn, "t1", "t0", experiment_id="exp", n_boot=2000)
    old = reference_paired_comparison(conn, "t1", "t0", experiment_id="exp", n_boot=2000)
    bounds = ["ci_low", "ci_high"]
    _same(paired.drop(columns=bounds), old.drop(columns=bounds))
    width = (old["ci_high"] - old["ci_low"]).to_numpy()
    moved = (paired[bounds] - old[bounds]).abs().max(axis=1).to_numpy()
    assert (moved <= 0.15 * width + 1e-9).all(), (moved, width)


@pytest.mark.slow  # about 20 s on a loaded 2-core box
@settings(max_examples=25, **_SETTINGS)
@given(log=random_logs())
@example(log=EDGE_CASES)
def test_histogram_percentiles_are_within_the_stated_relative_error(copies, log):
    conn = copies.new()
    _load_in_chunks(conn, log)
    expected = reference_target_summary(conn, experiment_id="exp", scorer="s1", n_boot=2)
    with fresh_rollups(conn) as rollups:
        per_target, _ = summary_tables(rollups, "exp", "s1", exact_limit=0)
    per_target = per_target.sort_values("target").reset_index(drop=True)
    assert list(per_target["target"]) == list(expected["target"])
    for column, labels in (("latency_q", ("p50", "p95", "p99")), ("ttft_q", ("p50", "p95"))):
        name = column.split("_")[0]
        for row, values in zip(expected.itertuples(), per_target[column], strict=True):
            for i, label in enumerate(labels):
                exact = getattr(row, f"{name}_{label}_ms")
                if math.isnan(exact):  # no ok unit with a value: no histogram row either
                    assert not isinstance(values, list) or values[i] is None
                    continue
                bound = HISTOGRAM_RELATIVE_ERROR * abs(exact) + 1e-9
                assert abs(values[i] - exact) <= bound, (column, label, values[i], exact)


def test_the_histogram_error_is_tight_not_just_an_upper_bound():
    # One value at the low edge of its bucket is stood in for by the bucket's midpoint:
    # the error is (nearly) the whole stated bound, so a looser statement would be false.
    conn = _connection()
    edge = 1.01**500 * (1 + 1e-9)
    _insert(conn, "calls", ("call_id", "trace_id", "timestamp", "status", "latency_ms",
                            "experiment_id", "target", "item_id", "attempt"),
            [("c0", "t0", T0, "ok", edge, "exp", "a", "i0", 1)])  # fmt: skip
    with fresh_rollups(conn) as rollups:
        per_target, _ = summary_tables(rollups, "exp", None, exact_limit=0)
    p50 = per_target["latency_q"].iloc[0][0]
    assert abs(p50 - edge) / edge == pytest.approx(HISTOGRAM_RELATIVE_ERROR, rel=1e-6)


def _row(i: int, **fields: Any) -> tuple[Any, ...]:
    values = {
        "call_id": f"c{i}", "trace_id": f"t{i}", "timestamp": T0 + timedelta(seconds=i),
        "provider_name": "sim", "request_model": "m", "status": "ok", "error_type": None,
        "cache_status": "miss", "latency_ms": 100.0 + i, "ttft_ms": None, "cost_usd": 0.01,
        "attempt": 1, "fallback_from": None, "experiment_id": "exp", "target": "a",
        "item_id": f"i{i}", "repetition": 0, "simulated": True,
    } | fields  # fmt: skip
    return tuple(values[f] for f in CALL_FIELDS)


def test_a_refresh_merges_only_what_is_new_and_a_second_one_nothing():
    conn = _connection()
    _insert(conn, "calls", CALL_FIELDS, [_row(i) for i in range(5)])
    first = refresh_rollups(conn)
    assert (first.calls, first.scores, first.schema) == (5, 0, "main")
    assert refresh_rollups(conn).calls == 0
    # A retry of unit t2 (a late row) and a score: the unit is recomputed, not duplicated.
    _insert(conn, "calls", CALL_FIELDS, [_row(5, trace_id="t2", attempt=2, item_id="i2")])
    _insert(conn, "scores", SCORE_FIELDS, [("s0", "c5", "s1", 1.0, T0, "exp")])
    second = refresh_rollups(conn)
    assert (second.calls, second.scores) == (1, 1)
    units = conn.execute("SELECT count(*), sum(attempts) FROM rollup_units").fetchone()
    assert units == (5, 6)
    assert conn.execute("SELECT call_id, value FROM rollup_scores").fetchall() == [("c5", 1.0)]


def test_a_unit_sharing_a_call_id_keeps_its_scores_when_the_other_unit_moves_on():
    # Units i0 and i1 have result rows with the same call id (rows copied from another log
    # keep their ids; call_id has no unique key). A later ok trace of i0 makes c9 its
    # result: c0's scores were dropped for i1 too, and only c9's were merged back.
    conn = _connection()
    _insert(conn, "calls", CALL_FIELDS, [_row(0, item_id="i0"), _row(1, call_id="c0")])
    _insert(conn, "scores", SCORE_FIELDS, [("s0", "c0", "s1", 1.0, T0, "exp")])
    assert refresh_rollups(conn).calls == 2
    _insert(conn, "calls", CALL_FIELDS, [_row(9, trace_id="t9", item_id="i0")])
    refresh_rollups(conn)
    scored = conn.execute("SELECT item_id, value FROM rollup_scores ORDER BY item_id")
    assert scored.fetchall() == [("i1", 1.0)]
    summary = target_summary(conn, experiment_id="exp", n_boot=2)
    _same(summary, reference_target_summary(conn, experiment_id="exp", n_boot=2, bootstrap="auto"))
    assert summary[["units", "scored"]].values.tolist() == [[2, 1]]


def test_the_analyses_read_the_rollups_not_the_calls():
    conn = _connection()
    _insert(conn, "calls", CALL_FIELDS, [_row(i) for i in range(4)])
    before = target_summary(conn, experiment_id="exp", n_boot=2)
    assert before["units"].tolist() == [4]
    # Edit the rollup behind the log's back: the summary reports the edit, so it was read.
    conn.execute("UPDATE rollup_units SET spent_usd = 1.0")
    after = target_summary(conn, experiment_id="exp", n_boot=2)
    assert after["total_cost"].tolist() == [4.0]
    conn.execute("UPDATE rollup_costs SET cost_usd = 2.0")
    assert cost_over_time(conn, freq="day")["cost_usd"].tolist() == [8.0]


def test_a_read_only_snapshot_is_rolled_up_in_temporary_tables(tmp_path):
    path = tmp_path / "calls.duckdb"
    with CallLog(path) as log:
        log.execute("INSERT INTO calls (call_id, trace_id, status, latency_ms, target, "
                    "experiment_id, item_id, cost_usd, attempt) VALUES "
                    "('c0', 't0', 'ok', 12.0, 'a', 'exp', 'i0', 0.5, 1)")  # fmt: skip
    expected = reference_target_summary(path, experiment_id="exp", n_boot=2)
    _same(target_summary(path, experiment_id="exp", n_boot=2), expected)
    snapshot = CallLog.snapshot(path)
    try:
        with fresh_rollups(snapshot) as rollups:
            assert rollups.schema == "temp"
            assert rollups.refreshed
        with fresh_rollups(snapshot) as rollups:  # the same connection: built once
            assert (rollups.schema, rollups.refreshed) == ("temp", False)
    finally:
        snapshot.close()
    # The log file itself was never written by the analyses; refresh_rollups writes it.
    check = duckdb.connect(str(path), read_only=True)
    assert check.execute("SELECT calls_rowid FROM rollup_state").fetchone() == (-1,)
    check.close()
    assert refresh_rollups(path).calls == 1
    check = duckdb.connect(str(path), read_only=True)
    assert check.execute("SELECT calls_rowid FROM rollup_state").fetchone() == (0,)
    check.close()


def test_a_path_is_rolled_up_in_a_private_copy_and_the_log_is_left_alone(tmp_path, monkeypatch):
    # A path's rollups that are behind merge into the copy's own tables ("main"), not
    # temporary copies of every rollup table; the log keeps its watermark and the copy goes.
    path = tmp_path / "calls.duckdb"
    with CallLog(path) as log:
        log.execute("INSERT INTO calls (call_id, trace_id, status, latency_ms, target, "
                    "experiment_id, item_id, cost_usd, attempt) VALUES "
                    "('c0', 't0', 'ok', 12.0, 'a', 'exp', 'i0', 0.5, 1)")  # fmt: skip
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    with fresh_rollups(path) as rollups:
        assert (rollups.schema, rollups.refreshed) == ("main", True)
        assert rollups.read("SELECT count(*) AS n FROM rollup_units")["n"].tolist() == [1]
        (copy,) = scratch.iterdir()  # one private folder, only this user's
        assert copy.stat().st_mode & 0o077 == 0
    assert list(scratch.iterdir()) == []
    check = duckdb.connect(str(path), read_only=True)
    assert check.execute("SELECT calls_rowid FROM rollup_state").fetchone() == (-1,)
    check.close()
    _same(
        target_summary(path, experiment_id="exp", n_boot=2),
        reference_target_summary(path, experiment_id="exp", n_boot=2),
    )
    with pytest.raises(StoreError, match="no call log"):
        target_summary(tmp_path / "missing.duckdb")


def test_a_call_log_is_rolled_up_in_place(tmp_path):
    with CallLog(tmp_path / "calls.duckdb") as log:
        log.execute("INSERT INTO calls (call_id, trace_id, status, latency_ms, target, "
                    "experiment_id, item_id, attempt) "
                    "VALUES ('c0', 't0', 'ok', 12.0, 'a', 'exp', 'i0', 1)")  # fmt: skip
        assert target_summary(log, n_boot=2)["latency_p50_ms"].tolist() == [12.0]
        assert log.execute("SELECT calls_rowid FROM rollup_state") == [(0,)]


def test_refreshing_something_that_is_not_a_log_says_what_to_pass():
    with pytest.raises(TypeError, match="pass a CallLog"):
        refresh_rollups(42)


def test_calls_logged_between_analyses_are_merged_by_the_next_one(tmp_path):
    with CallLog(tmp_path / "calls.duckdb") as log:
        log.append_many(
            [call_row(f"c{i}", f"t{i}", item_id=f"i{i}", target="a", attempt=1) for i in range(3)]
        )
        assert target_summary(log, n_boot=2)["units"].tolist() == [3]
        log.append_many(
            [call_row(f"c{i}", f"t{i}", item_id=f"i{i}", target="a", attempt=1) for i in (3, 4)]
            + [call_row("c5", "t0", item_id="i0", target="a", attempt=2, status="error")]
        )
        summary = target_summary(log, n_boot=2)
        _same(summary, reference_target_summary(log, n_boot=2))
        assert summary[["units", "errors", "attempts_per_unit"]].values.tolist() == [[5, 1, 1.2]]


def test_a_refresh_that_lost_a_race_to_another_one_looks_again():
    conn = _connection()
    _insert(conn, "calls", CALL_FIELDS, [_row(i) for i in range(3)])
    other = conn.cursor()
    scripts: list[str] = []

    def run(sql: str) -> list[Any]:
        if not scripts:  # another process refreshes between our look and our script
            refresh_rollups(other)
        scripts.append(sql)
        try:
            conn.execute(sql)
        except duckdb.Error:
            conn.execute("ROLLBACK")
            raise
        return []

    done = _refresh(run, _connection_reader(conn, where="test"), where="test")
    assert len(scripts) == 1  # the second look found nothing new: no second script
    assert (done.calls, done.schema) == (0, "main")
    assert conn.execute("SELECT count(*) FROM rollup_units").fetchone() == (3,)
