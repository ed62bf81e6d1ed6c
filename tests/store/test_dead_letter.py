"""Issue 9 section 3, the writer's side: a row the database refuses goes to
``calls_dead_letter`` (or an owner-only file, or stays queued) while the rest of its batch is
written, exactly once, and `CallLog.health` counts it."""

from __future__ import annotations

import json
import math
import os
import stat
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigw_lab.errors import StoreError
from aigw_lab.store import CallLog, CallLogWarning
from aigw_lab.store.sanitize import FLAGS, sanitize_record
from aigw_lab.store.schema import MIGRATIONS, Migration

from .bad_rows_helpers import (
    SURROGATE,
    calls,
    refusing_migrations,
)


def test_sanitize_record_keeps_clean_rows_as_they_are_and_nul_characters(record):
    clean = record(1, response_text="plain ünïcode \x00 with a NUL")
    assert sanitize_record(clean) is clean
    flagged = sanitize_record(record(2, response_text=SURROGATE, flags=("earlier",)))
    assert flagged.response_text == "\ufffd"
    assert flagged.flags == ("earlier", "invalid_text")
    assert set(flagged.flags) - {"earlier"} <= set(FLAGS)


def test_nul_characters_round_trip_through_the_log(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(record(1, response_text="a\x00b", request_json='{"x": "\\u0000"}'))
        assert calls(log, "response_text, request_json->>'x'") == [("a\x00b", "\x00")]
        assert log.execute("SELECT count(*) FROM calls_dead_letter") == [(0,)]


def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_written(tmp_path, record):
    migrations = refusing_migrations("response_text IS NULL OR response_text <> 'poison'")
    n, poisoned = 200, (3, 17, 18)
    rows = [record(i, response_text="poison" if i in poisoned else "ok") for i in range(n)]
    inserts: list[int] = []
    with CallLog(  # one batch of exactly n rows: handed over when full, never by timeout
        tmp_path / "c.duckdb",
        migrations=migrations,
        before_insert=inserts.append,
        batch_size=n,
        flush_interval=60,
    ) as log:
        with pytest.warns(CallLogWarning, match="refused 3 rows.*calls_dead_letter"):
            log.append_many(rows)
            log.flush()  # raises nothing: the refused rows are stored, elsewhere
        assert calls(log) == [(r.call_id,) for r in rows if r.response_text == "ok"]
        dead = log.execute(
            "SELECT call_id, error, row_json->>'response_text' FROM calls_dead_letter "
            "ORDER BY call_id"
        )
        health = log.health()
    assert [(c, t) for c, _, t in dead] == [(rows[i].call_id, "poison") for i in poisoned]
    assert all("ConstraintException" in error for _, error, _ in dead)
    assert log.rejected == [rows[3], rows[17], rows[18]]
    assert health.state == "ok" and health.rows_written == n - 3
    assert health.rows_dead_lettered == 3 and health.rows_pending == 0
    # Bisection: at most two inserts per level per refused row, not one per row.
    assert inserts[0] == n
    assert len(inserts) <= 1 + 2 * len(poisoned) * math.ceil(math.log2(n))


def test_the_dead_letter_row_can_be_recovered_as_a_call_record(tmp_path, record):
    migrations = refusing_migrations("response_text <> 'poison'")
    bad = record(1, response_text="poison", cost_usd=0.5, tenant_id="t", flags=("x",))
    with CallLog(tmp_path / "c.duckdb", migrations=migrations) as log:
        with pytest.warns(CallLogWarning):
            log.append(bad)
            log.flush()
        [(row_json,)] = log.execute("SELECT row_json FROM calls_dead_letter")
    values = json.loads(row_json)
    values["timestamp"] = datetime.fromisoformat(values["timestamp"])
    values["flags"] = tuple(values["flags"])
    assert type(bad)(**values) == bad


def test_when_even_the_dead_letter_refuses_the_row_goes_to_an_owner_only_file(tmp_path, record):
    migrations = refusing_migrations("response_text <> 'poison'")
    first_dead_letter = MIGRATIONS[5]
    body = first_dead_letter.apply.rstrip().removesuffix(")") + ",\n    CHECK (error IS NULL)\n)"
    migrations = (*migrations[:5], Migration(6, first_dead_letter.name, body), *migrations[6:])
    with CallLog(tmp_path / "c.duckdb", migrations=migrations) as log:
        with pytest.warns(CallLogWarning, match="dead-letter insert failed"):
            log.append_many([record(1), record(2, response_text="poison"), record(3)])
            log.flush()
        assert calls(log) == [(record(1).call_id,), (record(3).call_id,)]
        health = log.health()
    assert health.rows_spilled == 1 and health.rows_dead_lettered == 0
    [spilled] = tmp_path.glob("calls.unwritten-*.jsonl")
    assert stat.S_IMODE(os.stat(spilled).st_mode) == 0o600
    saved = json.loads(spilled.read_text(encoding="utf-8"))
    assert saved["call_id"] == record(2).call_id and "ConstraintException" in saved["error"]


def test_a_refused_row_with_nowhere_to_go_is_kept_and_retried_not_lost(
    tmp_path, record, monkeypatch
):
    import aigw_lab.store.writer as writer_module

    migrations = refusing_migrations("response_text <> 'poison'")
    first_dead_letter = MIGRATIONS[5]
    body = first_dead_letter.apply.rstrip().removesuffix(")") + ",\n    CHECK (error IS NULL)\n)"
    migrations = (*migrations[:5], Migration(6, first_dead_letter.name, body), *migrations[6:])
    real_spill = writer_module.spill_rows
    monkeypatch.setattr(writer_module, "spill_rows", lambda *a, **k: None)  # no writable dir
    with CallLog(tmp_path / "c.duckdb", migrations=migrations) as log:
        with pytest.warns(CallLogWarning, match="kept and retried"):
            log.append_many([record(1), record(2, response_text="poison")])
            with pytest.raises(StoreError, match="1 rows could not be written"):
                log.flush()
        health = log.health()
        assert health.state == "retrying" and health.rows_pending == 1
        assert health.rows_written == 1
        monkeypatch.setattr(writer_module, "spill_rows", real_spill)  # room again
        with pytest.warns(CallLogWarning, match="dead-letter insert failed"):
            log.flush()
        health = log.health()
    assert health.rows_spilled == 1 and health.rows_pending == 0 and health.state == "ok"
    [spilled] = tmp_path.glob("calls.unwritten-*.jsonl")
    assert json.loads(spilled.read_text(encoding="utf-8"))["call_id"] == record(2).call_id


def test_a_hand_appended_surrogate_row_is_sanitised_by_the_writer(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append_many([record(1), record(2, response_text=f"a{SURROGATE}"), record(3)])
        assert calls(log, "response_text, flags") == [
            (None, None),
            ("a\ufffd", ["invalid_text"]),
            (None, None),
        ]
        assert log.health().rows_dead_lettered == 0


def test_health_as_dict_is_json_ready(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        report = log.health().as_dict()
    assert json.loads(json.dumps(report)) == report
    assert report["ok"] is True and report["state"] == "ok"


def test_dead_letter_table_exists_with_its_columns(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        columns = [name for name, *_ in log.execute("DESCRIBE calls_dead_letter")]
        assert log.execute("SELECT flags FROM calls_ok") == []  # the view has the new column
    assert columns[:2] == ["call_id", "trace_id"] and {"error", "row_json"} <= set(columns)


def test_the_database_failing_half_way_through_a_bisection_loses_and_repeats_nothing(
    tmp_path, record
):
    migrations = refusing_migrations("response_text <> 'poison'")
    rows = [record(i, response_text="poison" if i == 5 else "ok") for i in range(8)]
    calls_seen: list[int] = []
    disk = {"full": False}

    def before_insert(n: int) -> None:
        calls_seen.append(n)
        if len(calls_seen) == 3:  # the second insert of the bisection: the disk fills up
            disk["full"] = True
        if disk["full"]:
            raise OSError(28, "No space left on device")

    with CallLog(
        tmp_path / "c.duckdb",
        migrations=migrations,
        before_insert=before_insert,
        batch_size=8,
        flush_interval=60,
    ) as log:
        with pytest.warns(CallLogWarning, match="No space left"):
            log.append_many(rows)
            with pytest.raises(StoreError, match="could not be written"):
                log.flush()
        assert log.health().state == "retrying"
        written_before = log.health().rows_written
        assert 0 < written_before < 7  # the first half was written before the disk filled
        disk["full"] = False
        with pytest.warns(CallLogWarning, match="refused 1 rows"):
            log.flush()
        ids = sorted(call_id for (call_id,) in calls(log))
        dead = log.execute("SELECT call_id FROM calls_dead_letter")
        health = log.health()
    assert ids == sorted(r.call_id for r in rows if r.response_text == "ok")  # once each
    assert dead == [(rows[5].call_id,)]
    assert health.rows_written == 7 and health.rows_dead_lettered == 1
    assert health.rows_pending == 0 and health.state == "ok"


def test_many_threads_with_some_refused_rows_store_each_row_exactly_once(tmp_path, record):
    import threading

    migrations = refusing_migrations("response_text <> 'poison'")
    per_thread, threads = 500, 4

    def rows_of(t: int) -> list:
        return [
            record(t * per_thread + i, response_text="poison" if i % 97 == 0 else "ok")
            for i in range(per_thread)
        ]

    with CallLog(tmp_path / "c.duckdb", migrations=migrations, batch_size=64) as log:
        with pytest.warns(CallLogWarning):
            workers = [
                threading.Thread(target=log.append_many, args=(rows_of(t),)) for t in range(threads)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            log.flush()
        [(stored, distinct)] = log.execute("SELECT count(*), count(DISTINCT call_id) FROM calls")
        [(dead, dead_distinct)] = log.execute(
            "SELECT count(*), count(DISTINCT call_id) FROM calls_dead_letter"
        )
        health = log.health()
    poisoned = threads * len(range(0, per_thread, 97))
    assert stored == distinct == threads * per_thread - poisoned
    assert dead == dead_distinct == poisoned
    assert health.rows_written == stored and health.rows_dead_lettered == dead


def test_json_text_with_escaped_surrogates_is_fixed_only_when_they_are_lone(record):
    lone = record(1, metadata_json='{"a": "x\\ud800y", "ok": "\\ud83d\\ude00"}')
    fixed = sanitize_record(lone)
    assert json.loads(fixed.metadata_json) == {"a": "x\ufffdy", "ok": "\U0001f600"}
    assert fixed.flags == ("invalid_text",)
    paired = record(2, metadata_json='{"ok": "\\ud83d\\ude00", "slash": "\\\\ud800"}')
    assert sanitize_record(paired) is paired  # a pair, and an escaped backslash: both fine


def test_unconvertible_rows_are_found_column_by_column_among_many(tmp_path, record):
    odd = {
        3: {"input_tokens": "many"},
        7: {"repetition": 2**40},  # beyond INTEGER
        9: {"input_tokens": "x", "cost_usd": "free"},
        5: {"response_text": f"a{SURROGATE}"},  # fixed by the writer, not refused
    }
    rows = [record(i, **odd.get(i, {})) for i in range(300)]
    with CallLog(tmp_path / "c.duckdb", batch_size=300, flush_interval=60) as log:
        with pytest.warns(CallLogWarning, match="refused 3 rows"):
            log.append_many(rows)
            log.flush()
        dead = log.execute("SELECT call_id, error FROM calls_dead_letter ORDER BY call_id")
        stored = calls(log)
        [(fixed,)] = log.execute(
            "SELECT response_text FROM calls WHERE call_id = ?", [rows[5].call_id]
        )
    assert [c for c, _ in dead] == [rows[i].call_id for i in (3, 7, 9)]
    assert "input_tokens" in dead[0][1] and "repetition" in dead[1][1]
    assert len(stored) == 297 and fixed == "a\ufffd"


_JUNK = st.one_of(
    st.none(),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([SURROGATE, f"x{SURROGATE}y", "\udfff"]),  # often, not by luck
)


_FIELDS = ["response_text", "input_tokens", "cost_usd", "repetition", "tenant_id", "stream"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.dictionaries(st.sampled_from(_FIELDS), _JUNK, max_size=3), max_size=30))
def test_any_mix_of_junk_rows_is_stored_exactly_once_in_calls_or_the_dead_letter(changes):
    import tempfile
    import warnings

    from tests.store.conftest import make_record

    rows = [make_record(i, **change) for i, change in enumerate(changes)]
    with tempfile.TemporaryDirectory() as folder:
        with CallLog(os.path.join(folder, "c.duckdb"), batch_size=7) as log:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CallLogWarning)
                log.append_many(rows)
                log.flush()
            stored = {c for (c,) in log.execute("SELECT call_id FROM calls")}
            dead = {c for (c,) in log.execute("SELECT call_id FROM calls_dead_letter")}
            [(n_stored,)] = log.execute("SELECT count(*) FROM calls")
            [(n_dead,)] = log.execute("SELECT count(*) FROM calls_dead_letter")
            health = log.health()
    assert n_stored == len(stored) and n_dead == len(dead) and not stored & dead
    assert stored | dead == {r.call_id for r in rows}
    assert (health.rows_written, health.rows_dead_lettered) == (n_stored, n_dead)


def test_a_refused_row_holding_a_lone_surrogate_still_goes_to_the_dead_letter(tmp_path, record):
    # Its row_json carried the surrogate as a JSON escape, which DuckDB's JSON refuses: the
    # dead-letter insert itself failed, so the row went to a spill file instead.
    with CallLog(tmp_path / "c.duckdb") as log:
        with pytest.warns(CallLogWarning, match="calls_dead_letter"):
            log.append_many([record(1), record(2, input_tokens=f"x{SURROGATE}")])
            log.flush()
        [(call_id, error, row)] = log.execute(
            "SELECT call_id, error, row_json->>'input_tokens' FROM calls_dead_letter"
        )
        health = log.health()
    assert call_id == record(2).call_id and "input_tokens" in error
    assert row == "x\ufffd"  # DuckDB's JSON cannot hold the lone surrogate itself
    assert health.rows_dead_lettered == 1 and health.rows_spilled == 0
    assert not list(tmp_path.glob("calls.unwritten-*.jsonl"))


def _fake_insert(rows, bad, calls_made):
    import duckdb

    def insert(start, stop):
        calls_made.append(stop - start)
        if any(row in bad for row in rows[start:stop]):
            raise duckdb.ConstraintException("CHECK constraint failed")

    return insert


def test_bisection_isolates_dozens_of_refused_rows_exactly_and_stays_bounded_when_all_are():
    import duckdb

    from aigw_lab.store.dead_letter import MAX_FAILED_INSERTS, isolate_refused

    first = duckdb.ConstraintException("CHECK constraint failed")
    rows = list(range(5000))
    sparse = set(range(7, 5000, 167))  # 30 refused rows
    made: list[int] = []
    written, refused, left, failure = isolate_refused(_fake_insert(rows, sparse, made), rows, first)
    assert failure is None and not left and written == 5000 - len(sparse)
    assert {row for row, _ in refused} == sparse
    assert not any("not isolated" in why for _, why in refused)

    made = []
    written, refused, left, failure = isolate_refused(
        _fake_insert(rows, set(rows), made), rows, first
    )
    assert written == 0 and sorted(row for row, _ in refused) == rows
    # About two failed inserts per row without the cap (~10,000 here); with it, the cap
    # plus the splitting of slices larger than 64 rows.
    assert len(made) <= MAX_FAILED_INSERTS + 4 * len(rows) // 64 < len(rows) // 4
    assert any("not isolated" in why for _, why in refused)
