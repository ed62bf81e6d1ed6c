"""The semantic cache: hits above the threshold, partitions (namespace, model, parameters),
the number and negation guards, bypasses, TTL and LRU, persistence, streams, the rows it
leaves in the call log, and one test with the real all-MiniLM-L6-v2 model."""

import numpy as np
import pytest

from aigw_lab import ChatRequest, Gateway, Price
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.semantic_cache import (
    NumpyIndex,
    SemanticCache,
    conversation_text,
    same_meaning_markers,
)
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import ChatResponse, Usage

PRICE = Price(1.0, 2.0)
EMBEDDER = HashingEmbedder(256)

# Under the hashing double, these two differ only in case and punctuation (similarity ~0.95);
# the third shares no meaning with them.
QUESTION = "What is the capital of France?"
NEAR = "what is the capital of france"
OTHER = "How do I bake sourdough bread at home?"


class FakeClock:
    def __init__(self, now=1_000.0):
        self.now = now

    def __call__(self):
        return self.now


class Ticker:
    """A wall clock for the gateway that moves one second per read, so rows sort by time."""

    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        self.now += 1.0
        return self.now


def make_gateway(cache, *, log=None, provider=None, extra_middleware=()):
    provider = provider or MockProvider("mock", models=("m1", "m2"), default=None)
    gateway = Gateway(
        [provider],
        log=log,
        middleware=[*extra_middleware, cache],
        prices={"mock/m1": PRICE, "mock/m2": PRICE},
        clock=Ticker(),
    )
    return gateway, provider


def cosine(a, b):
    va, vb = EMBEDDER.embed([a, b])
    return float(va @ vb)


def answer(text, finish_reason="stop"):
    return ChatResponse(
        text=text,
        finish_reason=finish_reason,
        usage=Usage(input_tokens=10, output_tokens=5),
        provider="mock",
        model="m1",
    )


# --- hits and misses ------------------------------------------------------------------------


def test_a_similar_request_hits_and_is_logged_with_its_similarity(log):
    gw, mock = make_gateway(SemanticCache(EMBEDDER, threshold=0.9), log=log)
    mock.enqueue("Paris.")
    first = gw.chat("mock/m1", QUESTION)
    second = gw.chat("mock/m1", NEAR)
    assert (first.cache_status, second.cache_status) == ("miss", "hit")
    assert second.text == "Paris." and second.cost_usd == 0.0 and len(mock.requests) == 1
    df = log.query(
        "SELECT cache_status, attempt, cost_usd, cache_similarity FROM calls ORDER BY timestamp"
    )
    assert list(df.cache_status) == ["miss", "hit"] and list(df.attempt) == [1, 0]
    assert df.cost_usd[0] > 0 and df.cost_usd[1] == 0
    assert np.isnan(df.cache_similarity[0])
    assert df.cache_similarity[1] == pytest.approx(cosine(QUESTION, NEAR), abs=1e-6)


def test_the_threshold_decides(log):
    similarity = cosine(QUESTION, NEAR)
    for threshold, expected in ((similarity - 0.01, "hit"), (similarity + 0.01, "miss")):
        gw, mock = make_gateway(SemanticCache(EMBEDDER, threshold=threshold))
        mock.enqueue("Paris.", "Paris!")
        gw.chat("mock/m1", QUESTION)
        assert gw.chat("mock/m1", NEAR).cache_status == expected


def test_an_unrelated_request_misses_and_both_are_stored():
    cache = SemanticCache(EMBEDDER)
    gw, mock = make_gateway(cache)
    mock.enqueue("Paris.", "Flour, water, salt.")
    assert gw.chat("mock/m1", QUESTION).cache_status == "miss"
    bread = gw.chat("mock/m1", OTHER)
    assert bread.text == "Flour, water, salt." and bread.cost_usd > 0
    assert gw.chat("mock/m1", OTHER).cache_status == "hit"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 2)
    assert stats.saved_usd == pytest.approx(bread.cost_usd)  # what the hit did not pay


@pytest.mark.parametrize(
    "second",
    [
        {"tenant": "globex"},  # another namespace
        {"model": "mock/m2"},  # another model
        {"max_tokens": 5},  # another generation parameter
        {"system": "Answer in French."},  # another conversation: the system prompt counts
    ],
)
def test_requests_of_another_partition_or_conversation_miss(second):
    gw, mock = make_gateway(SemanticCache(EMBEDDER, threshold=0.9))
    mock.enqueue("Paris.", "other")
    gw.chat("mock/m1", QUESTION, tenant="acme")
    kwargs = {"tenant": "acme", **second}
    model = kwargs.pop("model", "mock/m1")
    assert gw.chat(model, NEAR, **kwargs).cache_status == "miss"
    assert len(mock.requests) == 2


def test_users_of_one_tenant_share_answers():
    gw, mock = make_gateway(SemanticCache(EMBEDDER, threshold=0.9))
    mock.enqueue("Paris.")
    gw.chat("mock/m1", QUESTION, tenant="acme", user="u1")
    assert gw.chat("mock/m1", NEAR, tenant="acme", user="u2").cache_status == "hit"


# --- guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored, query, guard",
    [
        ("What is 17 times 23 in total?", "What is 17 times 24 in total?", "guard_numbers"),
        ("Convert two miles to kilometres", "Convert three miles to kilometres", "guard_numbers"),
        ("Is Python a slow language?", "Is Python not a slow language?", "guard_negation"),
        ("Why does my code work?", "Why doesn't my code work?", "guard_negation"),
    ],
)
def test_guards_refuse_similar_requests_that_mean_something_else(stored, query, guard):
    threshold = cosine(stored, query) - 0.01  # similar enough to hit without the guard
    guarded = SemanticCache(EMBEDDER, threshold=threshold)
    unguarded = SemanticCache(EMBEDDER, threshold=threshold, **{guard: False})
    for cache, expected in ((guarded, "miss"), (unguarded, "hit")):
        gw, mock = make_gateway(cache)
        mock.enqueue("first", "second")
        gw.chat("mock/m1", stored)
        assert gw.chat("mock/m1", query).cache_status == expected
    assert guarded.stats().guarded == 1 and unguarded.stats().guarded == 0


def test_a_guarded_best_match_gives_way_to_the_next_one_that_passes():
    best, second, query = (
        "Is 17 a prime number?",
        "Tell me if 18 is a prime",
        "Is 18 a prime number?",
    )
    assert cosine(query, best) > cosine(query, second) > 0.3  # the guard must skip the best
    cache = SemanticCache(EMBEDDER, threshold=0.3)
    for text in (best, second):
        cache.add(ChatRequest.create("m1", text), answer(text), provider="mock", model="m1")
    match = cache.lookup(ChatRequest.create("m1", query), provider="mock", model="m1")
    assert match.text == second and match.similarity == pytest.approx(cosine(query, second))


def test_markers_normalise_numbers_and_count_negations():
    assert same_meaning_markers("Is 1,000 more than two hundred?") == (("100", "1000", "2"), 0)
    assert same_meaning_markers("I don't know, it isn’t without cause")[1] == 3
    assert same_meaning_markers("Which one is better?") == ((), 0)  # "one" is not a number
    assert same_meaning_markers("Knot notation") == ((), 0)  # whole words only


# --- bypasses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"temperature": 0.7}, "allow_sampled"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "allow_tools"),
    ],
)
def test_sampled_and_tool_requests_bypass_unless_allowed(kwargs, flag):
    for cache, first, second in (
        (SemanticCache(EMBEDDER), "bypass", "bypass"),
        (SemanticCache(EMBEDDER, **{flag: True}), "miss", "hit"),
    ):
        gw, mock = make_gateway(cache)
        mock.enqueue("a", "b")
        statuses = [gw.chat("mock/m1", q, **kwargs).cache_status for q in (QUESTION, NEAR)]
        assert statuses == [first, second]


def test_temperature_zero_is_cached():
    gw, mock = make_gateway(SemanticCache(EMBEDDER))
    mock.enqueue("Paris.")
    gw.chat("mock/m1", QUESTION, temperature=0)
    assert gw.chat("mock/m1", NEAR, temperature=0.0).cache_status == "hit"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"metadata": {"cache": {"skip": True}}},
        {"metadata": {"cache": {"key": "faq-1"}}},
    ],
)
def test_skip_and_custom_keys_bypass(request_kwargs):
    cache = SemanticCache(EMBEDDER)
    gw, mock = make_gateway(cache)
    mock.enqueue("a", "b")
    gw.chat("mock/m1", QUESTION, **request_kwargs)
    assert gw.chat("mock/m1", QUESTION, **request_kwargs).cache_status == "bypass"
    assert len(cache) == 0 and cache.stats().bypasses == 2


def test_images_bypass():
    gw, mock = make_gateway(SemanticCache(EMBEDDER))
    mock.enqueue("a cat", "a dog")
    for url in ("https://x/cat.png", "https://x/dog.png"):
        content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "url": url}]
        reply = gw.chat("mock/m1", [{"role": "user", "content": content}])
        assert reply.cache_status == "bypass"


def test_errors_and_incomplete_answers_are_not_stored():
    cache = SemanticCache(EMBEDDER)
    gw, mock = make_gateway(cache)
    mock.enqueue(
        answer("cut", "length"), answer("bad", "error"), answer("blocked", "content_filter")
    )
    for _ in range(3):
        assert gw.chat("mock/m1", QUESTION).cache_status == "miss"
    assert len(cache) == 0


# --- TTL, LRU, persistence ------------------------------------------------------------------


def test_ttl_expires_entries_and_a_request_ttl_wins():
    clock = FakeClock()
    cache = SemanticCache(EMBEDDER, ttl=100, clock=clock)
    gw, mock = make_gateway(cache)
    mock.enqueue("a", "b", "c")
    gw.chat("mock/m1", QUESTION)
    gw.chat("mock/m1", OTHER, metadata={"cache": {"ttl": 500}})
    clock.now += 101
    assert gw.chat("mock/m1", NEAR).cache_status == "miss"  # expired, replaced by "b"
    assert gw.chat("mock/m1", OTHER).cache_status == "hit"
    assert cache.stats().expired == 1
    clock.now += 1000
    assert cache.purge_expired() == 2 and len(cache) == 0


def test_least_recently_used_entries_are_evicted():
    cache = SemanticCache(EMBEDDER, max_entries=2)
    gw, mock = make_gateway(cache)
    mock.enqueue("capital", "bread", "weather")
    gw.chat("mock/m1", QUESTION)
    gw.chat("mock/m1", OTHER)
    gw.chat("mock/m1", NEAR)  # a hit: the capital entry is now the most recent
    gw.chat("mock/m1", "Will it rain tomorrow in Oslo?")  # evicts the bread entry
    assert cache.stats().evictions == 1 and len(cache) == 2
    assert cache.lookup(ChatRequest.create("m1", QUESTION), provider="mock", model="m1")
    assert cache.lookup(ChatRequest.create("m1", OTHER), provider="mock", model="m1") is None


def test_save_and_load_across_sessions(tmp_path):
    clock = FakeClock()
    cache = SemanticCache(EMBEDDER, clock=clock)
    calls = ({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},)
    stored = ChatResponse(
        text="Paris.",
        finish_reason="stop",
        usage=Usage(
            input_tokens=10,
            output_tokens=5,
            cache_read_tokens=2,
            cache_write_tokens=1,
            reasoning_tokens=3,
        ),
        provider="mock",
        model="m1",
        cost_usd=0.25,
        tool_calls=calls,
    )
    cache.add(
        ChatRequest.create("m1", QUESTION, tenant="acme"), stored, provider="mock", model="m1"
    )
    cache.add(
        ChatRequest.create("m1", OTHER, metadata={"cache": {"ttl": 1}}),
        answer("bread"),
        provider="mock",
        model="m1",
    )
    folder = cache.save(tmp_path / "semantic")

    clock.now += 10  # neither entry has a TTL: both survive
    fresh = SemanticCache(EMBEDDER, clock=clock)
    assert fresh.load(folder) == 2
    match = fresh.lookup(ChatRequest.create("m1", NEAR, tenant="acme"), provider="mock", model="m1")
    assert match.response.text == "Paris." and match.text == QUESTION
    assert match.response.usage == stored.usage and match.response.tool_calls == calls
    assert match.response.cost_usd == 0.25
    assert fresh.lookup(ChatRequest.create("m1", NEAR), provider="mock", model="m1") is None

    with pytest.raises(ConfigError, match="saved with embedder"):
        SemanticCache(HashingEmbedder(128)).load(folder)
    with pytest.raises(StoreError, match="cannot load"):
        fresh.load(tmp_path / "nowhere")


def test_expired_entries_are_not_loaded(tmp_path):
    clock = FakeClock()
    cache = SemanticCache(EMBEDDER, ttl=60, clock=clock)
    cache.add(ChatRequest.create("m1", QUESTION), answer("a"), provider="mock", model="m1")
    folder = cache.save(tmp_path / "s")
    clock.now += 61
    assert SemanticCache(EMBEDDER, clock=clock).load(folder) == 0


# --- streams and asyncio --------------------------------------------------------------------


def test_a_completed_stream_is_stored_and_a_hit_replays_as_a_stream(log):
    gw, mock = make_gateway(SemanticCache(EMBEDDER), log=log)
    mock.enqueue("Paris is the capital.")
    with gw.stream("mock/m1", QUESTION) as first:
        assert "".join(first) == "Paris is the capital."
    with gw.stream("mock/m1", NEAR) as second:
        pieces = list(second)
    assert pieces == ["Paris ", "is ", "the ", "capital."]
    assert second.response.cache_status == "hit"
    df = log.query("SELECT cache_status, stream, cache_similarity FROM calls ORDER BY timestamp")
    assert list(df.cache_status) == ["miss", "hit"] and list(df.stream) == [True, True]
    assert df.cache_similarity[1] == pytest.approx(cosine(QUESTION, NEAR), abs=1e-6)


def test_an_abandoned_stream_is_not_stored():
    cache = SemanticCache(EMBEDDER)
    gw, mock = make_gateway(cache)
    mock.enqueue("alpha beta gamma")
    with gw.stream("mock/m1", QUESTION) as stream:
        assert next(iter(stream)) == "alpha "
    assert len(cache) == 0


async def test_async_chat_and_stream_miss_then_hit():
    gw, mock = make_gateway(SemanticCache(EMBEDDER))
    mock.enqueue("one two", "three four")
    assert (await gw.achat("mock/m1", QUESTION)).cache_status == "miss"
    assert (await gw.achat("mock/m1", NEAR)).text == "one two"
    assert [t async for t in gw.astream("mock/m1", OTHER)] == ["three ", "four"]
    assert [t async for t in gw.astream("mock/m1", OTHER.lower())] == ["three ", "four"]
    assert len(mock.requests) == 2


def test_with_an_exact_cache_first_an_exact_repeat_never_reaches_the_semantic_cache(log):
    semantic = SemanticCache(EMBEDDER)
    gw, mock = make_gateway(semantic, log=log, extra_middleware=[ExactCache()])
    assert gw.pipeline[:2] == ["cache", "cache"]
    mock.enqueue("Paris.")
    gw.chat("mock/m1", QUESTION)
    gw.chat("mock/m1", QUESTION)  # exact hit
    gw.chat("mock/m1", NEAR)  # exact miss, semantic hit
    df = log.query("SELECT cache_status, cache_similarity FROM calls ORDER BY timestamp")
    assert list(df.cache_status) == ["miss", "hit", "hit"]
    assert np.isnan(df.cache_similarity[1]) and df.cache_similarity[2] > 0.9
    assert semantic.stats().hits == 1 and len(mock.requests) == 1


# --- pieces ---------------------------------------------------------------------------------


def test_conversation_text_carries_every_message_with_its_role():
    single = ChatRequest.create("m1", QUESTION)
    assert conversation_text(single) == QUESTION
    chat = ChatRequest.create(
        "m1",
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "x"},
        ],
        system="Be brief.",
    )
    assert conversation_text(chat) == "system: Be brief.\nuser: hi\nassistant: hello\nuser: x"


def test_numpy_index_matches_brute_force_through_adds_and_removes():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(100, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = NumpyIndex(16)
    for i, v in enumerate(vectors):
        index.add(i, v)
    removed = set(range(0, 100, 3))
    for i in removed:
        index.remove(i)
    live = [i for i in range(100) if i not in removed]
    query = vectors[5]
    expected = sorted(live, key=lambda i: -float(vectors[i] @ query))[:5]
    found = index.search(query, 5)
    assert [i for i, _ in found] == expected and len(index) == len(live)
    assert found[0][1] == pytest.approx(1.0)


def test_hashing_embedder_is_deterministic_and_normalised():
    a = HashingEmbedder(64).embed(["abc", "", "abc"])
    assert a.shape == (3, 64) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a[[0, 2]], axis=1), 1.0) and not a[1].any()
    assert np.array_equal(a[0], HashingEmbedder(64).embed(["abc"])[0])


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0}, {"threshold": 1.5}, {"max_entries": 0}, {"top_k": 0}, {"ttl": -1}],
)
def test_bad_settings_are_clear_errors(kwargs):
    with pytest.raises(ConfigError):
        SemanticCache(EMBEDDER, **kwargs)
    with pytest.raises(ConfigError, match="not an Embedder"):
        SemanticCache(object())


# --- the real model -------------------------------------------------------------------------


# `minilm`: the session-wide real model (tests/conftest.py).


def test_real_model_hits_paraphrases_and_guards_hold_on_real_sentences(minilm):
    cache = SemanticCache(minilm, threshold=0.85)
    gw, mock = make_gateway(cache)
    stored = [
        "How do I reverse a list in Python?",
        "What is the boiling point of water at sea level?",
        "Is it safe to eat raw chicken?",
        "Convert 10 miles to kilometres",
    ]
    mock.enqueue(*(f"answer {i}" for i in range(len(stored))))
    for text in stored:
        gw.chat("mock/m1", text)
    paraphrase = gw.chat("mock/m1", "How can I reverse a Python list?")
    assert paraphrase.cache_status == "hit" and paraphrase.text == "answer 0"
    assert gw.chat("mock/m1", "At sea level, what's water's boiling point?").text == "answer 1"

    mock.enqueue("fresh 1", "fresh 2", "fresh 3")
    for query in ("Is it not safe to eat raw chicken?", "Convert 12 miles to kilometres"):
        request = ChatRequest.create("m1", query)
        unguarded = SemanticCache(minilm, threshold=0.85, guard_numbers=False, guard_negation=False)
        for text, reply in zip(stored, range(len(stored)), strict=True):
            unguarded.add(
                ChatRequest.create("m1", text), answer(str(reply)), provider="mock", model="m1"
            )
        assert unguarded.lookup(request, provider="mock", model="m1") is not None  # a false hit
        assert gw.chat("mock/m1", query).cache_status == "miss"  # ... that the guard stops
    assert gw.chat("mock/m1", "What is the tallest mountain on Earth?").cache_status == "miss"
