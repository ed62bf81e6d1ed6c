"""`TeamLogMirror`: a reader's local DuckDB copy of the team log, synced past a watermark,
that the existing readers (`Gateway.query`, the store's summaries, the analysis functions)
read unchanged; equal to a single-file log of the same rows; read while writers write."""

from __future__ import annotations

import threading

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.store import CallLog, summary_by_model
from aigw_lab.store.schema import COLUMN_TYPES
from aigw_lab.store.team_log import TeamLogSink
from aigw_lab.store.team_mirror import TeamLogMirror

from .conftest import make_rows, psycopg

_ALL = ", ".join(f'"{c}"' for c in COLUMN_TYPES)


def _write(url, spool, rows):
    sink = TeamLogSink(url, spool_dir=spool)
    for row in rows:
        sink.append(row)
    sink.flush()
    sink.close()


def test_the_mirror_equals_a_single_file_log_of_the_same_rows(team_url, tmp_path):
    rows = make_rows(300)
    rows[5] = rows[5]._replace(tool_calls_json='[{"id": "x", "b": 1, "a": 2}]')  # key order
    # What the batches' CSV must carry intact: line breaks, quotes, commas, an empty string
    # (not NULL), non-ASCII, NaN, list items with separators.
    rows[6] = rows[6]._replace(response_text='line 1\nline 2, "quoted"\r\n', error_message="")
    rows[7] = rows[7]._replace(response_text="naïve 🚀 ü", latency_ms=float("nan"))
    rows[9] = rows[9]._replace(flags=("a,b", 'q"x', "{}"), tags_json=None)
    _write(team_url, tmp_path / "spool", rows)
    with (
        CallLog(tmp_path / "single.duckdb") as single,
        TeamLogMirror(team_url, tmp_path / "mirror.duckdb") as mirror,
    ):
        single.append_many(rows)
        assert mirror.sync().rows["calls"] == 300
        sql = f"SELECT {_ALL} FROM calls ORDER BY call_id"
        ours, theirs = mirror.log.query(sql), single.query(sql)
        assert ours.equals(theirs)
        # Readers built for one file read the mirror unchanged.
        columns = ["provider_name", "request_model", "calls", "errors", "input_tokens",
                   "output_tokens", "cost_usd"]  # fmt: skip
        a, b = summary_by_model(mirror.log), summary_by_model(single)
        assert a[columns].equals(b[columns])
        gateway = Gateway.simulated_fleet(log=mirror.log)
        sql = "SELECT tenant_id, count(*) n, sum(cost_usd) c FROM calls GROUP BY 1 ORDER BY 1"
        assert gateway.query(sql).equals(single.query(sql))
        gateway.close()


def test_a_sync_copies_only_what_is_new(team_url, tmp_path):
    _write(team_url, tmp_path / "spool", make_rows(100))
    with TeamLogMirror(team_url, tmp_path / "m.duckdb", batch_rows=30) as mirror:
        first = mirror.sync()
        assert first.rows["calls"] == 100 and first.watermarks["calls"] == 100
        _write(team_url, tmp_path / "spool", make_rows(50, seed=1000))
        second = mirror.sync()
        assert second.rows["calls"] == 50 and second.total == 50
        assert second.watermarks["calls"] == 150
        assert mirror.sync().total == 0
        n, distinct = mirror.log.execute("SELECT count(*), count(DISTINCT call_id) FROM calls")[0]
        assert n == distinct == 150


def test_a_reopened_mirror_goes_on_from_its_watermark(team_url, tmp_path):
    _write(team_url, tmp_path / "spool", make_rows(40))
    with TeamLogMirror(team_url, tmp_path / "m.duckdb") as mirror:
        mirror.sync()
    _write(team_url, tmp_path / "spool", make_rows(10, seed=500))
    with TeamLogMirror(team_url, tmp_path / "m.duckdb") as mirror:
        assert mirror.sync().rows["calls"] == 10
        assert mirror.log.execute("SELECT count(*) FROM calls")[0][0] == 50


def test_a_reader_syncs_while_two_writers_write(team_url, tmp_path):
    batches = [make_rows(40, seed=1000 * k) for k in range(10)]
    done = threading.Event()

    def writer(part: list) -> None:
        sink = TeamLogSink(team_url, spool_dir=tmp_path / "spool", batch_size=16)
        for rows in part:
            for row in rows:
                sink.append(row)
            sink.flush()
        sink.close()

    threads = [threading.Thread(target=writer, args=(batches[k::2],)) for k in range(2)]
    seen = []
    with TeamLogMirror(team_url, tmp_path / "m.duckdb", batch_rows=25) as mirror:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            mirror.sync()
            seen.append(mirror.log.execute("SELECT count(*) FROM calls")[0][0])
        for t in threads:
            t.join()
        mirror.sync()
        n, distinct = mirror.log.execute("SELECT count(*), count(DISTINCT call_id) FROM calls")[0]
    done.set()
    assert n == distinct == 400
    assert seen == sorted(seen)  # a count never goes back
    with psycopg.connect(team_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 400


def test_a_column_a_newer_writer_added_is_left_out(team_url, tmp_path):
    _write(team_url, tmp_path / "spool", make_rows(5))
    with psycopg.connect(team_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE calls ADD COLUMN from_the_future text DEFAULT 'x'")
    with TeamLogMirror(team_url, tmp_path / "m.duckdb") as mirror:
        assert mirror.sync().rows["calls"] == 5
        assert "from_the_future" not in mirror.log.query("SELECT * FROM calls").columns


def test_scores_written_to_the_team_log_are_mirrored(team_url, tmp_path):
    _write(team_url, tmp_path / "spool", make_rows(3))
    with psycopg.connect(team_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO scores (score_id, call_id, scorer, kind, value) "
            "VALUES ('s1', 'c-0-0', 'exact', 'scorer', 1.0)"
        )
    with TeamLogMirror(team_url, tmp_path / "m.duckdb") as mirror:
        assert mirror.sync().rows == {"calls": 3, "scores": 1, "experiments": 0,
                                      "experiment_runs": 0, "calls_dead_letter": 0}  # fmt: skip
        assert mirror.log.execute("SELECT call_id, value FROM scores") == [("c-0-0", 1.0)]


def test_an_unreachable_team_log_is_one_clear_error(tmp_path):
    mirror = TeamLogMirror("postgresql://x@127.0.0.1:9/none", tmp_path / "m.duckdb")
    with pytest.raises(StoreError, match="cannot reach the team log") as info:
        mirror.sync()
    assert "still holds" in (info.value.hint or "")
    mirror.close()


def test_a_mirror_must_be_a_file():
    with pytest.raises(StoreError, match="a file"):
        TeamLogMirror("postgresql://x@127.0.0.1/db", ":memory:")


def test_a_row_committed_late_is_never_below_a_watermark_already_passed(team_url, tmp_path):
    """Writer A takes its _seq first but commits last; writer B (a sink) must wait for it,
    or a reader syncing in between would move its watermark past A's row for good."""
    from aigw_lab.store.team_log_schema import WRITE_LOCK

    a_row, b_row, warm = make_rows(3, seed=4242)
    sink = TeamLogSink(team_url, spool_dir=tmp_path / "spool", flush_timeout=1.0)
    sink.append(warm)
    sink.flush(timeout=60)  # B is connected and its schema made: only the lock can stop it
    slow = psycopg.connect(team_url)
    slow.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])  # as a writer does
    slow.execute(
        "INSERT INTO calls (call_id, trace_id, provider_name, request_model) "
        "VALUES (%s, 't', 'p', 'm')",
        [a_row.call_id],
    )  # A has its _seq, not committed yet
    sink.append(b_row)
    with TeamLogMirror(team_url, tmp_path / "m.duckdb") as mirror:
        with pytest.raises(StoreError, match="has not taken 1 rows"):
            sink.flush()  # B waits on A's lock
        assert mirror.sync().rows["calls"] == 1  # the warm-up row only
        slow.commit()
        sink.flush(timeout=30)
        assert mirror.sync().rows["calls"] == 2
        ids = [r[0] for r in mirror.log.execute("SELECT call_id FROM calls ORDER BY call_id")]
    assert sorted(ids) == sorted([a_row.call_id, b_row.call_id, warm.call_id])
    sink.close()
    slow.close()
