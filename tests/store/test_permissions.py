"""Files the gateway stores are owner-only: the call log, its write-ahead log, the DuckDB
cache, spill files and the directories created for them (checked with os.stat)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.gateway.cache_stores import DuckDBStore
from aigw_lab.store import CallLog, CallLogWarning, files
from aigw_lab.store.files import create_private_database, make_private_dirs
from aigw_lab.types import ChatResponse, Latency, Usage

from .conftest import make_record


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    # The usual umask of a service: new files 0644, directories 0755.
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_call_log_and_its_new_directories_are_owner_only(tmp_path, open_umask):
    existing = tmp_path / "srv"
    existing.mkdir(mode=0o755)
    path = existing / "logs" / "2026" / "calls.duckdb"
    with CallLog(path) as log:
        log.append(make_record(1))
        log.flush()
    assert mode(path) == 0o600
    assert mode(existing / "logs") == mode(existing / "logs" / "2026") == 0o700
    assert mode(existing) == 0o755  # an existing directory keeps its mode


def test_the_write_ahead_log_is_made_owner_only(tmp_path, open_umask):
    path = tmp_path / "calls.duckdb"
    wal = tmp_path / "calls.duckdb.wal"
    with CallLog(path) as log:
        log.append(make_record(1))
        log.flush()  # DuckDB creates the WAL with the umask (0644) on this insert
        log.append(make_record(2))
        log.flush()
        assert wal.exists() and mode(wal) == 0o600


def test_an_existing_log_keeps_its_mode(tmp_path, open_umask):
    path = tmp_path / "shared.duckdb"
    CallLog(path).close()
    os.chmod(path, 0o640)  # the owner shares it with a group on purpose
    CallLog(path).close()
    assert mode(path) == 0o640


def test_a_new_cache_file_is_owner_only(tmp_path, open_umask):
    path = tmp_path / "cache" / "cache.duckdb"
    store = DuckDBStore(path)
    response = ChatResponse(
        text="hi",
        finish_reason="stop",
        usage=Usage(input_tokens=1, output_tokens=1),
        provider="p",
        model="m",
        latency=Latency(total_ms=1.0),
    )
    store.set("k1", response, None)
    store.set("k2", response, None)
    store.close()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_spilled_rows_are_owner_only(tmp_path, open_umask):
    def fail(rows: int) -> None:
        raise OSError("disk full")

    log = CallLog(tmp_path / "calls.duckdb", before_insert=fail)
    log.append(make_record(1, request_json='{"q": "secret"}'))
    with pytest.warns(CallLogWarning), pytest.raises(StoreError, match="saved to"):
        log.close()
    [spilled] = tmp_path.glob("calls.unwritten-*.jsonl")
    assert mode(spilled) == 0o600


def test_a_database_is_never_readable_by_others_even_while_created(tmp_path, open_umask):
    seen: list[int] = []

    def create(staging: Path) -> None:
        staging.write_text("x")  # what DuckDB does: a file with the umask's mode...
        seen.append(mode(staging.parent))  # ...inside a directory only the owner can enter

    target = tmp_path / "db.duckdb"
    assert create_private_database(target, create)
    assert seen == [0o700] and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["db.duckdb"]  # no staging left behind
    # A file that appeared meanwhile is never replaced.
    assert not create_private_database(target, lambda p: p.write_text("other"))
    assert target.read_text() == "x"


def test_make_private_dirs_tolerates_existing_directories(tmp_path, open_umask):
    make_private_dirs(tmp_path / "a" / "b")
    make_private_dirs(tmp_path / "a" / "b")
    assert mode(tmp_path / "a" / "b") == 0o700


def test_a_new_log_in_a_private_folder_is_created_in_place_and_stays_owner_only(
    tmp_path, open_umask, monkeypatch
):
    # In a 0700 folder no one else can reach the file, so the staging copy (a second DuckDB
    # open) is skipped; in a folder others can enter, the staging path is still taken.
    staged = []
    real = files.create_private_database
    monkeypatch.setattr(
        files,
        "create_private_database",
        lambda path, create: staged.append(path) or real(path, create),
    )
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    CallLog(private / "calls.duckdb").close()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    CallLog(shared / "calls.duckdb").close()
    assert staged == [shared / "calls.duckdb"]
    for folder in (private, shared):
        assert stat.S_IMODE((folder / "calls.duckdb").stat().st_mode) == 0o600
    assert files.is_private_dir(private) and not files.is_private_dir(shared)
    assert not files.is_private_dir(private / "calls.duckdb")  # a file is not a folder
