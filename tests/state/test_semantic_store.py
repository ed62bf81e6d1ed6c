"""`RedisSemanticStore` against a real redis-server: the `SemanticStore` protocol as on main
(`SemanticCache` works through it, as through the memory store), and what only a shared
store must do: an entry one process stored is found by another, removals and the bound
hold across processes."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.gateway.primitive import Serve
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.gateway.semantic_store import SemanticEntry, SemanticStore
from aigw_lab.gateway.state.semantic import RedisSemanticStore
from aigw_lab.types import ChatResponse, Usage
from tests.gateway.test_cache_primitive import answer, context, done


def entry(text, vector, partition="p", expires=None):
    return SemanticEntry(
        partition=partition,
        text=text,
        vector=np.asarray(vector, dtype=np.float32),
        response=ChatResponse(text=f"answer to {text}", finish_reason="stop",
                              usage=Usage(input_tokens=1, output_tokens=2),
                              provider="mock", model="m1"),
        created=1.0,
        expires=expires,
        markers=(("n:2",), 1),
    )  # fmt: skip


def test_it_is_a_semantic_store_and_round_trips_an_entry_between_processes(shared):
    one, two = RedisSemanticStore(shared, 10), RedisSemanticStore(shared, 10)
    assert isinstance(one, SemanticStore)
    stored = one.add(entry("hello", [1.0, 0.0, 0.0]))
    ((found, similarity),) = two.search("p", np.asarray([1.0, 0.0, 0.0], np.float32), 3)
    assert similarity == pytest.approx(1.0) and found.entry_id == stored.entry_id
    assert (found.text, found.response, found.markers) == ("hello", stored.response, (("n:2",), 1))
    assert two.search("other partition", np.asarray([1.0, 0.0, 0.0], np.float32), 3) == []


def test_removals_and_the_bound_hold_across_processes(shared):
    one, two = RedisSemanticStore(shared, 2), RedisSemanticStore(shared, 2)
    a = one.add(entry("a", [1.0, 0.0]))
    b = two.add(entry("b", [0.0, 1.0]))
    one.touch(a.entry_id)  # a used after b: b is the least recently used
    two.add(entry("c", [1.0, 1.0]))
    assert [e.text for e in one.entries()] == ["a", "c"]  # b evicted, in every process
    assert one.stats().evictions == 1 and len(two) == 2
    assert two.remove(a.entry_id) and not one.remove(a.entry_id)
    assert [e.text for e, _ in one.search("p", np.asarray([1.0, 0.0], np.float32), 5)] == ["c"]
    assert b.entry_id not in {e.entry_id for e in two.entries()}


def test_expired_entries_are_purged_for_everyone(shared):
    one, two = RedisSemanticStore(shared, 10), RedisSemanticStore(shared, 10)
    one.add(entry("short", [1.0, 0.0], expires=5.0))
    one.add(entry("long", [0.0, 1.0], expires=50.0))
    assert two.purge_expired(10.0) == 1
    assert [e.text for e in one.entries()] == ["long"] and one.stats().expired == 1
    one.clear()
    assert len(two) == 0 and two.entries() == []


def test_an_answer_one_semantic_cache_stored_is_served_by_another(shared):
    caches = []
    for _ in range(2):
        cache = SemanticCache(HashingEmbedder(64), ttl=100, max_entries=10)
        cache.store = RedisSemanticStore(shared, 10)  # what `store=` will do once it exists
        caches.append(cache)
    ctx = context("what is the capital of france")
    verdict = caches[0].admit(ctx, caches[0].admit(ctx, None).run())
    caches[0].settle(ctx, verdict.ticket, done(answer("paris")))
    ctx = context("what is the capital of france")
    served = caches[1].admit(ctx, caches[1].admit(ctx, None).run())
    assert type(served) is Serve and served.response.text == "paris"


def test_the_shared_stores_build_one_for_the_semantic_cache(redis_server):
    from aigw_lab.gateway.state import StateSettings

    table = {"backend": "redis", "url_env": "U", "prefix": "semwire:"}
    shared = StateSettings.from_table(table, {"U": redis_server.url}).stores()
    one, two = shared.semantic(5), shared.semantic(5)
    one.add(entry("x", [1.0, 0.0]))
    assert [e.text for e in two.entries()] == ["x"]
    shared.state.close()


def test_the_local_mirror_keeps_no_object_per_entry_and_gives_back_equal_entries(shared):
    """The mirror held one `SemanticEntry` (with its answer and usage) per entry, each
    walked by every full garbage collection; now the tracked objects stay flat while the
    entries come back equal, in this process and in another."""
    import gc

    one, two = RedisSemanticStore(shared, 10_000), RedisSemanticStore(shared, 10_000)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((1201, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    one.add(entry("first", vectors[0]))  # the partition's index and first arrays
    two.search("p", vectors[0], 1)  # the other process's mirror, loaded
    added = [entry(f"q{i}", vectors[i], expires=float(i)) for i in range(1, 1201)]
    gc.collect()
    before = len(gc.get_objects())  # the test's own entries already counted
    for item in added:
        one.add(item)
    two.search("p", vectors[0], 1)  # the other process reads the 1,200 additions
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert grown < 300, grown  # before: three tracked objects per entry in each mirror
    for store in (one, two):
        for item in added[::97]:
            ((found, similarity),) = store.search("p", item.vector, 1)
            assert similarity == pytest.approx(1.0, abs=1e-5)
            assert (found.entry_id, found.text, found.markers) == (
                item.entry_id,
                item.text,
                item.markers,
            )
            assert (found.created, found.expires, found.response) == (
                item.created,
                item.expires,
                item.response,
            )
            assert np.array_equal(found.vector, item.vector)
    assert two.purge_expired(100.5) == 100  # expiry read from the mirror's arrays
    assert len(one) == 1101 and one.stats().expired == 100


def test_an_answer_the_mirror_cannot_flatten_is_kept_as_the_object(shared):
    from aigw_lab.types import Latency

    store = RedisSemanticStore(shared, 10)
    item = entry("kept", [1.0, 0.0])
    item.response = ChatResponse(
        text="x",
        finish_reason="stop",
        usage=Usage(input_tokens=1, output_tokens=2),
        provider="mock",
        model="m1",
        latency=Latency(total_ms=3.0),
        raw={"id": "r"},
    )
    store.add(item)
    assert store._local.objects == {item.entry_id: item.response}  # noqa: SLF001
