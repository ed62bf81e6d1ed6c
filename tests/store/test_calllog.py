"""CallLog basics on real DuckDB files: round trips, JSON, ordering, flushing, closing."""

from __future__ import annotations

import gc
import json
import weakref
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store import CALL_COLUMNS, CallLog, CallRecord
from aigw_lab.store.schema import COLUMN_TYPES


def rows_of(log: CallLog, sql: str = "SELECT * FROM calls ORDER BY rowid") -> list[tuple]:
    return log.execute(sql)


def test_every_column_round_trips_with_its_type(tmp_path, record):
    full = record(
        1,
        timestamp=datetime(
            2025, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=5, minutes=30))
        ),
        operation_name="chat",
        response_model="gpt-4o-mini-2024-07-18",
        response_id="chatcmpl-ü-1",
        api_format="openai",
        request_json=json.dumps({"messages": [{"role": "user", "content": "héllo 🌍 日本語"}]}),
        response_text="réponse 🚀 — 日本語",
        finish_reason="stop",
        tool_calls_json='[{"name": "get_weather", "arguments": {"city": "Zürich"}}]',
        status="ok",
        error_type="rate_limited",
        error_message="slow down ☕",
        http_status_code=429,
        input_tokens=2**40,
        output_tokens=17,
        cache_read_input_tokens=5,
        cache_creation_input_tokens=6,
        reasoning_tokens=7,
        cost_usd=0.000123,
        latency_ms=812.5,
        ttfb_ms=100.25,
        ttft_ms=120.75,
        upstream_ms=800.0,
        overhead_ms=0.031,
        stream=True,
        cache_status="hit",
        cache_similarity=0.97,
        attempt=3,
        fallback_from="anthropic/claude",
        user_id="user-∂",
        tenant_id="tenant-1",
        experiment_id="exp-1",
        tags_json='{"team": "ресёрч"}',
        metadata_json='{"nested": {"list": [1, 2.5, null, true]}}',
        simulated=True,
    )
    sparse = record(2)  # every optional field left at its default (mostly NULL)
    path = tmp_path / "calls.duckdb"
    with CallLog(path) as log:
        log.append(full)
        log.append(sparse)

    with CallLog(path) as log:
        described = log.execute("SELECT column_name, column_type FROM (DESCRIBE calls)")
        got_full, got_sparse = rows_of(log)

    spelled = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    assert [(name, spelled.get(kind, kind)) for name, kind in described] == list(
        COLUMN_TYPES.items()
    )
    assert [name for name, _ in described] == list(CALL_COLUMNS)
    for name, value in zip(CALL_COLUMNS, got_full, strict=True):
        assert value == getattr(full, name), name  # aware datetimes compare as instants
    for name, value in zip(CALL_COLUMNS, got_sparse, strict=True):
        assert value == getattr(sparse, name), name
    assert got_sparse[CALL_COLUMNS.index("input_tokens")] is None
    assert got_full[CALL_COLUMNS.index("timestamp")].utcoffset() == timedelta(0)


def test_naive_timestamps_are_taken_as_utc(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(record(1, timestamp=datetime(2025, 1, 2, 3, 4, 5)))
        [(stamp,)] = log.execute('SELECT "timestamp" FROM calls')
    assert stamp == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_json_columns_are_queryable_and_bad_json_is_kept_as_a_string(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(
            record(
                1,
                request_json='{"messages": [{"role": "user", "content": "2+2?"}], "n": 3}',
                tags_json="{not json",
            )
        )
        df = log.query(
            "SELECT json_extract_string(request_json, '$.messages[0].content') AS content, "
            "json_extract(request_json, '$.n')::INTEGER AS n, "
            "json_extract_string(tags_json, '$') AS raw_tags, typeof(tags_json) AS kind "
            "FROM calls"
        )
    assert df.to_dict("records") == [
        {"content": "2+2?", "n": 3, "raw_tags": "{not json", "kind": "JSON"}
    ]


def test_rows_keep_append_order_across_batches(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb", batch_size=7) as log:
        expected = [record(i).call_id for i in range(100)]
        log.append_many(record(i) for i in range(50))
        for i in range(50, 100):
            log.append(record(i))
        assert [r[0] for r in rows_of(log, "SELECT call_id FROM calls ORDER BY rowid")] == expected
        assert log.rows_written == 100
        assert log.pending_rows == 0


def test_flush_writes_a_partial_batch_and_query_sees_it(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb", batch_size=1000, flush_interval=60) as log:
        log.append(record(1))
        log.flush()
        assert log.rows_written == 1
        log.append(record(2))
        assert log.query("SELECT count(*) AS n FROM calls")["n"].tolist() == [2]  # flushes


def test_memory_log_works_without_a_file(record):
    with CallLog(":memory:") as log:
        log.append(record(1))
        assert log.query("SELECT call_id FROM calls")["call_id"].tolist() == ["call-0000001"]
        assert log.path == ":memory:"


def test_context_manager_flushes_when_the_body_raises(tmp_path, record):
    path = tmp_path / "c.duckdb"
    with pytest.raises(RuntimeError, match="boom"):
        with CallLog(path, batch_size=1000, flush_interval=60) as log:
            log.append(record(1))
            raise RuntimeError("boom")
    assert log.closed
    with CallLog(path) as reopened:
        assert reopened.execute("SELECT call_id FROM calls") == [("call-0000001",)]


def test_close_is_idempotent_and_append_after_close_fails(tmp_path, record):
    log = CallLog(tmp_path / "c.duckdb")
    log.append(record(1))
    log.close()
    log.close()
    log.flush()  # nothing left to flush: a no-op, not an error
    with pytest.raises(StoreError, match="closed"):
        log.append(record(2))
    with pytest.raises(StoreError, match="closed"):
        log.query("SELECT 1")


def test_an_abandoned_log_is_flushed_when_garbage_collected(tmp_path, record):
    path = tmp_path / "c.duckdb"
    log = CallLog(path, batch_size=1000, flush_interval=60)
    log.append(record(1))
    alive = weakref.ref(log)
    del log
    gc.collect()
    assert alive() is None  # nothing but a weak reference held it
    with CallLog(path) as reopened:
        assert reopened.rows_written == 0
        assert reopened.execute("SELECT count(*) FROM calls") == [(1,)]


def test_append_rejects_things_that_are_not_call_records(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        with pytest.raises(TypeError, match="CallRecord"):
            log.append({"call_id": "x"})  # type: ignore[arg-type]


def test_execute_runs_statements_and_query_errors_are_store_errors(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(record(1, status="error"))
        log.append(record(2))
        assert log.execute("DELETE FROM calls WHERE status = 'error'") == [(1,)]
        assert log.execute("CREATE TABLE notes (note VARCHAR)") == []
        assert log.query("SELECT count(*) AS n FROM calls_ok")["n"].tolist() == [1]
        with pytest.raises(StoreError, match="no_such_table"):
            log.query("SELECT * FROM no_such_table")
        assert log.query("SELECT ? AS x", [5])["x"].tolist() == [5]


def test_flush_timeout_raises_while_the_writer_is_held(tmp_path, record, gate):
    log = CallLog(tmp_path / "c.duckdb", before_insert=gate)
    gate.hold()
    log.append(record(1))
    with pytest.raises(StoreError, match="timed out"):
        log.flush(timeout=0.01)
    gate.release()
    log.flush()
    assert log.rows_written == 1
    log.close()


def test_invalid_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        CallLog(tmp_path / "a.duckdb", batch_size=0)
    with pytest.raises(ValueError, match="flush_interval"):
        CallLog(tmp_path / "b.duckdb", flush_interval=0)


def test_repr_names_the_file(tmp_path, record):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(record(1))
        log.flush()
        assert repr(log) == f"<CallLog {str(tmp_path / 'c.duckdb')!r} (1 rows written)>"
    assert "closed" in repr(log)


def test_importing_the_record_type_does_not_load_duckdb_pyarrow_or_pandas():
    import subprocess
    import sys

    code = (
        "import sys; from aigw_lab.store.records import CallRecord; "
        "import aigw_lab.store as s; "
        "print(sorted(m for m in ('duckdb', 'pyarrow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_call_record_is_the_public_type(record):
    assert isinstance(record(1), CallRecord)


def _memory_limit_of(setting: str) -> str:
    import duckdb

    probe = duckdb.connect()
    probe.execute(f"SET memory_limit = '{setting}'")
    return probe.execute("SELECT current_setting('memory_limit')").fetchone()[0]


@pytest.mark.own_instance(
    "an instance's settings; on an engine they are the engine's (test_engine)"
)
def test_file_logs_cap_duckdb_memory_unless_configured(tmp_path):
    query = "SELECT current_setting('memory_limit')"
    with CallLog(tmp_path / "a.duckdb") as log:
        assert log.execute(query) == [(_memory_limit_of("256MB"),)]
    with CallLog(tmp_path / "b.duckdb", config={"memory_limit": "1GB"}) as log:
        assert log.execute(query) == [(_memory_limit_of("1GB"),)]
