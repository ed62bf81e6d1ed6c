"""A spool segment is never taken for a dead one while its creator is still setting it up.

A segment used to be created under its final name (``O_CREAT | O_EXCL``) and locked just
after: a process replaying the same folder's leftovers in between could lock the empty file
itself, take it for a dead process's, and delete it, so the writer then failed (EAGAIN) or
wrote its frames into a file no longer in the folder. Now a segment is created under a
temporary name the leftover scan never reads, locked, then renamed into place.

The creator is paused between creating its file and locking it by wrapping the spool
module's ``fcntl`` (``flock`` locks belong to the open file, so a second open of the same
file in this process conflicts exactly as another process's would); the scan runs then.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aigw_lab.store import spool as spool_module
from aigw_lab.store.spool import Spool, read_leftovers
from aigw_lab.store.spool_replay import TEMP_GRACE_S

fcntl = pytest.importorskip("fcntl")


class _PausedFlock:
    """Stands in for the spool module's ``fcntl``: the first ``flock`` waits until the test
    lets it go, after saying it has been reached."""

    LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self._first = True

    def flock(self, fd: int, operation: int) -> None:
        if self._first:
            self._first = False
            self.reached.set()
            assert self.go.wait(10), "the test never let the creator go on"
        fcntl.flock(fd, operation)


def _start(call_id: str) -> tuple:
    return (call_id, "trace", 1767225600.0, "p", "m", "openai", False, "miss", 1, None,
            None, None, None, None, None, False, None, None, None, None, None)  # fmt: skip


@pytest.fixture
def paused_spool(monkeypatch):
    """Starts a thread creating a `Spool` in a folder, paused before it locks its segment;
    returns (pause, thread, [the spool or its error]). Let go at teardown in any case."""
    pauses: list[_PausedFlock] = []

    def start(directory: Path) -> tuple[_PausedFlock, threading.Thread, list]:
        pause = _PausedFlock()
        pauses.append(pause)
        monkeypatch.setattr(spool_module, "fcntl", pause)
        made: list = []

        def create() -> None:
            try:
                made.append(Spool(directory, committed=lambda: 0))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                made.append(exc)

        thread = threading.Thread(target=create, daemon=True)
        thread.start()
        assert pause.reached.wait(10)
        return pause, thread, made

    yield start
    for pause in pauses:
        pause.go.set()


def test_a_segment_being_created_is_not_replayed_by_a_scan_of_the_same_folder(
    tmp_path, paused_spool
):
    directory = tmp_path / "shared.spool"
    directory.mkdir()
    pause, thread, made = paused_spool(directory)
    # Another process opens a log on the same folder now and reads what dead ones left.
    found = read_leftovers(directory)
    assert found.segments == [], "a segment still being created was taken for a dead one"
    found.release(delete=True)
    pause.go.set()
    thread.join(10)
    spool = made[0]
    assert isinstance(spool, Spool), spool  # the writer was not refused its own segment
    spool.start(_start("in-flight"))
    # The writer stops with a call in flight, its segment kept and unlocked as a dead
    # process leaves it: the next scan turns the start into an interrupted row.
    spool.close(delete=False)
    again = read_leftovers(directory)
    try:
        assert [(r.call_id, r.status) for r in again.records] == [("in-flight", "interrupted")]
    finally:
        again.release(delete=True)


def test_a_temporary_file_removed_under_its_creator_is_made_again(tmp_path, paused_spool):
    """The creator's temporary file vanishes before it locks it (a scan took it for a dead
    creator's garbage): the creator starts again under a new name and the spool works."""
    directory = tmp_path / "shared.spool"
    directory.mkdir()
    pause, thread, made = paused_spool(directory)
    (temp,) = directory.iterdir()
    temp.unlink()
    pause.go.set()
    thread.join(10)
    spool = made[0]
    assert isinstance(spool, Spool), spool
    spool.start(_start("after-retry"))
    segments = sorted(p.name for p in directory.iterdir())
    assert len(segments) == 1 and segments[0].endswith(".spool"), segments
    spool.close(delete=False)
    found = read_leftovers(directory)
    try:
        assert [r.call_id for r in found.records] == ["after-retry"]
    finally:
        found.release(delete=True)


def test_temporary_files_are_removed_only_when_unlocked_and_old(tmp_path):
    directory = tmp_path / "shared.spool"
    directory.mkdir()
    old = time.time() - 3600
    dead = directory / f"1-00000000-000001{spool_module.TEMP_SUFFIX}"
    dead.write_bytes(b"")
    os.utime(dead, (old, old))
    young = directory / f"2-00000000-000001{spool_module.TEMP_SUFFIX}"
    young.write_bytes(b"")
    held = directory / f"3-00000000-000001{spool_module.TEMP_SUFFIX}"
    held.write_bytes(b"")
    os.utime(held, (old, old))
    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live creator holds it
        found = read_leftovers(directory)
        found.release(delete=True)
        left = sorted(p.name for p in directory.iterdir())
    finally:
        os.close(fd)
    # The dead creator's garbage is gone; a creator that may be alive keeps its file.
    assert left == sorted([young.name, held.name])
    assert found.records == [] and found.invalid == []


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from aigw_lab.store.records import CallRecord
    from aigw_lab.store.spool import Spool

    directory, count = Path(sys.argv[1]), int(sys.argv[2])
    # Small segments and nothing ever committed: a new segment file every few calls.
    spool = Spool(directory, committed=lambda: 0, segment_bytes=2048)
    for i in range(count):
        spool.start((f"c-{i}", "t", 1767225600.0, "p", "m", "openai", False, "miss", 1,
                     None, None, None, None, None, None, False, None, None, None, None, None))
        with spool.lock:
            spool.write_end(CallRecord(call_id=f"c-{i}", trace_id="t", provider_name="p",
                                       request_model="m", timestamp=datetime.now(UTC)))
            spool.ends += 1
    assert spool.failed is None, spool.failed
    print(spool._counter, flush=True)
    sys.stdin.read()  # alive (its segments locked) until the test has stopped scanning
    spool.close(delete=False)
    """
)


@pytest.mark.slow  # ~3.5 s: two thousand calls across hundreds of segments
def test_a_process_making_segments_beside_a_scanning_process_loses_none(tmp_path):
    """Two real processes: one starting hundreds of segments, this one scanning the same
    folder for leftovers all along. The scan takes none of them, and every row written is
    found once the writer is gone."""
    directory = tmp_path / "shared.spool"
    directory.mkdir()
    count = 2000
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory), str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.append(writer.stdout.readline()))
    reader.start()
    scans = taken = 0
    try:
        while not printed and writer.poll() is None:
            found = read_leftovers(directory)
            taken += len(found.segments)
            found.release(delete=False)
            scans += 1
    finally:
        reader.join(60)
        _, err = writer.communicate(input="", timeout=60)
    assert writer.returncode == 0, err
    assert int(printed[0]) > 100  # segments made while the scans ran
    assert taken == 0, f"{taken} live segments taken over {scans} scans"
    found = read_leftovers(directory)
    try:
        ids = [r.call_id for r in found.records]
        assert len(ids) == count and len(set(ids)) == count
        assert {r.status for r in found.records} == {"ok"}
    finally:
        found.release(delete=True)


def test_with_fsync_durability_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    """The segment's final name is what must survive a power loss: the folder is synced
    once the rename has happened, not between creating the temporary file and renaming."""
    directory = tmp_path / "shared.spool"
    seen: list[list[str]] = []
    real = spool_module._fsync_dir

    def record(folder: Path) -> None:
        seen.append(sorted(p.name for p in folder.iterdir()))
        real(folder)

    monkeypatch.setattr(spool_module, "_fsync_dir", record)
    spool = Spool(directory, committed=lambda: 0, durability="fsync", fsync_interval=0)
    try:
        assert len(seen) == 1 and len(seen[0]) == 1
        assert seen[0][0].endswith(".spool") and not seen[0][0].endswith(spool_module.TEMP_SUFFIX)
    finally:
        spool.close(delete=True)


def test_the_grace_period_is_read_on_the_injected_clock(tmp_path):
    directory = tmp_path / "shared.spool"
    directory.mkdir()
    temp = directory / f"1-00000000-000001{spool_module.TEMP_SUFFIX}"
    temp.write_bytes(b"")
    made = temp.stat().st_mtime
    read_leftovers(directory, clock=lambda: made + TEMP_GRACE_S - 1).release(delete=True)
    assert temp.exists()
    read_leftovers(directory, clock=lambda: made + TEMP_GRACE_S + 1).release(delete=True)
    assert not temp.exists()
