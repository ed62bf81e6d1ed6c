"""`LogEngine`: many call logs on one DuckDB instance. What each log keeps (its tables, its
migrations, its file lock, its key) and what the engine owns (settings, cross-log SQL).

The rest of tests/store runs every call-log test on both backends (``log_backend``); these
are the engine's own. Each test owns its engine here (not the suite's ``log_engine``), since
they look at the engine's catalogs and settings."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

import duckdb
import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store.encryption import Encryption
from aigw_lab.store.engine import LogEngine
from aigw_lab.store.schema import MIGRATIONS, SCHEMA_VERSION, schema_version

from .conftest import make_record

KEY = "correct horse battery staple 0123456789"


@pytest.fixture
def engine(tmp_path):
    with LogEngine(config={"temp_directory": str(tmp_path / "spill")}) as engine:
        yield engine


def _open(path, **options):
    # Imported here, not at the top: tests/store's conftest runs a module that imports
    # CallLog on both backends, and these tests choose each log's engine themselves.
    from aigw_lab.store import CallLog

    return CallLog(path, **options)


def test_one_sql_statement_reads_across_a_dozen_logs(engine, tmp_path):
    logs = [_open(tmp_path / f"run_{i:02d}.duckdb", engine=engine) for i in range(12)]
    for i, log in enumerate(logs):
        log.append_many(make_record(n, request_model=f"m{i}") for n in range(i + 1))
        log.flush()
    union = " UNION ALL ".join(
        f"SELECT '{log.catalog}' AS log, count(*) AS calls FROM {log.catalog}.calls" for log in logs
    )
    frame = engine.query(f"SELECT * FROM ({union}) ORDER BY log")
    assert list(frame["log"]) == [f"run_{i:02d}" for i in range(12)]
    assert list(frame["calls"]) == list(range(1, 13))
    # Each log's own SQL reads its own tables only.
    assert [int(log.query("SELECT count(*) AS n FROM calls")["n"][0]) for log in logs] == list(
        range(1, 13)
    )
    for log in logs:
        log.close()
    assert engine.catalogs == {}


def test_logs_with_the_same_file_name_get_distinct_catalogs_or_the_one_asked_for(engine, tmp_path):
    a = _open(tmp_path / "a" / "calls.duckdb", engine=engine)
    b = _open(tmp_path / "b" / "calls.duckdb", engine=engine)
    c = _open(tmp_path / "c" / "calls.duckdb", engine=engine, catalog="baseline")
    memory = _open(":memory:", engine=engine)
    keyword = _open(tmp_path / "select.duckdb", engine=engine)  # an SQL keyword as a name
    assert (a.catalog, b.catalog, c.catalog) == ("calls", "calls_2", "baseline")
    assert memory.catalog == "memory_log" and keyword.catalog == "select"
    b.append(make_record(1))
    b.flush()  # the engine reads what the logs have written
    assert engine.query("SELECT count(*) AS n FROM calls_2.calls")["n"][0] == 1
    assert engine.query('SELECT count(*) AS n FROM "select".calls')["n"][0] == 0
    for log in (a, b, c, memory, keyword):
        log.close()


def test_every_new_log_on_an_engine_is_migrated_in_its_own_catalog(engine, tmp_path):
    first = _open(tmp_path / "first.duckdb", engine=engine)
    second = _open(tmp_path / "second.duckdb", engine=engine)
    assert second.execute("SELECT count(*) FROM schema_migrations") == [(len(MIGRATIONS),)]
    # schema_version used to count any catalog's schema_migrations: an empty database next
    # to a migrated one was taken for migrated, and reading its versions failed.
    with engine.attach(tmp_path / "empty.duckdb", what="an empty database") as empty:
        assert schema_version(empty) == 0
    cursor = second.cursor()
    try:
        assert schema_version(cursor) == SCHEMA_VERSION
    finally:
        cursor.close()
    for log in (first, second):
        log.close()


@pytest.mark.parametrize(
    "name", ["run a", "x; DROP TABLE calls", 'q"uote', "1st", "main", "temp", "", "x" * 64]
)
def test_a_catalog_name_that_is_not_a_plain_name_is_refused_before_any_sql(engine, tmp_path, name):
    with pytest.raises(StoreError, match="cannot name a call log's catalog"):
        _open(tmp_path / "calls.duckdb", engine=engine, catalog=name)
    assert engine.catalogs == {}
    assert not (tmp_path / "calls.duckdb").exists()  # refused before the file was made


def test_per_instance_settings_are_the_engines(tmp_path):
    with pytest.raises(StoreError, match="settings are the engine's"):
        with LogEngine() as engine:
            _open(tmp_path / "calls.duckdb", engine=engine, config={"threads": 1})
    with pytest.raises(StoreError, match="pass engine= as well"):
        _open(tmp_path / "calls.duckdb", catalog="calls")
    with LogEngine(config={"memory_limit": "300MB", "threads": 1}) as engine:
        with _open(tmp_path / "calls.duckdb", engine=engine) as log:
            [(limit, threads, threshold)] = log.execute(
                "SELECT current_setting('memory_limit'), current_setting('threads'), "
                "current_setting('checkpoint_threshold')"
            )
    assert (limit, threads) == ("286.1 MiB", 1)  # DuckDB shows 300MB in MiB
    assert threshold == "64.0 MiB"  # a log's own instance's default too
    with LogEngine() as engine, _open(":memory:", engine=engine) as log:
        assert log.execute("SELECT current_setting('memory_limit')") == [("244.1 MiB",)]


def test_a_file_is_open_once_per_process_whichever_way_it_was_opened(engine, tmp_path):
    path = tmp_path / "calls.duckdb"
    log = _open(path, engine=engine)
    # Two logs of one file on one engine share its catalog (as two logs on instances of
    # their own share DuckDB's instance of the file); the last to close detaches it.
    second = _open(tmp_path / "." / "calls.duckdb", engine=engine)
    assert second.catalog == log.catalog == "calls"
    log.append(make_record(1))
    assert second.execute("SELECT count(*) FROM calls") == [(0,)]  # not flushed yet
    log.flush()
    assert second.execute("SELECT count(*) FROM calls") == [(1,)]
    second.close()
    assert engine.catalogs == {"calls": str(path)}
    with pytest.raises(StoreError, match="open on this engine already, as catalog 'calls'"):
        _open(path, engine=engine, catalog="other")
    with pytest.raises(StoreError, match="open elsewhere in this process"):
        with LogEngine() as other:
            _open(path, engine=other)
    with pytest.raises(StoreError, match="open elsewhere in this process"):
        _open(path)  # an instance of its own
    log.close()
    assert engine.catalogs == {}


@pytest.mark.slow
def test_another_process_cannot_write_a_file_attached_to_an_engine(engine, tmp_path):
    path = tmp_path / "calls.duckdb"
    code = (
        "import sys\nfrom aigw_lab.errors import StoreError\nfrom aigw_lab.store import CallLog\n"
        "try:\n    CallLog(sys.argv[1]).close()\nexcept StoreError as e:\n    print(e)\n"
    )
    log = _open(path, engine=engine)
    held = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert "in use by another process" in held.stdout, held.stderr
    log.close()  # detached: the lock is released
    free = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert free.returncode == 0 and free.stdout == "", free.stderr


def test_closing_a_log_detaches_and_checkpoints_its_file(engine, tmp_path):
    path = tmp_path / "calls.duckdb"
    with _open(path, engine=engine) as log:
        log.append_many(make_record(i) for i in range(5))
    assert engine.catalogs == {}
    assert not (tmp_path / "calls.duckdb.wal").exists()
    conn = duckdb.connect(str(path), read_only=True)  # the file is free for anyone again
    try:
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (5,)
    finally:
        conn.close()
    with _open(path, engine=engine) as again:  # and reopens on the engine
        assert again.execute("SELECT count(*) FROM calls") == [(5,)]


def test_an_engine_closed_under_open_logs_waits_for_the_last_one(tmp_path):
    engine = LogEngine()
    log = _open(tmp_path / "calls.duckdb", engine=engine)
    engine.close()
    assert not engine.closed
    with pytest.raises(StoreError, match="its engine is closed"):
        _open(tmp_path / "other.duckdb", engine=engine)
    log.append(make_record(1))  # the open log keeps working: no row is lost to the close
    log.close()
    assert engine.closed
    conn = duckdb.connect(str(tmp_path / "calls.duckdb"), read_only=True)
    try:
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (1,)
    finally:
        conn.close()


def test_an_encrypted_log_on_an_engine_keeps_its_own_key(engine, tmp_path):
    secret = tmp_path / "secret.duckdb"
    key = Encryption(KEY, "AIGW_LOG_KEY", "builtin")
    plain = _open(tmp_path / "plain.duckdb", engine=engine)
    with _open(secret, engine=engine, encryption=key) as log:
        log.append(make_record(1, request_json='{"messages": "NIGHTJAR"}'))
        log.flush()
        assert engine.query("SELECT count(*) AS n FROM secret.calls")["n"][0] == 1
    assert b"NIGHTJAR" not in secret.read_bytes()
    with pytest.raises(StoreError, match="different key than the one in AIGW_LOG_KEY"):
        _open(secret, engine=engine, encryption=Encryption("wrong", "AIGW_LOG_KEY", "builtin"))
    assert KEY not in repr(engine.catalogs)
    with _open(secret, engine=engine, encryption=key) as log:
        # An open encrypted file is not shared with a second log (that would skip the key
        # check): not with the right key, nor the wrong one, nor none.
        for other in (key, Encryption("wrong", "AIGW_LOG_KEY", "builtin"), None):
            with pytest.raises(StoreError, match="encrypted: it is not shared"):
                _open(secret, engine=engine, encryption=other)
        assert log.execute("SELECT count(*) FROM calls") == [(1,)]
    plain.close()
    # Written on the engine, read on an instance of its own with the same key.
    with _open(secret, encryption=key) as log:
        assert log.execute("SELECT count(*) FROM calls") == [(1,)]


def test_a_query_error_names_the_catalogs(engine):
    with pytest.raises(StoreError, match="name each log's tables with its catalog"):
        engine.query("SELECT * FROM calls")


def test_a_log_collected_while_its_engine_is_busy_on_the_same_thread_detaches(tmp_path):
    # A log left open is closed by its finalizer when collected, on whatever thread the
    # collection runs: here one that holds the engine's lock (as an open on the engine does
    # while DuckDB attaches). A plain lock deadlocked there.
    engine = LogEngine()  # not the fixture: a deadlocked engine could not be closed
    log = _open(tmp_path / "left-open.duckdb", engine=engine)
    log.append(make_record(1))
    finished = threading.Event()

    def collect_under_the_lock() -> None:
        nonlocal log
        with engine._lock:
            del log
            gc.collect()
        finished.set()

    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(60)  # a guard against a hang, not a time limit: it ends in milliseconds
    assert finished.is_set(), "collecting a log under the engine's lock deadlocked"
    assert engine.catalogs == {}
    with _open(tmp_path / "left-open.duckdb", engine=engine) as again:
        assert again.execute("SELECT count(*) FROM calls") == [(1,)]
    engine.close()


def test_a_log_collected_inside_an_engine_section_detaches_after_it(tmp_path):
    # The reentrant lock lets a finalizer detach on the thread that holds it; done at once,
    # it changed the catalogs while the interrupted section iterated over them ("dictionary
    # changed size during iteration", seen in an open on the engine). It waits until the
    # section ends.
    engine = LogEngine()
    log = _open(tmp_path / "left-open.duckdb", engine=engine)
    log.append(make_record(1))
    with engine._locked():
        for _ in engine._attached:
            del log
            gc.collect()
        assert len(engine._attached) == 1  # still attached inside the section
    assert engine.catalogs == {}
    with _open(tmp_path / "left-open.duckdb", engine=engine) as again:
        assert again.execute("SELECT count(*) FROM calls") == [(1,)]
    engine.close()
