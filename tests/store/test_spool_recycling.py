"""The spool reuses a segment whose rows were all written, instead of deleting it and
creating a new file: the reused pages are already mapped (a new file's first write into each
page faults), which is most of what a frame cost on the calling thread. Reuse must lose
nothing: a process killed at any moment still leaves every row the writer had not written,
and every call in flight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from aigw_lab.store.spool import Spool, read_leftovers, read_segment

from .conftest import make_record


def test_a_written_segment_is_emptied_and_reused_instead_of_a_new_file(tmp_path):
    directory = tmp_path / "s.spool"
    ends = [0]
    spool = Spool(directory, committed=lambda: ends[0], segment_bytes=2_000)
    names: set[str] = set()
    for i in range(200):  # about 40 segments' worth of frames
        spool.start((f"call-{i}", "t", 1767225600.0, "p", "m") + (None,) * 15)
        with spool.lock:
            spool.write_end(make_record(i, call_id=f"call-{i}"))
            spool.ends += 1
        ends[0] = spool.ends  # the writer keeps up
        names.update(path.name for path in directory.iterdir())
    assert len(names) == 2  # the one in use and the one emptied for reuse, swapped each time
    live = [f for path in directory.iterdir() for f in read_segment(path)]
    # Only the current segment holds frames: what was written since the last rotation.
    assert live and {values[0] for _, values in live} <= {f"call-{i}" for i in range(150, 200)}
    spool.close(delete=True)
    assert not directory.exists()


KILLED = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime, timedelta
    from aigw_lab.store import CallRecord
    from aigw_lab.store.spool import Spool

    spool = Spool(__import__("pathlib").Path(sys.argv[1]), committed=lambda: written[0],
                  segment_bytes=2_000)
    written = [0]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(300):
        spool.start((f"call-{i}", "t", 1767225600.0 + i, "p", "m") + (None,) * 15)
        with spool.lock:
            spool.write_end(CallRecord(call_id=f"call-{i}", trace_id="t", provider_name="p",
                                       request_model="m", timestamp=base + timedelta(seconds=i),
                                       input_tokens=i, cost_usd=0.001 * i))
            spool.ends += 1
        written[0] = max(0, spool.ends - 7)  # the writer trails the appends by 7 rows
    spool.start(("in-flight", "t", 1767225600.0, "p", "m") + (None,) * 15)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_a_process_killed_while_reusing_segments_leaves_every_unwritten_row(tmp_path):
    directory = tmp_path / "s.spool"
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, str(script), str(directory)], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    found = read_leftovers(directory)
    try:
        assert not found.invalid and found.torn == 0
        by_id = {record.call_id: record for record in found.records}
        # The 7 rows the writer had not written, with their outcome, and the call in flight.
        for i in range(293, 300):
            assert by_id[f"call-{i}"].status == "ok" and by_id[f"call-{i}"].input_tokens == i
        assert by_id["in-flight"].status == "interrupted"
        assert len(os.listdir(directory)) <= 4  # segments reused, not piled up
    finally:
        found.release(delete=True)
