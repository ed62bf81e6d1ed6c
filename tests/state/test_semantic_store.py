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
