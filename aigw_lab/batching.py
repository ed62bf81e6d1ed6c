"""Request batching: many callers, one call of a batch function.

`Batcher` collects the items that callers submit concurrently (threads with `submit`,
asyncio tasks with `asubmit`) and runs a batch function once per group of at most
``max_batch`` items, waiting at most ``max_wait`` seconds after the first item of a group
for others to join. It pays where one call on many items costs little more than one call on
one item, e.g. an embedding model (see `aigw_lab.embeddings.BatchingEmbedder`).

    batcher = Batcher(model_embed, max_batch=32, max_wait=0.002)
    vector = batcher.submit("How do I reverse a list?")          # from a thread: blocks
    vector = await batcher.asubmit("How do I reverse a list?")   # from a task: awaits

The batch function runs on the batcher's own worker thread (started on first use), so an
event loop awaiting `asubmit` is never blocked by it. It must not submit to its own batcher.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from aigw_lab.errors import ConfigError

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

# Markers put in the queue among the items: run what is collected now / stop the worker.
_FLUSH = object()
_STOP = object()


class Batcher(Generic[T, R]):
    """Runs ``fn`` once per batch of concurrently submitted items; each caller gets its own
    result (``fn(items)[i]`` for the i-th item), or the exception ``fn`` raised for its batch.

    ``fn``: takes a list of items and returns a sequence of as many results, in order.
    ``max_batch``: the most items per call. ``max_wait``: the longest a batch waits for more
    items after its first one (seconds; 0: run with whatever is already queued).
    ``clock``: monotonic seconds, injectable for tests.

    Items whose asyncio caller was cancelled before their batch ran are left out of it.
    `flush` runs what is queued without waiting; `close` (or leaving a ``with`` block) runs
    it and stops the worker thread. Thread-safe.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(
                f"Batcher max_batch={max_batch!r} is invalid", hint="use a positive integer"
            )
        if (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, (int, float))
            or not (0.0 <= max_wait < 3600 * 24)
        ):
            raise ConfigError(
                f"Batcher max_wait={max_wait!r} is invalid",
                hint="use seconds >= 0, e.g. 0.005 (5 ms)",
            )
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = float(max_wait)
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False

    def submit(self, item: T) -> R:
        """Add ``item`` to the next batch and block until its result is ready."""
        return self._enqueue(item).result()

    def submit_later(self, item: T) -> Future[R]:
        """Add ``item`` to the next batch; its result comes in the returned future (for
        callers that wait their own way). Cancelling the future before its batch runs
        leaves the item out."""
        return self._enqueue(item)

    async def asubmit(self, item: T) -> R:
        """Add ``item`` to the next batch and await its result (the event loop keeps
        running). Cancelling the awaiting task leaves the item out if its batch has not run."""
        return await asyncio.wrap_future(self._enqueue(item))

    def flush(self) -> None:
        """Run the items submitted so far without waiting for ``max_wait``."""
        self._queue.put(_FLUSH)

    def close(self) -> None:
        """Run the queued items, then stop the worker thread; later submits raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
        self._queue.put(_STOP)
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def __enter__(self) -> Batcher[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Batcher max_batch={self.max_batch} max_wait={self.max_wait}>"

    def _enqueue(self, item: T) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise ConfigError(
                    "this Batcher is closed", hint="create a new Batcher, or submit before close()"
                )
            if self._worker is None:
                self._start_worker()
            self._queue.put((item, future))
        return future

    def _start_worker(self) -> None:
        # The worker gets the queue and settings, not self: a batcher that is dropped
        # without close() is collected, and the finalizer then stops its thread.
        worker = threading.Thread(
            target=_work,
            args=(self._queue, self.fn, self.max_batch, self.max_wait, self._clock),
            name=f"aigw-batcher-{id(self):x}",
            daemon=True,
        )
        worker.start()
        self._worker = worker
        weakref.finalize(self, self._queue.put, _STOP)


def _work(
    items: queue.SimpleQueue[Any],
    fn: Callable[[list[Any]], Sequence[Any]],
    max_batch: int,
    max_wait: float,
    clock: Callable[[], float],
) -> None:
    """The worker loop: wait for a first item, collect more until the batch is full, the
    wait is over or a marker says so, run it; until the stop marker."""
    while True:
        first = items.get()
        if first is _STOP:
            return
        if first is _FLUSH:
            continue
        batch = [first]
        deadline = clock() + max_wait
        stop = False
        while len(batch) < max_batch:
            remaining = deadline - clock()
            try:
                # Past the deadline, items already queued still join: they waited too.
                got = items.get(timeout=remaining) if remaining > 0 else items.get_nowait()
            except queue.Empty:
                break
            if got is _FLUSH:
                break
            if got is _STOP:
                stop = True
                break
            batch.append(got)
        _run(fn, batch)
        if stop:
            return


def _run(fn: Callable[[list[Any]], Sequence[Any]], batch: list[tuple[Any, Future[Any]]]) -> None:
    # set_running_or_notify_cancel is False for a cancelled caller: its item is left out,
    # and its future can no longer be cancelled once this returns True.
    live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
    if not live:
        return
    try:
        results = fn([item for item, _ in live])
        if len(results) != len(live):
            raise ConfigError(
                f"the batch function returned {len(results)} results for {len(live)} items",
                hint="return one result per item, in the order of the items",
            )
    except Exception as exc:  # every caller of this batch gets it; the worker carries on
        for _, future in live:
            future.set_exception(exc)
        return
    for (_, future), result in zip(live, results, strict=True):
        future.set_result(result)
