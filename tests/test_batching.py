"""Request batching: `Batcher` groups concurrent submits (threads and asyncio tasks) into
calls of at most ``max_batch`` items, routes each result (or the batch's exception) to its
caller, leaves cancelled callers out, and never holds a lone item past ``max_wait``;
`BatchingEmbedder` and ``SemanticCache(batch_window=...)`` share one model call between
concurrent lookups.

Batch composition is made deterministic by a ``max_wait`` far longer than any test: a
batch then runs only when it is full, on `flush`, or when an injected clock says the wait
is over, never because a thread happened to be slow."""

import asyncio
import math
import threading

import numpy as np
import pytest

from aigw_lab import Gateway, Price
from aigw_lab.batching import Batcher
from aigw_lab.embeddings import BatchingEmbedder, Embedder, HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.testing.fakes import MockProvider

FOREVER = 3600.0  # no batch in these tests may run because this wait ran out
JOIN_TIMEOUT = 10.0  # a broken batcher fails the test instead of hanging it


class CountingFn:
    """A batch function that records every batch and answers ``item * 10``."""

    def __init__(self, fail_on=None):
        self.batches = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.batches.append(list(items))
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot process {self.fail_on}")
        return [item * 10 for item in items]


def submit_from_threads(batcher, items):
    """Submit every item from its own thread, all released together by a barrier; returns
    {item: result or exception}."""
    barrier = threading.Barrier(len(items))
    outcomes = {}

    def call(item):
        barrier.wait()
        try:
            outcomes[item] = batcher.submit(item)
        except Exception as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a submit never returned"
    return outcomes


def test_concurrent_thread_submits_make_full_batches_and_get_their_own_results():
    fn = CountingFn()
    with Batcher(fn, max_batch=4, max_wait=FOREVER) as batcher:
        outcomes = submit_from_threads(batcher, list(range(12)))
    assert len(fn.batches) == math.ceil(12 / 4) == 3
    assert all(len(batch) == 4 for batch in fn.batches)
    assert sorted(item for batch in fn.batches for item in batch) == list(range(12))
    assert outcomes == {item: item * 10 for item in range(12)}


async def test_concurrent_tasks_batch_and_the_partial_batch_runs_on_flush():
    fn = CountingFn()
    batcher = Batcher(fn, max_batch=4, max_wait=FOREVER)
    tasks = [asyncio.create_task(batcher.asubmit(item)) for item in range(10)]
    await asyncio.sleep(0)  # every task has queued its item
    batcher.flush()  # the last 2 items need not wait FOREVER
    results = await asyncio.wait_for(asyncio.gather(*tasks), JOIN_TIMEOUT)
    batcher.close()
    assert results == [item * 10 for item in range(10)]
    assert [len(batch) for batch in fn.batches] == [4, 4, 2] and len(fn.batches) == 3
    assert [item for batch in fn.batches for item in batch] == list(range(10))


async def test_gather_of_exactly_max_batch_tasks_is_one_call():
    fn = CountingFn()
    with Batcher(fn, max_batch=5, max_wait=FOREVER) as batcher:
        coros = [batcher.asubmit(item) for item in (3, 1, 4, 1, 5)]
        results = await asyncio.wait_for(asyncio.gather(*coros), JOIN_TIMEOUT)
    assert results == [30, 10, 40, 10, 50]
    assert fn.batches == [[3, 1, 4, 1, 5]]


def test_an_exception_reaches_every_caller_of_its_batch_and_only_them():
    fn = CountingFn(fail_on=2)
    with Batcher(fn, max_batch=4, max_wait=FOREVER) as batcher:
        outcomes = submit_from_threads(batcher, list(range(8)))
        failed_batch = next(batch for batch in fn.batches if 2 in batch)
        for item in range(8):
            if item in failed_batch:
                assert isinstance(outcomes[item], ValueError)
                assert "cannot process 2" in str(outcomes[item])
            else:
                assert outcomes[item] == item * 10
        # The worker carries on after a failed batch.
        assert submit_from_threads(batcher, [9, 10, 11, 12]) == {9: 90, 10: 100, 11: 110, 12: 120}


async def test_an_exception_reaches_every_awaiting_task():
    fn = CountingFn(fail_on=7)
    with Batcher(fn, max_batch=3, max_wait=FOREVER) as batcher:
        coros = [batcher.asubmit(item) for item in (6, 7, 8)]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*coros, return_exceptions=True), JOIN_TIMEOUT
        )
    assert all(isinstance(o, ValueError) for o in outcomes)


def test_a_wrong_number_of_results_is_an_error_for_every_caller():
    with Batcher(lambda items: items[:-1], max_batch=2, max_wait=FOREVER) as batcher:
        outcomes = submit_from_threads(batcher, ["a", "b"])
    assert all(isinstance(o, ConfigError) for o in outcomes.values())
    assert "returned 1 results for 2 items" in str(outcomes["a"])


def test_a_lone_item_is_not_held_past_max_wait():
    # Each reading of this clock is an hour later: the worker must see its max_wait (a
    # minute) as over at once and run the lone item, never wait an hour of real time.
    class LeapingClock:
        now = 0.0

        def __call__(self):
            self.now += 3600.0
            return self.now

    fn = CountingFn()
    with Batcher(fn, max_batch=64, max_wait=60.0, clock=LeapingClock()) as batcher:
        outcomes = submit_from_threads(batcher, [5])
    assert outcomes == {5: 50}
    assert fn.batches == [[5]]


def test_a_lone_item_runs_after_a_short_real_max_wait():
    fn = CountingFn()
    with Batcher(fn, max_batch=64, max_wait=0.001) as batcher:
        assert submit_from_threads(batcher, [1]) == {1: 10}
    assert fn.batches == [[1]]


async def test_cancelling_one_waiter_leaves_it_out_and_the_others_get_their_results():
    fn = CountingFn()
    with Batcher(fn, max_batch=4, max_wait=FOREVER) as batcher:
        first = [asyncio.create_task(batcher.asubmit(item)) for item in (0, 1, 2)]
        await asyncio.sleep(0)  # queued; the batch waits for a 4th item
        first[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await first[1]
        last = asyncio.create_task(batcher.asubmit(3))
        done = await asyncio.wait_for(asyncio.gather(first[0], first[2], last), JOIN_TIMEOUT)
    assert done == [0, 20, 30]
    assert fn.batches == [[0, 2, 3]]  # the cancelled item was not processed


def test_closed_batcher_refuses_new_items_and_bad_settings_are_refused():
    batcher = Batcher(CountingFn())
    batcher.close()
    with pytest.raises(ConfigError, match="closed"):
        batcher.submit(1)
    for bad in ({"max_batch": 0}, {"max_batch": True}, {"max_wait": -1}, {"max_wait": "5"}):
        with pytest.raises(ConfigError):
            Batcher(CountingFn(), **bad)


# --- the embedder and the semantic cache -------------------------------------------------


class CountingEmbedder:
    """Wraps the hashing double and records how many texts each model call got."""

    def __init__(self):
        self.inner = HashingEmbedder(64)
        self.name = self.inner.name
        self.calls = []

    @property
    def dim(self):
        return self.inner.dim

    def embed(self, texts):
        self.calls.append(len(texts))
        return self.inner.embed(texts)


def test_batching_embedder_shares_one_model_call_between_concurrent_threads():
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner, max_batch=6, max_wait=FOREVER)
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dim) == (inner.name, 64)
    texts = [f"question number {i}" for i in range(6)]
    outcomes = submit_from_threads(embedder._batcher, texts)
    embedder.close()
    assert inner.calls == [6]
    for text in texts:  # each caller got the row of its own text
        np.testing.assert_array_equal(outcomes[text], inner.inner.embed([text])[0])


def test_batching_embedder_single_and_multi_text_calls():
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner, max_batch=8, max_wait=0.0)
    one = embedder.embed(["hello there"])
    many = embedder.embed(["a b c", "d e f"])
    embedder.close()
    assert one.shape == (1, 64) and many.shape == (2, 64)
    np.testing.assert_array_equal(one, inner.inner.embed(["hello there"]))
    assert inner.calls == [1, 2]  # a multi-text call is already a batch: passed straight on


async def test_semantic_cache_async_lookups_share_model_calls_and_route_answers():
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner, max_batch=3, max_wait=FOREVER)
    cache = SemanticCache(embedder, threshold=0.9)
    provider = MockProvider("mock", models=("m1",), default=None)
    gateway = Gateway([provider], middleware=[cache], prices={"mock/m1": Price(1.0, 2.0)})
    questions = [
        "What is the capital of France?",
        "How do I bake sourdough bread?",
        "Why is the sky blue?",
    ]
    provider.enqueue("Paris.", "Flour, water, salt.", "Rayleigh scattering.")
    misses = await asyncio.wait_for(
        asyncio.gather(*(gateway.achat("mock/m1", q) for q in questions)), JOIN_TIMEOUT
    )
    answer_of = {q: reply.text for q, reply in zip(questions, misses, strict=True)}
    hits = await asyncio.wait_for(
        asyncio.gather(*(gateway.achat("mock/m1", q.lower().rstrip("?")) for q in questions)),
        JOIN_TIMEOUT,
    )
    embedder.close()
    assert [r.cache_status for r in misses] == ["miss"] * 3
    assert [r.cache_status for r in hits] == ["hit"] * 3
    assert [r.text for r in hits] == [answer_of[q] for q in questions]
    assert inner.calls == [3, 3]  # six lookups, two model calls
    assert len(provider.requests) == 3


def test_semantic_cache_batch_window_wraps_the_embedder():
    inner = HashingEmbedder(64)
    assert SemanticCache(inner).embedder is inner  # off by default
    cache = SemanticCache(inner, batch_window=0.001)
    assert isinstance(cache.embedder, BatchingEmbedder)
    assert cache.embedder.name == inner.name  # saved caches stay loadable
    with pytest.raises(ConfigError):
        SemanticCache(inner, batch_window=-1.0)
    cache.embedder.close()


def _sim_gateway(embedder, n):
    provider = MockProvider("mock", models=("m1",), default=None)
    provider.enqueue(*(f"answer {i}" for i in range(n)))
    cache = SemanticCache(embedder, threshold=0.9)
    return Gateway([provider], middleware=[cache], prices={"mock/m1": Price(1.0, 2.0)})


def test_semantic_cache_thread_lookups_through_the_gateway_share_one_model_call():
    n = 8
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner, max_batch=n, max_wait=FOREVER)
    gateway = _sim_gateway(embedder, n)
    questions = [f"Question {i}: what is the colour of item {'x' * i}?" for i in range(n)]
    barrier = threading.Barrier(n)
    replies = {}

    def call(question):
        barrier.wait()  # all released together
        replies[question] = gateway.chat("mock/m1", question)

    threads = [threading.Thread(target=call, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    embedder.close()
    assert not any(t.is_alive() for t in threads), "a lookup never returned"
    assert inner.calls == [n]  # n concurrent lookups, one model call
    assert sorted(r.cache_status for r in replies.values()) == ["miss"] * n


def test_semantic_cache_lookups_from_threads_and_tasks_share_one_model_call():
    threads_n, tasks_n = 3, 3
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner, max_batch=threads_n + tasks_n, max_wait=FOREVER)
    gateway = _sim_gateway(embedder, threads_n + tasks_n)
    replies = []

    def sync_call(question):
        replies.append(gateway.chat("mock/m1", question))

    async def from_tasks():
        return await asyncio.gather(
            *(
                gateway.achat("mock/m1", f"Why is task {i} on an event loop?")
                for i in range(tasks_n)
            )
        )

    threads = [
        threading.Thread(target=sync_call, args=(f"How does thread {i} block?",))
        for i in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    # The batch cannot run before every caller, threads and tasks, has put its text in it.
    replies.extend(asyncio.run(asyncio.wait_for(from_tasks(), JOIN_TIMEOUT)))
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    embedder.close()
    assert not any(t.is_alive() for t in threads), "a lookup never returned"
    assert inner.calls == [threads_n + tasks_n]
    assert len(replies) == threads_n + tasks_n
