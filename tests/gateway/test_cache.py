"""The exact cache: its key, TTLs and per-request options, both stores, streams, coalescing of
identical calls in flight (threads and asyncio), and the rows it leaves in the call log."""

import asyncio
import threading
import time
from dataclasses import replace
from types import MappingProxyType

import pytest

from aigw_lab import ChatRequest, Gateway, Price
from aigw_lab.errors import ConfigError, InvalidRequestError, ProviderServerError, StoreError
from aigw_lab.gateway.cache import CacheStats, CacheWarning, ExactCache, cache_key, namespace_for
from aigw_lab.gateway.cache_stores import CacheStore, DuckDBStore, MemoryStore, entry_size
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from aigw_lab.types import ChatResponse, TextDelta, Usage

PRICE = Price(1.0, 2.0)


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self, now=1_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Ticker:
    """A wall clock for the gateway that moves one second per read, so rows sort by time."""

    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        self.now += 1.0
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def make_gateway(log, provider, cache, wall=None):
    return Gateway(
        [provider],
        log=log,
        middleware=[cache],
        prices={"mock/m1": PRICE},
        clock=wall or Ticker(),
    )


def rows(log):
    return log.query(
        "SELECT cache_status, attempt, cost_usd, status, stream, response_text, error_type "
        "FROM calls ORDER BY timestamp, attempt"
    )


def status_counts(log):
    df = log.query("SELECT cache_status, status, count(*) AS n FROM calls GROUP BY ALL")
    return {(r.cache_status, r.status): r.n for r in df.itertuples()}


def answer(text, **kw):
    kw.setdefault("usage", Usage(input_tokens=10, output_tokens=5))
    return ChatResponse(
        text=text, finish_reason=kw.pop("finish_reason", "stop"), provider="mock", model="m1", **kw
    )


# --- the key --------------------------------------------------------------------------------

BASE = ChatRequest.create(
    "m1",
    [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ],
    system="Be brief.",
    temperature=0.5,
    top_p=0.9,
    max_tokens=100,
    stop=["END"],
    seed=7,
    tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    tool_choice="auto",
    extra={"top_k": 40, "response_format": {"type": "text"}},
)


def key_of(request, provider="mock", model="m1", custom_key=None):
    return cache_key(request, provider=provider, model=model, custom_key=custom_key)


def with_message(index, **changes):
    messages = list(BASE.messages)
    messages[index] = replace(messages[index], **changes)
    return replace(BASE, messages=tuple(messages))


def parts(*items):
    return ChatRequest.create("m1", [{"role": "user", "content": list(items)}]).messages[0].content


OUTPUT_CHANGING = {
    "user text": with_message(1, content=parts({"type": "text", "text": "what is that?"})),
    "an image part": with_message(
        1,
        content=parts(
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
        ),
    ),
    "plain vs multi-part": with_message(1, content="what is this?"),
    "system prompt": with_message(0, content="Be verbose."),
    "assistant tool call": with_message(
        2,
        tool_calls=(
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        ),
    ),
    "tool result": with_message(3, content="43"),
    "tool call id": with_message(3, tool_call_id="c2"),
    "message name": with_message(1, name="alice"),
    "temperature": replace(BASE, temperature=0.6),
    "top_p": replace(BASE, top_p=0.8),
    "max_tokens": replace(BASE, max_tokens=101),
    "stop": replace(BASE, stop=("STOP",)),
    "seed": replace(BASE, seed=8),
    "tools": replace(
        BASE, tools=({"type": "function", "function": {"name": "g", "parameters": {}}},)
    ),
    "tool_choice": replace(BASE, tool_choice="required"),
    "extra value": replace(BASE, extra={"top_k": 41, "response_format": {"type": "text"}}),
    "nested extra value": replace(
        BASE, extra={"top_k": 40, "response_format": {"type": "json_object"}}
    ),
    "extra added": replace(BASE, extra={**BASE.extra, "repetition_penalty": 1.1}),
    "tenant": replace(BASE, tenant="acme"),
    "user": replace(BASE, user="u1"),
}


def test_every_output_changing_field_changes_the_key():
    keys = {name: key_of(request) for name, request in OUTPUT_CHANGING.items()}
    keys["base"] = key_of(BASE)
    keys["other model"] = key_of(BASE, model="m2")
    keys["other provider"] = key_of(BASE, provider="other")
    assert len(set(keys.values())) == len(keys), "two different requests share a key"
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys.values())


@pytest.mark.parametrize(
    "changed",
    [
        replace(BASE, tags={"team": "x"}),
        replace(BASE, metadata={"trace": "abc"}),
        replace(BASE, experiment_id="exp-2"),
        replace(BASE, timeout=3.0),
        replace(BASE, model="mock/m1"),  # the address form: the resolved target is what counts
        replace(BASE, extra={"response_format": {"type": "text"}, "top_k": 40}),  # key order
        replace(BASE, extra=MappingProxyType({"top_k": 40, "response_format": {"type": "text"}})),
    ],
)
def test_fields_that_do_not_change_the_output_keep_the_key(changed):
    assert key_of(changed) == key_of(BASE)


def test_an_integral_temperature_is_the_same_request_as_its_float():
    assert key_of(replace(BASE, temperature=0)) == key_of(replace(BASE, temperature=0.0))


def test_namespace_is_the_tenant_else_the_user_else_shared():
    assert namespace_for(replace(BASE, tenant="acme", user="u1")) == "tenant:acme"
    assert namespace_for(replace(BASE, user="u1")) == "user:u1"
    assert namespace_for(BASE) == "shared"
    # Users of one tenant share its answers; a user id equal to a tenant id does not.
    assert key_of(replace(BASE, tenant="acme", user="u1")) == key_of(
        replace(BASE, tenant="acme", user="u2")
    )
    assert key_of(replace(BASE, tenant="acme")) != key_of(replace(BASE, user="acme"))


def test_a_custom_key_replaces_the_request_but_keeps_namespace_and_target():
    other = ChatRequest.create("m1", "something else entirely")
    assert key_of(BASE, custom_key="faq") == key_of(other, custom_key="faq")
    assert key_of(BASE, custom_key="faq") != key_of(BASE)
    assert key_of(BASE, custom_key="faq") != key_of(BASE, custom_key="faq-2")
    assert key_of(BASE, custom_key="faq") != key_of(replace(BASE, tenant="t"), custom_key="faq")
    assert key_of(BASE, custom_key="faq") != key_of(BASE, model="m2", custom_key="faq")


# --- through the gateway ----------------------------------------------------------------------


def test_a_miss_then_a_hit_are_logged_with_their_cache_status(log):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer("four", response_id="r1"))
    cache = ExactCache(MemoryStore())
    gw = make_gateway(log, mock, cache)
    first = gw.chat("mock/m1", "2+2?", temperature=0)
    second = gw.chat("mock/m1", "2+2?", temperature=0)
    assert len(mock.requests) == 1
    assert (first.cache_status, second.cache_status) == ("miss", "hit")
    assert (
        second.text == "four"
        and second.response_id == "r1"
        and second.usage == Usage(input_tokens=10, output_tokens=5)
    )
    assert second.cost_usd == 0.0 and first.cost_usd == pytest.approx((10 * 1 + 5 * 2) / 1e6)
    df = rows(log)
    assert list(df.cache_status) == ["miss", "hit"]
    assert list(df.attempt) == [1, 0]
    assert df.cost_usd.iloc[1] == 0.0 and list(df.status) == ["ok", "ok"]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)
    assert stats.saved_usd == pytest.approx(first.cost_usd) and stats.hit_rate == 0.5


def test_tenants_never_see_each_others_answers(log):
    fn = FunctionProvider(lambda r: f"for {r.tenant}", name="mock", models=("m1",))
    gw = make_gateway(log, fn, ExactCache())
    assert gw.chat("mock/m1", "q", tenant="a").text == "for a"
    assert gw.chat("mock/m1", "q", tenant="b").text == "for b"
    assert gw.chat("mock/m1", "q", tenant="a").text == "for a"
    assert len(fn.requests) == 2
    assert list(rows(log).cache_status) == ["miss", "miss", "hit"]


def test_skip_bypasses_the_cache_both_ways(log):
    mock = MockProvider("mock", models=("m1",)).enqueue("fresh", "stored")
    cache = ExactCache()
    gw = make_gateway(log, mock, cache)
    assert gw.chat("mock/m1", "q", metadata={"cache": {"skip": True}}).text == "fresh"
    assert gw.chat("mock/m1", "q").text == "stored"  # the skipped answer was not stored
    assert gw.chat("mock/m1", "q").text == "stored"
    assert gw.chat("mock/m1", "q", metadata={"cache": {"skip": False}}).text == "stored"
    assert list(rows(log).cache_status) == ["bypass", "miss", "hit", "hit"]
    assert cache.stats().bypasses == 1


def test_a_custom_key_shares_one_answer_between_different_prompts(log):
    mock = MockProvider("mock", models=("m1",)).enqueue("the answer")
    gw = make_gateway(log, mock, ExactCache())
    opts = {"cache": {"key": "faq-42"}}
    assert gw.chat("mock/m1", "How do I reset?", metadata=opts).text == "the answer"
    assert gw.chat("mock/m1", "how to reset", metadata=opts).text == "the answer"
    assert len(mock.requests) == 1


@pytest.mark.parametrize(
    ("cache_kwargs", "metadata", "lives", "dies"),
    [
        ({"ttl": 60}, {}, 59, 61),
        ({"ttl": 60, "model_ttls": {"mock/m1": 600}}, {}, 599, 601),
        ({"ttl": 60, "model_ttls": {"mock/m2": 600}}, {}, 59, 61),  # another model's TTL
        ({"ttl": 60, "model_ttls": {"mock/m1": 600}}, {"cache": {"ttl": 5}}, 4, 6),
        ({}, {"cache": {"ttl": 5}}, 4, 6),
    ],
)
def test_ttl_per_cache_per_model_and_per_request(log, clock, cache_kwargs, metadata, lives, dies):
    mock = MockProvider("mock", models=("m1",)).enqueue("one", "two")
    gw = make_gateway(log, mock, ExactCache(MemoryStore(clock=clock), **cache_kwargs))
    assert gw.chat("mock/m1", "q", metadata=metadata).text == "one"
    clock.advance(lives)
    assert gw.chat("mock/m1", "q", metadata=metadata).text == "one"
    clock.advance(dies - lives)
    assert gw.chat("mock/m1", "q", metadata=metadata).text == "two"
    assert list(rows(log).cache_status) == ["miss", "hit", "miss"]


def test_without_a_ttl_answers_do_not_expire(log, clock):
    gw = make_gateway(
        log, MockProvider("mock", models=("m1",)), ExactCache(MemoryStore(clock=clock))
    )
    gw.chat("mock/m1", "q")
    clock.advance(10 * 365 * 86400)
    assert gw.chat("mock/m1", "q").cache_status == "hit"


def test_errors_and_error_answers_are_not_cached(log):
    mock = MockProvider("mock", models=("m1",)).enqueue(
        ProviderServerError("boom", provider="mock", model="m1", status=500),
        answer("half an ans", finish_reason="error"),
        "good",
    )
    gw = make_gateway(log, mock, ExactCache())
    with pytest.raises(ProviderServerError):
        gw.chat("mock/m1", "q")
    assert gw.chat("mock/m1", "q").finish_reason == "error"
    assert gw.chat("mock/m1", "q").text == "good"
    assert gw.chat("mock/m1", "q").text == "good"
    assert len(mock.requests) == 3
    df = rows(log)
    assert list(df.cache_status) == ["miss", "miss", "miss", "hit"]
    assert list(df.status) == ["error", "ok", "ok", "ok"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ("skip", "not a table of cache options"),
        ({"skpi": True}, "unknown cache option 'skpi'"),
        ({"skip": "yes"}, "skip"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"key": ""}, "key"),
    ],
)
def test_malformed_cache_options_are_a_clear_error(log, options, fragment):
    mock = MockProvider("mock", models=("m1",))
    gw = make_gateway(log, mock, ExactCache())
    with pytest.raises(InvalidRequestError) as info:
        gw.chat("mock/m1", "q", metadata={"cache": options})
    assert fragment in str(info.value)
    assert mock.requests == []


class FailingStore(MemoryStore):
    def get(self, key):
        raise StoreError("the disk is gone")

    def set(self, key, response, ttl):
        raise StoreError("the disk is gone")


def test_a_failing_store_warns_and_the_call_still_succeeds(log):
    gw = make_gateway(log, MockProvider("mock", models=("m1",)), ExactCache(FailingStore()))
    with pytest.warns(CacheWarning, match="the disk is gone"):
        assert gw.chat("mock/m1", "q").text == "ok"
    assert list(rows(log).status) == ["ok"]


# --- streams ----------------------------------------------------------------------------------


def test_a_completed_stream_is_cached_and_a_hit_replays_as_a_stream(log):
    mock = MockProvider("mock", models=("m1",)).enqueue(answer("alpha beta\n gamma"))
    gw = make_gateway(log, mock, ExactCache())
    with gw.stream("mock/m1", "q") as first:
        assert "".join(first) == "alpha beta\n gamma"
    with gw.stream("mock/m1", "q") as second:
        pieces = list(second)
    assert pieces == ["alpha ", "beta\n ", "gamma"]
    assert second.response.cache_status == "hit" and second.response.text == "alpha beta\n gamma"
    assert gw.chat("mock/m1", "q").cache_status == "hit"  # streamed or not, the same answer
    assert len(mock.requests) == 1
    df = rows(log)
    assert list(df.cache_status) == ["miss", "hit", "hit"]
    assert list(df.stream) == [True, True, False]
    assert list(df.attempt) == [1, 0, 0]


def test_a_chat_answer_is_replayed_to_a_stream_with_tool_calls(log):
    calls = ({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},)
    mock = MockProvider("mock", models=("m1",)).enqueue(
        answer("", finish_reason="tool_calls", tool_calls=calls)
    )
    gw = make_gateway(log, mock, ExactCache())
    gw.chat("mock/m1", "q")
    with gw.stream("mock/m1", "q") as stream:
        assert list(stream) == []
    assert stream.response.cache_status == "hit" and stream.response.tool_calls == calls


def test_an_abandoned_stream_is_not_cached(log):
    mock = MockProvider("mock", models=("m1",)).enqueue("alpha beta gamma", "again")
    gw = make_gateway(log, mock, ExactCache())
    with gw.stream("mock/m1", "q") as stream:
        assert next(iter(stream)) == "alpha "
    assert gw.chat("mock/m1", "q").text == "again"
    df = rows(log)
    assert list(df.status) == ["cancelled", "ok"] and list(df.cache_status) == ["miss", "miss"]


class BrokenStreamProvider(MockProvider):
    def stream(self, request):
        self.requests.append(request)
        yield TextDelta("partial ")
        raise ProviderServerError("cut", provider="mock", model="m1")


def test_an_interrupted_stream_is_not_cached(log):
    provider = BrokenStreamProvider("mock", models=("m1",))
    cache = ExactCache()
    gw = make_gateway(log, provider, cache)
    for _ in range(2):
        with pytest.raises(ProviderServerError):
            list(gw.stream("mock/m1", "q"))
    assert len(provider.requests) == 2 and cache.stats().entries == 0


# --- asyncio ----------------------------------------------------------------------------------


async def test_async_chat_and_stream_miss_then_hit(log):
    mock = MockProvider("mock", models=("m1",)).enqueue("one two", "three four")
    gw = make_gateway(log, mock, ExactCache())
    assert (await gw.achat("mock/m1", "a")).cache_status == "miss"
    assert (await gw.achat("mock/m1", "a")).text == "one two"
    first = gw.astream("mock/m1", "b")
    assert [t async for t in first] == ["three ", "four"]
    second = gw.astream("mock/m1", "b")
    assert [t async for t in second] == ["three ", "four"]
    assert second.response.cache_status == "hit"
    assert len(mock.requests) == 2
    assert list(rows(log).cache_status) == ["miss", "hit", "miss", "hit"]


# --- coalescing identical calls in flight -----------------------------------------------------


def wait_for(condition, what):
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.001)


def run_threads(count, target):
    results, errors = [None] * count, [None] * count

    def worker(i):
        try:
            results[i] = target()
        except Exception as exc:
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    return threads, results, errors


def test_identical_calls_from_threads_share_one_upstream_call(log):
    release = threading.Event()

    def blocked(request):
        assert release.wait(10), "never released"
        return "shared answer"

    fn = FunctionProvider(blocked, name="mock", models=("m1",))
    cache = ExactCache()
    gw = make_gateway(log, fn, cache)
    threads, results, errors = run_threads(20, lambda: gw.chat("mock/m1", "same"))
    wait_for(lambda: cache.stats().waiting == 19, "19 waiting callers")
    assert cache.stats().in_flight == 1
    release.set()
    for t in threads:
        t.join()
    assert errors == [None] * 20
    assert len(fn.requests) == 1
    assert {r.text for r in results} == {"shared answer"}
    stats = cache.stats()
    assert (stats.misses, stats.coalesced, stats.hits, stats.in_flight) == (1, 19, 0, 0)
    assert status_counts(log) == {("miss", "ok"): 1, ("hit", "ok"): 19}


def test_when_the_leader_fails_one_waiter_retries_for_the_rest(log):
    release = threading.Event()
    calls = []

    def first_fails(request):
        calls.append(request)
        if len(calls) == 1:
            assert release.wait(10), "never released"
            raise ProviderServerError("boom", provider="mock", model="m1", status=500)
        return "second try"

    fn = FunctionProvider(first_fails, name="mock", models=("m1",))
    cache = ExactCache()
    gw = make_gateway(log, fn, cache)
    threads, results, errors = run_threads(5, lambda: gw.chat("mock/m1", "same"))
    wait_for(lambda: cache.stats().waiting == 4, "4 waiting callers")
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 2
    assert sum(isinstance(e, ProviderServerError) for e in errors) == 1
    assert sorted(r.text for r in results if r is not None) == ["second try"] * 4
    assert status_counts(log) == {("miss", "error"): 1, ("miss", "ok"): 1, ("hit", "ok"): 3}


def test_streams_wait_for_a_chat_call_in_flight_but_never_lead_one(log):
    release = threading.Event()

    def blocked(request):
        assert release.wait(10), "never released"
        return "answered once"

    fn = FunctionProvider(blocked, name="mock", models=("m1",))
    cache = ExactCache()
    gw = make_gateway(log, fn, cache)
    leader, leader_results, _ = run_threads(1, lambda: gw.chat("mock/m1", "same").text)
    wait_for(lambda: cache.stats().in_flight == 1, "the leading chat call")
    followers, results, errors = run_threads(3, lambda: "".join(gw.stream("mock/m1", "same")))
    wait_for(lambda: cache.stats().waiting == 3, "3 waiting streams")
    release.set()
    for t in leader + followers:
        t.join()
    assert leader_results == ["answered once"] and results == ["answered once"] * 3
    assert len(fn.requests) == 1


def test_an_unread_stream_does_not_make_an_identical_call_wait(log):
    mock = MockProvider("mock", models=("m1",)).enqueue("streamed answer", "chat answer")
    gw = make_gateway(log, mock, ExactCache())
    stream = iter(gw.stream("mock/m1", "same"))
    assert next(stream) == "streamed "
    # The stream is suspended in this very thread: waiting on it would never end.
    assert gw.chat("mock/m1", "same").text == "chat answer"
    assert "".join(stream) == "answer"
    assert len(mock.requests) == 2


def test_without_coalescing_identical_calls_each_go_upstream(log):
    both_in_flight = threading.Barrier(2, timeout=10)

    def together(request):
        both_in_flight.wait()  # breaks (and the test fails) unless both calls reach here
        return "x"

    fn = FunctionProvider(together, name="mock", models=("m1",))
    gw = make_gateway(log, fn, ExactCache(coalesce=False))
    threads, results, errors = run_threads(2, lambda: gw.chat("mock/m1", "same"))
    for t in threads:
        t.join()
    assert errors == [None, None] and len(fn.requests) == 2


class GatedProvider(MockProvider):
    """Answers async calls only once its gate opens; the first reply may be an error."""

    def __init__(self, *replies):
        super().__init__("mock", models=("m1",))
        self.enqueue(*replies)
        self.gate = asyncio.Event()

    async def achat(self, request):
        await self.gate.wait()
        return self._respond(request)


async def settle(condition, what):
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"gave up waiting for {what}")


async def test_identical_asyncio_calls_share_one_upstream_call(log):
    provider = GatedProvider("shared answer")
    cache = ExactCache()
    gw = make_gateway(log, provider, cache)
    calls = asyncio.gather(*(gw.achat("mock/m1", "same") for _ in range(20)))
    await settle(lambda: cache.stats().waiting == 19, "19 waiting tasks")
    provider.gate.set()
    results = await calls
    assert {r.text for r in results} == {"shared answer"}
    assert len(provider.requests) == 1
    assert (cache.stats().coalesced, cache.stats().misses) == (19, 1)
    assert status_counts(log) == {("miss", "ok"): 1, ("hit", "ok"): 19}


async def test_when_an_asyncio_leader_fails_one_waiter_retries(log):
    provider = GatedProvider(ProviderServerError("boom", provider="mock", model="m1"), "later")
    cache = ExactCache()
    gw = make_gateway(log, provider, cache)
    calls = asyncio.gather(*(gw.achat("mock/m1", "same") for _ in range(5)), return_exceptions=True)
    await settle(lambda: cache.stats().waiting == 4, "4 waiting tasks")
    provider.gate.set()
    results = await calls
    assert sum(isinstance(r, ProviderServerError) for r in results) == 1
    assert [r.text for r in results if isinstance(r, ChatResponse)] == ["later"] * 4
    assert len(provider.requests) == 2


async def test_a_cancelled_waiter_does_not_cancel_the_shared_call(log):
    provider = GatedProvider("answer")
    cache = ExactCache()
    gw = make_gateway(log, provider, cache)
    leader = asyncio.create_task(gw.achat("mock/m1", "same"))
    waiter = asyncio.create_task(gw.achat("mock/m1", "same"))
    await settle(lambda: cache.stats().waiting == 1, "the waiting task")
    waiter.cancel()
    provider.gate.set()
    assert (await leader).text == "answer"
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert cache.stats().waiting == 0


# --- the memory store -------------------------------------------------------------------------


def test_memory_store_evicts_least_recently_used_to_stay_within_bytes(clock):
    one = entry_size("a", answer("x" * 100))
    store = MemoryStore(max_bytes=2 * one + 10, clock=clock)
    store.set("a", answer("x" * 100), None)
    store.set("b", answer("y" * 100), None)
    assert store.get("a").text == "x" * 100  # "a" is now the most recently used
    store.set("c", answer("z" * 100), None)
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    stats = store.stats()
    assert (stats.entries, stats.evictions, stats.bytes) == (2, 1, 2 * one)


def test_memory_store_counts_bytes_of_non_ascii_text_and_skips_oversized_entries():
    assert entry_size("k", answer("é" * 10)) == entry_size("k", answer("e" * 20))
    store = MemoryStore(max_bytes=1000)
    store.set("small", answer("s"), None)
    store.set("huge", answer("h" * 5000), None)
    assert store.get("huge") is None and store.get("small") is not None
    assert store.stats().evictions == 0


def test_memory_store_ttl_delete_clear(clock):
    store = MemoryStore(clock=clock)
    store.set("k", answer("v"), 10)
    store.set("forever", answer("v"), None)
    clock.advance(10)
    assert store.get("k") is None and store.stats().expired == 1
    assert store.delete("forever") and not store.delete("forever")
    store.set("x", answer("v"), None)
    store.clear()
    assert len(store) == 0 and store.stats().bytes == 0


def test_memory_store_hands_out_copies_of_tool_calls():
    calls = ({"id": "c1", "function": {"name": "f", "arguments": "{}"}},)
    store = MemoryStore()
    store.set("k", answer("", tool_calls=calls), None)
    store.get("k").tool_calls[0]["function"]["name"] = "changed"
    assert store.get("k").tool_calls == calls


def test_memory_store_accounting_holds_under_threads():
    store = MemoryStore(max_bytes=20_000)

    def churn(worker):
        for i in range(300):
            store.set(f"{worker}-{i % 40}", answer("t" * (i % 97)), None)
            store.get(f"{worker}-{(i * 7) % 40}")

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [f"{w}-{i}" for w in range(8) for i in range(40)]
    live = {k: r for k in keys if (r := store.get(k)) is not None}
    stats = store.stats()
    assert stats.entries == len(live)
    assert stats.bytes == sum(entry_size(k, r) for k, r in live.items())
    assert stats.bytes <= 20_000 and stats.evictions > 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_memory_store_rejects_a_bad_bound(bad):
    with pytest.raises(ConfigError, match="max_bytes"):
        MemoryStore(max_bytes=bad)


# --- the DuckDB store -------------------------------------------------------------------------


def test_duckdb_store_round_trips_every_field_across_reopening(tmp_path, clock):
    stored = ChatResponse(
        text="é and text",
        finish_reason="tool_calls",
        usage=Usage(
            input_tokens=100,
            output_tokens=20,
            cache_read_tokens=30,
            cache_write_tokens=4,
            reasoning_tokens=5,
        ),
        provider="mock",
        model="m1-2025",
        cost_usd=0.25,
        response_id="resp-1",
        tool_calls=({"id": "c1", "type": "function", "function": {"name": "f"}},),
        simulated=True,
    )
    with DuckDBStore(tmp_path / "cache.duckdb", clock=clock) as store:
        store.set("k", stored, None)
        assert store.get("k") == stored
    with DuckDBStore(tmp_path / "cache.duckdb", clock=clock) as reopened:
        assert reopened.get("k") == stored and len(reopened) == 1


def test_duckdb_store_ignores_then_purges_expired_entries(tmp_path, clock):
    path = tmp_path / "sub" / "cache.duckdb"
    with DuckDBStore(path, clock=clock) as store:
        store.set("short", answer("s"), 10)
        store.set("long", answer("l"), 100)
        clock.advance(10)
        assert store.get("short") is None and store.get("long").text == "l"
        assert len(store) == 1 and store.stats().expired == 1
    clock.advance(90)
    with DuckDBStore(path, clock=clock) as reopened:  # purged on opening
        assert reopened.stats().expired == 1 and reopened.stats().entries == 0


def test_duckdb_store_replace_delete_clear_and_stats(tmp_path):
    with DuckDBStore(tmp_path / "c.duckdb") as store:
        store.set("k", answer("old"), None)
        store.set("k", answer("new"), None)
        assert store.get("k").text == "new" and len(store) == 1
        assert store.stats().bytes == entry_size("k", answer("new"))
        assert store.delete("k") and not store.delete("k")
        store.set("a", answer("a"), None)
        store.clear()
        assert len(store) == 0


def test_duckdb_store_errors_say_what_to_do(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        DuckDBStore(tmp_path)
    store = DuckDBStore(tmp_path / "c.duckdb")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("k")


def test_duckdb_store_is_safe_under_threads(tmp_path):
    with DuckDBStore(tmp_path / "c.duckdb") as store:

        def work(worker):
            for i in range(20):
                store.set(f"{worker}-{i}", answer(f"{worker}-{i}"), None)
                assert store.get(f"{worker}-{i}").text == f"{worker}-{i}"

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store) == 80


def test_a_notebook_rerun_with_a_duckdb_cache_costs_nothing(tmp_path, log):
    path = tmp_path / "cache.duckdb"
    wall = Ticker()
    for run in range(2):
        mock = MockProvider("mock", models=("m1",)).enqueue(f"run {run}")
        cache = ExactCache(DuckDBStore(path))
        gw = make_gateway(log, mock, cache, wall)
        assert gw.chat("mock/m1", "q").text == "run 0"
        assert len(mock.requests) == (1 if run == 0 else 0)
        cache.close()
    assert list(rows(log).cache_status) == ["miss", "hit"]


# --- construction -----------------------------------------------------------------------------


def test_stores_satisfy_the_protocol(tmp_path):
    assert isinstance(MemoryStore(), CacheStore)
    with DuckDBStore(tmp_path / "c.duckdb") as store:
        assert isinstance(store, CacheStore)


def test_from_config_builds_either_store(tmp_path, clock):
    memory = ExactCache.from_config(
        {"store": "memory", "max_bytes": 1000, "ttl": 60, "model_ttls": {"mock/m1": 5}}
    )
    assert isinstance(memory.store, MemoryStore) and memory.store.max_bytes == 1000
    assert memory.ttl == 60 and memory.model_ttls == {"mock/m1": 5} and memory.coalesce
    persistent = ExactCache.from_config(
        {"store": "duckdb", "path": "c.duckdb", "coalesce": False}, base_dir=tmp_path, clock=clock
    )
    assert persistent.store.path == tmp_path / "c.duckdb" and not persistent.coalesce
    persistent.close()
    assert isinstance(ExactCache.from_config({}).store, MemoryStore)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"tll": 60}, "did you mean 'ttl'"),
        ({"store": "redis"}, "unknown cache store"),
        ({"store": "memory", "path": "x"}, "'path' does not apply"),
        ({"ttl": -5}, "ttl=-5"),
        ({"model_ttls": {"m1": 5}}, "does not name a provider"),
        ({"model_ttls": {"mock/m1": 0}}, "model_ttls"),
        ({"coalesce": "yes"}, "coalesce"),
    ],
)
def test_bad_settings_are_config_errors(settings, fragment):
    with pytest.raises(ConfigError) as info:
        ExactCache.from_config(settings)
    assert fragment in str(info.value)


def test_a_store_must_follow_the_protocol():
    with pytest.raises(ConfigError, match="not a CacheStore"):
        ExactCache(store={})


def test_stats_hit_rate_counts_coalesced_calls_as_served():
    stats = CacheStats(
        hits=3,
        misses=4,
        bypasses=0,
        coalesced=1,
        saved_usd=0.0,
        entries=0,
        bytes=0,
        evictions=0,
        expired=0,
        in_flight=0,
        waiting=0,
    )
    assert stats.hit_rate == 0.5
    assert (
        CacheStats(
            hits=0,
            misses=0,
            bypasses=5,
            coalesced=0,
            saved_usd=0.0,
            entries=0,
            bytes=0,
            evictions=0,
            expired=0,
            in_flight=0,
            waiting=0,
        ).hit_rate
        == 0.0
    )


def test_the_cache_sits_in_the_cache_slot_of_the_pipeline():
    gw = Gateway([MockProvider("mock")], log=None, middleware=[ExactCache()])
    assert gw.pipeline[0] == "cache"
    assert ExactCache().describe()["store"] == "MemoryStore"
