"""The writer's batching by size and by age, its insert path, and JSON checking by origin.

Issue 13 §1: batches are cut at ``batch_size`` rows or when their oldest row is
``flush_interval`` seconds old; readers still see every row already logged; close drains;
rows the gateway built skip the JSON re-validation, rows from outside keep it. No test here
asserts a duration: waits poll a condition with a generous deadline.
"""

from __future__ import annotations

import json
import time

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.store import CallLog
from aigw_lab.store.batches import ColumnBatches
from aigw_lab.store.calllog import SPOOLED_BATCH_AGE, UNSPOOLED_BATCH_AGE
from aigw_lab.store.records import CallRecord
from aigw_lab.store.schema import COLUMN_TYPES
from aigw_lab.store.writer import CallLogWarning
from aigw_lab.testing.fakes import MockProvider

from .conftest import InsertGate, make_record

JSON_COLUMNS = ("request_json", "tool_calls_json", "tags_json", "metadata_json")


def wait_until(condition, seconds: float = 60.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (a deadline, not a measure)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def arrow_json_typed() -> bool:
    return ColumnBatches(COLUMN_TYPES).json_typed


# --- batching by size and by age ------------------------------------------------------------


def test_a_lone_row_is_written_once_its_age_is_reached_without_any_flush(tmp_path, record):
    gate = InsertGate()
    log = CallLog(tmp_path / "c.duckdb", batch_size=1000, flush_interval=0.05, before_insert=gate)
    try:
        log.append(record(1))
        assert wait_until(lambda: log.rows_written == 1)
        assert gate.attempts[-1] == 1  # the batch went by age: far below batch_size
        assert log.pending_rows == 0
    finally:
        log.close()


def test_a_full_batch_goes_at_once_and_the_rest_waits_for_its_age(tmp_path, record):
    gate = InsertGate()
    log = CallLog(tmp_path / "c.duckdb", batch_size=10, flush_interval=3600, before_insert=gate)
    try:
        for i in range(25):
            log.append(record(i))
        assert wait_until(lambda: log.rows_written == 20)  # two full batches, by size
        inserted = [n for n in gate.attempts if n]
        assert sum(inserted) == 20 and all(n % 10 == 0 for n in inserted)
        assert log.pending_rows == 5  # an hour from its age: still in memory
        # A reader sees every row already logged: reads flush first.
        assert log.query("SELECT count(*) AS n FROM calls")["n"].tolist() == [25]
        assert log.pending_rows == 0
    finally:
        log.close()


def test_close_drains_rows_still_waiting_for_their_age(tmp_path, record):
    path = tmp_path / "c.duckdb"
    log = CallLog(path, batch_size=1000, flush_interval=3600)
    log.append_many([record(i) for i in range(5)], built=True)
    log.append(record(5))
    assert log.pending_rows == 6
    log.close()
    with CallLog(path) as reopened:
        assert reopened.execute("SELECT count(*) FROM calls") == [(6,)]


def test_the_default_age_is_long_only_where_rows_are_safe_before_their_insert(tmp_path):
    # Spooled rows survive a kill before their insert (they are replayed at the next open),
    # and an in-memory log dies with its process anyway; without a spool the age stays short.
    with CallLog(tmp_path / "spooled.duckdb") as spooled:
        assert spooled.spool is not None
        assert spooled.flush_interval == SPOOLED_BATCH_AGE
    with CallLog(":memory:") as memory:
        assert memory.flush_interval == SPOOLED_BATCH_AGE
    with CallLog(tmp_path / "bare.duckdb", durability="none") as bare:
        assert bare.spool is None
        assert bare.flush_interval == UNSPOOLED_BATCH_AGE
    with CallLog(tmp_path / "set.duckdb", flush_interval=7.5) as chosen:
        assert chosen.flush_interval == 7.5
    assert UNSPOOLED_BATCH_AGE < SPOOLED_BATCH_AGE


def test_gateway_query_sees_every_call_although_its_batch_is_young(tmp_path):
    mock = MockProvider("mock", models=("m1",))
    log = CallLog(tmp_path / "g.duckdb", batch_size=1000, flush_interval=3600)
    gateway = Gateway([mock], log=log, prices={"mock/m1": Price(1.0, 2.0)})
    try:
        for i in range(3):
            gateway.chat("mock/m1", f"question {i}")
        assert log.pending_rows == 3  # not written yet: the batch is far from full or old
        assert gateway.query("SELECT count(*) AS n FROM calls")["n"].tolist() == [3]
    finally:
        gateway.close()
        log.close()


@pytest.mark.parametrize("unfinished_ends", [True, False])
def test_the_gateway_hands_its_rows_over_as_built(tmp_path, unfinished_ends):
    # A spooled log storing bodies in full takes the row unfinished (its writer finishes it,
    # as built: aigw_lab/store/spool_rows.py); with that switched off, finished and built.
    class SpyLog(CallLog):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.built: list[bool | str] = []

        def append(self, record, *, built=False):  # noqa: ANN001
            self.built.append(built)
            super().append(record, built=built)

        def append_later(self, values, max_body_chars):  # noqa: ANN001
            self.built.append("later")
            super().append_later(values, max_body_chars)

    mock = MockProvider("mock", models=("m1",))
    log = SpyLog(tmp_path / "g.duckdb")
    log._unfinished_ends = unfinished_ends
    gateway = Gateway([mock], log=log, prices={"mock/m1": Price(1.0, 2.0)})
    try:
        gateway.chat("mock/m1", "hello", tags={"team": "a"}, metadata={"k": [1, 2]})
        assert log.built == (["later"] if unfinished_ends else [True])
    finally:
        gateway.close()
        log.close()


# --- JSON columns by where the row came from -------------------------------------------------


def valid_json_fields() -> dict[str, str]:
    """JSON text as the gateway writes it (compact, non-ASCII kept, nested, NaN allowed)."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    return {
        "request_json": encoder.encode(
            {"model": "m", "messages": [{"role": "user", "content": 'héllo 🌍 "q" \\ 日本'}]}
        ),
        "tool_calls_json": encoder.encode([{"name": "f", "arguments": '{"city":"Zürich"}'}]),
        "tags_json": encoder.encode({"team": "ресёрч", "n": 1.5}),
        "metadata_json": encoder.encode({"x": float("nan"), "deep": {"list": [1, None, True]}}),
    }


def stored_json(log: CallLog, call_id: str) -> list[tuple]:
    columns = ", ".join(f"{c}::VARCHAR, json_type({c}), typeof({c})" for c in JSON_COLUMNS)
    return log.execute(f"SELECT {columns} FROM calls WHERE call_id = ?", [call_id])


def test_json_columns_are_identical_for_gateway_built_and_external_rows(tmp_path, record):
    fields = valid_json_fields()
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(record(1, **fields), built=True)
        log.append(record(2, **fields))  # from outside: re-validated
        log.append_many([record(3, **fields)], built=True)
        built, external, many = (stored_json(log, f"call-{i:07d}") for i in (1, 2, 3))
        assert built == external == many
        assert built[0][0::3] == tuple(fields[c] for c in JSON_COLUMNS)  # text kept as is
        assert set(built[0][2::3]) == {"JSON"}
        extracted = log.execute(
            "SELECT tags_json->>'team', metadata_json->'deep'->'list'->>2 FROM calls "
            "ORDER BY call_id"
        )
        assert extracted == [("ресёрч", "true")] * 3


def test_invalid_json_from_outside_is_still_stored_as_a_json_string(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(record(1, request_json="{not json", tags_json='{"ok": 1}'))
        log.append(record(2, request_json='{"ok": true}'), built=True)  # shares the batch
        rows = log.execute(
            "SELECT request_json::VARCHAR, json_type(request_json), tags_json::VARCHAR "
            "FROM calls ORDER BY call_id"
        )
    assert rows == [('"{not json"', "VARCHAR", '{"ok": 1}'), ('{"ok": true}', "OBJECT", None)]


def test_gateway_built_rows_are_not_parsed_again(tmp_path, record):
    if not arrow_json_typed():  # asked at run time: the pandas-path switch is a fixture
        pytest.skip("needs pyarrow >= 19 (arrow.json columns); the pandas path re-validates")
    # The evidence that nothing re-validates built rows: text that is not JSON (which the
    # gateway never builds) goes in verbatim instead of being repaired into a JSON string.
    with CallLog(tmp_path / "c.duckdb", batch_size=1000, flush_interval=3600) as log:
        log.append(record(1, request_json="{verbatim"), built=True)
        log.flush()
        assert log.execute("SELECT request_json::VARCHAR FROM calls") == [("{verbatim",)]


def test_a_batch_with_one_external_row_is_checked_as_a_whole(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb", batch_size=1000, flush_interval=3600) as log:
        log.append(record(1, request_json="{built but broken"), built=True)
        log.append(record(2, request_json="{external"))
        log.flush()
        rows = log.execute("SELECT request_json::VARCHAR FROM calls ORDER BY call_id")
    assert rows == [('"{built but broken"',), ('"{external"',)]


def test_inserts_work_when_the_connection_forbids_replacement_scans(tmp_path, record):
    config = {"python_enable_replacements": False}
    with CallLog(tmp_path / "c.duckdb", config=config, batch_size=3) as log:
        log.append_many([record(i, tags_json='{"i": 1}') for i in range(4)], built=True)
        log.append(record(9, request_json="{bad"))
        assert log.execute("SELECT count(*) FROM calls") == [(5,)]
        assert log.execute(
            "SELECT request_json::VARCHAR FROM calls WHERE call_id = ?", ["call-0000009"]
        ) == [('"{bad"',)]
        assert log._writer._inserts.by_register  # it fell back to registering the batch


# --- merging waiting batches into whole row groups --------------------------------------------

ROW_GROUP = 122_880  # DuckDB's row group: a whole one is written straight to the file


@pytest.fixture(scope="module")
def numbered_rows() -> tuple[CallRecord, ...]:
    """``make_record(i)`` for i < 135,000, built once for the module's row-group tests (both
    backends): 0.4-0.5 s of CPU a build. Records are immutable; a test that replaces some
    rows does it in its own list."""
    return tuple(make_record(i) for i in range(135_000))


def behind_by(tmp_path, gate, rows, built):  # noqa: ANN001, ANN201
    """A log whose writer is held at its first 5,000-row insert while ``rows[5_000:]`` are
    appended (``built``: per row), then let go and flushed; returns the log."""
    log = CallLog(
        tmp_path / "c.duckdb",
        batch_size=5_000,
        flush_interval=3600,
        max_queue=300_000,
        durability="none",
        before_insert=gate,
    )
    gate.hold()
    log.append_many(rows[:5_000], built=True)
    assert gate.entered.wait(60)
    for row, is_built in zip(rows[5_000:], built[5_000:], strict=True):
        log.append(row, built=is_built)
    gate.release()
    log.flush()
    return log


def test_a_writer_that_falls_behind_inserts_whole_row_groups(tmp_path, numbered_rows):
    # 130,000 rows wait in 26 batches of 5,000: the merged insert takes 24 of them and
    # 2,880 rows of the 25th (whole batches only would make 120,000, one row group short,
    # which DuckDB sends through its write-ahead log); the rest follows, order kept.
    rows = list(numbered_rows)
    gate = InsertGate()
    log = behind_by(tmp_path, gate, rows, [True] * len(rows))
    try:
        assert [n for n in gate.attempts if n] == [5_000, ROW_GROUP, 135_000 - 5_000 - ROW_GROUP]
        stored = log.query("SELECT call_id FROM calls ORDER BY rowid")["call_id"].tolist()
        assert stored == [row.call_id for row in rows]
    finally:
        log.close()


@pytest.mark.slow  # 135,000 rows through a real log: about 2 s of CPU
def test_the_rest_of_a_split_batch_keeps_its_json_check(tmp_path, record, numbered_rows):
    # The 25th batch (rows 125,000-129,999) is split at row 127,880; a row from outside in
    # its rest still has its invalid JSON stored as a JSON string, not verbatim.
    rows = list(numbered_rows)
    rows[128_000] = record(128_000, request_json="{external")
    built = [True] * len(rows)
    built[128_000] = False
    gate = InsertGate()
    log = behind_by(tmp_path, gate, rows, built)
    try:
        assert ROW_GROUP in gate.attempts
        stored = log.execute(
            "SELECT request_json::VARCHAR FROM calls WHERE call_id = ?", ["call-0128000"]
        )
        assert stored == [('"{external"',)]
        assert log.execute("SELECT count(*) FROM calls") == [(135_000,)]
    finally:
        log.close()


@pytest.mark.slow  # 135,000 rows through a real log: about 2 s of CPU
def test_hostile_rows_in_a_row_group_batch_are_set_aside_and_the_rest_kept(
    tmp_path, record, numbered_rows
):
    # Rows no column can hold, in the merged part (60,000) and in the split batch's rest
    # (129,500), go to the dead letter; a lone surrogate is made storable on the slow path
    # (U+FFFD, flagged), a NUL and a big BIGINT are stored as they are; order is kept.
    rows = list(numbered_rows)
    rows[60_000] = record(60_000, input_tokens=2**63)  # past BIGINT
    rows[129_500] = record(129_500, http_status_code=2**40)  # past INTEGER
    rows[129_000] = record(129_000, response_text="lone \ud800 surrogate")
    rows[70_000] = record(70_000, response_text="nul \x00 kept", output_tokens=2**62)
    gate = InsertGate()
    with pytest.warns(CallLogWarning, match="refused"):
        log = behind_by(tmp_path, gate, rows, [True] * len(rows))
    try:
        assert [n for n in gate.attempts if n] == [5_000, ROW_GROUP, 135_000 - 5_000 - ROW_GROUP]
        refused = log.execute("SELECT call_id FROM calls_dead_letter ORDER BY call_id")
        assert refused == [("call-0060000",), ("call-0129500",)]
        stored = log.query("SELECT call_id FROM calls ORDER BY rowid")["call_id"].tolist()
        assert stored == [r.call_id for i, r in enumerate(rows) if i not in (60_000, 129_500)]
        kept = "SELECT response_text, output_tokens, flags FROM calls WHERE call_id = ?"
        assert log.execute(kept, ["call-0070000"]) == [("nul \x00 kept", 2**62, None)]
        assert log.execute(kept, ["call-0129000"]) == [
            ("lone \ufffd surrogate", None, ["invalid_text"])
        ]
    finally:
        log.close()
