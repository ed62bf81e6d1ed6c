"""The two caches as sans-IO primitives, without a driver, thread or event loop: the verdicts
their ``admit`` gives, what ``settle`` stores and lands, what ``withdraw`` gives up, and the
semantic cache's store interface."""

from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from aigw_lab import ChatRequest
from aigw_lab.embeddings import BatchingEmbedder, HashingEmbedder
from aigw_lab.errors import ProviderServerError, StoreError
from aigw_lab.gateway.cache import CacheWarning, ExactCache
from aigw_lab.gateway.cache_stores import MemoryStore
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Serve, Wait, Work
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.gateway.semantic_store import MemorySemanticStore, SemanticEntry, SemanticStore
from aigw_lab.types import ChatResponse, Usage


class Recorder:
    """Stands in for the call's recorder: records each answer served without a provider."""

    def __init__(self) -> None:
        self.served: list[tuple[str, float | None]] = []

    def serve_without_provider(self, ctx, response, *, cache_status="hit", similarity=None):
        ctx.cache_status = cache_status
        self.served.append((response.text, similarity))
        return response


def context(prompt="2+2?", *, stream=False, gateway=None, **params) -> CallContext:
    request = ChatRequest.create("m1", prompt, **params)
    recorder = gateway or Recorder()
    return CallContext(
        request,
        "mock",
        "m1",
        "trace",
        stream=stream,
        started=0.0,
        started_wall=0.0,
        gateway=recorder,
        recorder=recorder,
    )


def answer(text="four", finish_reason="stop") -> ChatResponse:
    return ChatResponse(
        text=text,
        finish_reason=finish_reason,
        usage=Usage(input_tokens=3, output_tokens=1),
        provider="mock",
        model="m1",
        cost_usd=0.5,
    )


def elsewhere(admit, ctx):
    """``admit(ctx, None)`` asked from another thread: the leader's own thread never waits."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(admit, ctx, None).result(timeout=10)


def done(response=None, **kw) -> Outcome:
    return Outcome(response=response, answered=response is not None, **kw)


# --- the exact cache ------------------------------------------------------------------------


def test_a_miss_proceeds_and_settling_stores_what_the_next_call_is_served():
    cache = ExactCache(MemoryStore())
    first = context()
    verdict = cache.admit(first, None)
    assert type(verdict) is Proceed and first.cache_status == "miss"
    cache.settle(first, verdict.ticket, done(answer()))
    second = context()
    served = cache.admit(second, None)
    assert type(served) is Serve and served.response.text == "four"
    assert second.gateway.served == [("four", None)] and second.cache_status == "hit"
    stats = cache.stats()
    assert (stats.misses, stats.hits, stats.in_flight, stats.saved_usd) == (1, 1, 0, 0.5)


def test_a_second_identical_call_waits_on_the_flight_and_is_served_its_answer():
    cache = ExactCache()
    leader, follower = context(), context()
    lead = cache.admit(leader, None)
    wait = elsewhere(cache.admit, follower)
    assert type(wait) is Wait and wait.seconds is None and not wait.wake.done()
    assert wait.wake_loop is None  # led from a thread: any thread may resolve it
    assert (cache.stats().in_flight, cache.stats().waiting) == (1, 1)
    cache.settle(leader, lead.ticket, done(answer("shared")))
    assert wait.wake.done() and cache.stats().in_flight == 0
    served = cache.admit(follower, wait.state)
    assert type(served) is Serve and served.response.text == "shared"
    stats = cache.stats()
    assert (stats.misses, stats.coalesced, stats.hits, stats.waiting) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(error=ProviderServerError("boom", provider="mock", model="m1")),
        Outcome(response=answer("half", finish_reason="error"), answered=True),
        Outcome(error=GeneratorExit(), answered=True),  # a stream abandoned part-way
        Outcome(answered=True),  # a stream that stopped before its end
    ],
    ids=["error", "finish error", "abandoned stream", "cut stream"],
)
def test_an_incomplete_answer_is_not_stored_and_promotes_a_waiter(outcome):
    cache = ExactCache()
    leader, follower = context(), context()
    lead = cache.admit(leader, None)
    wait = elsewhere(cache.admit, follower)
    cache.settle(leader, lead.ticket, outcome)
    assert wait.wake.result() is None and cache.stats().entries == 0
    promoted = cache.admit(follower, wait.state)
    assert type(promoted) is Proceed and promoted.ticket.flight is not None  # it leads now
    assert cache.stats().in_flight == 1 and follower.cache_status == "miss"


def test_a_withdrawn_waiter_stops_counting_and_leaves_the_flight_alone():
    cache = ExactCache()
    lead = cache.admit(context(), None)
    wait = elsewhere(cache.admit, context())
    cache.withdraw(context(), wait.state)
    assert cache.stats().waiting == 0 and cache.stats().in_flight == 1
    assert not wait.wake.done() and not wait.wake.cancelled()
    cache.settle(context(), lead.ticket, done(answer()))
    assert cache.stats().entries == 1


def test_streams_wait_on_a_flight_but_never_lead_one():
    cache = ExactCache()
    alone = cache.admit(context(stream=True), None)
    assert type(alone) is Proceed and alone.ticket.flight is None
    assert cache.stats().in_flight == 0
    cache.admit(context(), None)  # a chat call leads
    assert type(elsewhere(cache.admit, context(stream=True))) is Wait


def test_a_call_from_the_leaders_own_thread_never_waits_on_it():
    cache = ExactCache()
    cache.admit(context(), None)  # a sync leader, this thread, no event loop
    again = cache.admit(context(), None)  # e.g. its provider calling the gateway again
    assert type(again) is Proceed and again.ticket.flight is None
    assert cache.stats().waiting == 0


def test_a_wait_that_returned_without_its_answer_goes_upstream_alone():
    cache = ExactCache()
    cache.admit(context(), None)
    follower = context()
    wait = elsewhere(cache.admit, follower)
    alone = cache.admit(follower, wait.state)  # the driver could not block (wake_loop)
    assert type(alone) is Proceed and alone.ticket.flight is None
    assert cache.stats().waiting == 0 and follower.cache_status == "miss"


def test_bypass_and_no_coalescing():
    cache = ExactCache(coalesce=False)
    skipped = context(metadata={"cache": {"skip": True}})
    assert cache.admit(skipped, None) is PROCEED and skipped.cache_status == "bypass"
    first = cache.admit(context(), None)
    second = cache.admit(context(), None)
    assert type(first) is type(second) is Proceed and second.ticket.flight is None
    assert cache.stats().in_flight == 0


class FailingSet(MemoryStore):
    def set(self, key, response, ttl):
        raise StoreError("the disk is gone")


def test_a_store_failure_warns_and_the_waiters_still_get_the_answer():
    cache = ExactCache(FailingSet())
    leader = context()
    lead = cache.admit(leader, None)
    wait = elsewhere(cache.admit, context())
    with pytest.warns(CacheWarning, match="the disk is gone"):
        cache.settle(leader, lead.ticket, done(answer("kept")))
    assert wait.wake.result().text == "kept"


def test_a_flight_lands_even_when_settling_raises():
    cache = ExactCache(FailingSet())
    lead = cache.admit(context(), None)
    wait = elsewhere(cache.admit, context())
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        with pytest.raises(CacheWarning):
            cache.settle(context(), lead.ticket, done(answer()))
    assert wait.wake.done() and wait.wake.result() is None
    assert cache.stats().in_flight == 0


# --- the semantic cache ---------------------------------------------------------------------


def test_semantic_admit_asks_for_the_embedding_as_work_then_proceeds_or_serves():
    cache = SemanticCache(HashingEmbedder(64), threshold=0.9)
    first = context("What is the capital of France?")
    work = cache.admit(first, None)
    assert type(work) is Work
    verdict = cache.admit(first, work.run())
    assert type(verdict) is Proceed and first.cache_status == "miss"
    cache.settle(first, verdict.ticket, done(answer("Paris.")))
    near = context("what is the capital of france")
    served = cache.admit(near, cache.admit(near, None).run())
    assert type(served) is Serve and served.response.text == "Paris."
    ((text, similarity),) = near.gateway.served
    assert text == "Paris." and 0.9 <= similarity <= 1.0
    assert (cache.stats().hits, cache.stats().misses, len(cache)) == (1, 1, 1)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(response=answer("cut", finish_reason="length"), answered=True),
        Outcome(error=ProviderServerError("boom", provider="mock", model="m1")),
        Outcome(error=GeneratorExit(), answered=True),
    ],
    ids=["truncated", "error", "abandoned"],
)
def test_semantic_settle_stores_complete_answers_only(outcome):
    cache = SemanticCache(HashingEmbedder(64))
    ctx = context("a question")
    verdict = cache.admit(ctx, cache.admit(ctx, None).run())
    cache.settle(ctx, verdict.ticket, outcome)
    assert len(cache) == 0


def test_semantic_bypasses_sampled_requests_without_embedding():
    cache = SemanticCache(HashingEmbedder(64))
    sampled = context("a question", temperature=0.7)
    assert cache.admit(sampled, None) is PROCEED and sampled.cache_status == "bypass"


class ManualBatches(HashingEmbedder):
    """A batching embedder's interface with futures the test resolves."""

    def __init__(self) -> None:
        super().__init__(64)
        self.pending: list[tuple[str, Future]] = []

    def embed_later(self, text):
        future: Future = Future()
        self.pending.append((text, future))
        return future


def test_semantic_with_a_batching_embedder_waits_on_its_future_and_withdraws_it():
    embedder = ManualBatches()
    cache = SemanticCache(embedder)
    ctx = context("a question")
    wait = cache.admit(ctx, None)
    assert type(wait) is Wait and wait.wake is embedder.pending[0][1] and wait.seconds is None
    wait.wake.set_result(HashingEmbedder(64).embed(["a question"])[0])
    assert type(cache.admit(ctx, wait.state)) is Proceed
    abandoned = cache.admit(context("another question"), None)
    cache.withdraw(ctx, abandoned.state)
    assert abandoned.wake.cancelled()  # its text leaves the batch


def test_a_batching_embedder_gives_a_future_per_text():
    embedder = BatchingEmbedder(HashingEmbedder(64), max_batch=2, max_wait=0.0)
    try:
        future = embedder.embed_later("hello there")
        np.testing.assert_array_equal(
            future.result(timeout=10), HashingEmbedder(64).embed(["hello there"])[0]
        )
    finally:
        embedder.close()


# --- the semantic store ----------------------------------------------------------------------


class Forwarding:
    """A store that is not a MemorySemanticStore: forwards to one and records the calls, so
    the cache is shown to use the protocol only."""

    def __init__(self, inner: MemorySemanticStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)


def test_the_semantic_cache_works_through_any_semantic_store(tmp_path):
    clock = [1_000.0]
    cache = SemanticCache(HashingEmbedder(64), ttl=10, max_entries=2, clock=lambda: clock[0])
    store = cache.store = Forwarding(MemorySemanticStore(2))
    assert isinstance(MemorySemanticStore(1), SemanticStore)
    for prompt in ("first question here", "second question here", "third question here"):
        ctx = context(prompt)
        verdict = cache.admit(ctx, cache.admit(ctx, None).run())
        cache.settle(ctx, verdict.ticket, done(answer(prompt)))
    assert len(cache) == 2 and cache.stats().evictions == 1  # the store's bound
    ctx = context("third question here")
    assert type(cache.admit(ctx, cache.admit(ctx, None).run())) is Serve
    cache.save(tmp_path)
    clock[0] += 10
    ctx = context("third question here")
    assert type(cache.admit(ctx, cache.admit(ctx, None).run())) is Proceed  # expired
    assert cache.stats().expired == 1
    assert {"add", "search", "touch", "remove", "entries", "stats"} <= set(store.calls)


def test_memory_semantic_store_evicts_least_recently_used_and_tolerates_gone_ids():
    store = MemorySemanticStore(2)

    def entry(text, partition="p"):
        vector = HashingEmbedder(16).embed([text])[0]
        return SemanticEntry(
            partition=partition,
            text=text,
            vector=vector,
            response=answer(text),
            created=0.0,
            expires=None,
            markers=((), 0),
        )

    a, b = store.add(entry("alpha")), store.add(entry("beta", "q"))
    assert (a.entry_id, b.entry_id) == (0, 1)
    store.touch(a.entry_id)  # beta is now the least recently used
    store.add(entry("gamma"))
    assert [e.text for e in store.entries()] == ["alpha", "gamma"]
    assert store.search("q", b.vector, 4) == []  # beta's partition went with it
    assert store.stats().evictions == 1
    assert not store.remove(b.entry_id) and store.touch(b.entry_id) is None
    ((found, similarity),) = store.search("p", a.vector, 1)
    assert found.text == "alpha" and similarity == pytest.approx(1.0)
    assert store.remove(a.entry_id, expired=True) and store.stats().expired == 1
    store.clear()
    assert len(store) == 0 and store.search("p", a.vector, 1) == []
