"""SemanticCache's ``store=`` keyword (a store passed in is the one used, even empty; it may
not come with ``max_entries=``/``index_factory=``) and its bound: evictions are counted and
the first one logs a warning naming ``max_entries``, once per store."""

import logging

import pytest

from aigw_lab import ChatRequest, ChatResponse
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_cache import NumpyIndex, SemanticCache
from aigw_lab.gateway.semantic_store import MemorySemanticStore
from aigw_lab.types import Usage

EMBEDDER = HashingEmbedder(64)
REPLY = ChatResponse(
    text="stored",
    finish_reason="stop",
    usage=Usage(input_tokens=3, output_tokens=3),
    provider="mock",
    model="m1",
)


def add(cache, text):
    return cache.add(ChatRequest.create("m1", text), REPLY, provider="mock", model="m1")


def test_a_store_passed_in_is_used_even_when_empty():
    store = MemorySemanticStore(3)
    cache = SemanticCache(EMBEDDER, store=store)
    assert cache.store is store and cache.max_entries == 3
    add(cache, "what is the capital of France")
    assert len(store) == 1
    found = cache.lookup(
        ChatRequest.create("m1", "what is the capital of France"), provider="mock", model="m1"
    )
    assert found is not None and found.response.text == "stored"


@pytest.mark.parametrize(
    "kwargs", [{"max_entries": 5}, {"index_factory": lambda dim: NumpyIndex(dim)}]
)
def test_a_store_with_its_own_bound_or_index_refuses_them_again(kwargs):
    with pytest.raises(ConfigError, match="store="):
        SemanticCache(EMBEDDER, store=MemorySemanticStore(3), **kwargs)


def test_a_store_that_is_not_a_semantic_store_is_a_config_error():
    with pytest.raises(ConfigError, match="not a SemanticStore"):
        SemanticCache(EMBEDDER, store={"entries": []})


def test_the_default_bound_is_ten_thousand():
    cache = SemanticCache(EMBEDDER)
    assert cache.max_entries == 10_000 and cache.store.max_entries == 10_000


def test_evictions_are_counted_and_the_first_warns_once(caplog):
    cache = SemanticCache(EMBEDDER, max_entries=2)
    with caplog.at_level(logging.WARNING, logger="aigw_lab.semantic_cache"):
        add(cache, "first question")
        add(cache, "second question")
        assert cache.stats().evictions == 0 and not caplog.records
        add(cache, "third question")
        add(cache, "fourth question")
    assert cache.stats().evictions == 2 and len(cache) == 2
    (record,) = caplog.records
    assert "max_entries=2" in record.getMessage()
    assert record.levelno == logging.WARNING
