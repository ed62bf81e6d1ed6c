"""Many writers at once, asyncio callers, and backpressure when the writer falls behind."""

from __future__ import annotations

import asyncio
import threading
import time

from aigw_lab.store import CallLog


def test_appends_from_many_threads_are_all_written_in_per_thread_order(tmp_path, record):
    threads, per_thread = 8, 1500
    start = threading.Barrier(threads)

    def produce(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.append(record(t * per_thread + i, trace_id=f"thread-{t}"))

    with CallLog(tmp_path / "c.duckdb", batch_size=64, max_queue=500) as log:
        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        log.flush()
        assert log.rows_written == threads * per_thread
        ids = log.execute("SELECT trace_id, call_id FROM calls ORDER BY rowid")

    assert len({call_id for _, call_id in ids}) == threads * per_thread
    for t in range(threads):
        mine = [call_id for trace, call_id in ids if trace == f"thread-{t}"]
        assert mine == [record(t * per_thread + i).call_id for i in range(per_thread)]


async def test_appends_from_asyncio_tasks(tmp_path, record):
    async def produce(task: int) -> None:
        for i in range(100):
            log.append(record(task * 100 + i))
            if i % 10 == 0:
                await asyncio.sleep(0)  # interleave the tasks

    with CallLog(tmp_path / "c.duckdb", batch_size=50) as log:
        await asyncio.gather(*(produce(task) for task in range(40)))
        await asyncio.to_thread(log.flush)
        [(count, distinct)] = log.execute("SELECT count(*), count(DISTINCT call_id) FROM calls")
    assert (count, distinct) == (4000, 4000)


def _wait_until(condition, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def test_a_full_queue_blocks_append_and_drops_nothing(tmp_path, record, gate):
    max_queue, total = 10, 50
    accepted = []
    log = CallLog(tmp_path / "c.duckdb", batch_size=4, max_queue=max_queue, before_insert=gate)
    gate.hold()  # the writer stops at its first insert

    def produce() -> None:
        for i in range(total):
            log.append(record(i))
            accepted.append(i)

    producer = threading.Thread(target=produce)
    producer.start()
    assert gate.entered.wait(10)
    _wait_until(lambda: len(accepted) == max_queue, "the queue is full")
    # The producer is now inside append(): blocked, not dropping rows or running ahead.
    time.sleep(0.005)
    assert len(accepted) == max_queue and producer.is_alive()
    assert log.pending_rows == max_queue

    gate.release()
    producer.join(10)
    assert not producer.is_alive()
    log.flush()
    assert log.rows_written == total
    assert log.execute("SELECT call_id FROM calls ORDER BY rowid") == [
        (record(i).call_id,) for i in range(total)
    ]
    assert max(gate.attempts) <= max_queue  # batches never exceed what was allowed to wait
    log.close()
