"""The caches across call modes: threads and asyncio tasks asking one prompt share one
upstream call (one flight for every mode), a failed leader promotes a waiter whatever its
mode, a cancelled waiter withdraws, a sync call on an event loop's thread never deadlocks
behind a task, and a hit replays in the mode of the call that hits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ProviderServerError
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.testing.fakes import FunctionProvider

PRICES = {"mock/m1": Price(1.0, 2.0)}
MODES = ("chat", "achat", "stream", "astream")
DEADLINE = 10.0


class Gated(FunctionProvider):
    """Answers (sync or async) only once ``gate`` is set; ``replies`` are served in order
    (an exception is raised), the last one for every later call."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.gate = threading.Event()
        super().__init__(self._reply, name="mock", models=("m1",))

    def _reply(self, request):
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def chat(self, request):
        assert self.gate.wait(DEADLINE), "never released"
        return super().chat(request)

    async def achat(self, request):
        deadline = time.monotonic() + DEADLINE
        while not self.gate.is_set():
            assert time.monotonic() < deadline, "never released"
            await asyncio.sleep(0.001)
        return await super().achat(request)


def wait_for(condition, what):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.001)


def status_counts(gw):
    df = gw.query("SELECT cache_status, status, count(*) AS n FROM calls GROUP BY ALL")
    return {(r.cache_status, r.status): r.n for r in df.itertuples()}


async def call(gw, mode, prompt="the same prompt"):
    """One call in an async mode; its text."""
    if mode == "achat":
        return (await gw.achat("mock/m1", prompt)).text
    return "".join([t async for t in gw.astream("mock/m1", prompt)])


def sync_call(gw, mode, prompt="the same prompt"):
    if mode == "chat":
        return gw.chat("mock/m1", prompt).text
    return "".join(gw.stream("mock/m1", prompt))


class Callers:
    """Calls from threads (chat, stream) and from tasks of one event loop on its own thread
    (achat, astream); each result is the text or the exception."""

    def __init__(self, gw):
        self.gw = gw
        self.results: dict[str, object] = {}
        self.threads: list[threading.Thread] = []
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.loop_thread.start()
        self.futures = {}

    def start(self, name, mode):
        if mode in ("chat", "stream"):

            def run():
                try:
                    self.results[name] = sync_call(self.gw, mode)
                except Exception as exc:
                    self.results[name] = exc

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            self.threads.append(thread)
        else:
            self.futures[name] = asyncio.run_coroutine_threadsafe(call(self.gw, mode), self.loop)

    def cancel(self, name):
        self.loop.call_soon_threadsafe(self.futures[name].cancel)

    def finish(self):
        for thread in self.threads:
            thread.join(DEADLINE)
            assert not thread.is_alive(), "a caller never finished"
        for name, future in self.futures.items():
            try:
                self.results[name] = future.result(DEADLINE)
            except Exception as exc:  # a cancelled one included
                self.results[name] = exc
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(DEADLINE)
        self.loop.close()
        return self.results


def gateway(provider, cache):
    return Gateway([provider], middleware=[cache], prices=PRICES)


@pytest.mark.parametrize("leader", ["chat", "achat"])
def test_threads_and_tasks_asking_one_prompt_share_one_upstream_call(leader):
    provider = Gated("shared answer")
    cache = ExactCache()
    with gateway(provider, cache) as gw:
        callers = Callers(gw)
        callers.start("leader", leader)
        wait_for(lambda: cache.stats().in_flight == 1, "the leader's flight")
        followers = [f"{mode}-{i}" for mode in MODES for i in range(2)]
        for name in followers:
            callers.start(name, name.split("-")[0])
        wait_for(lambda: cache.stats().waiting == len(followers), "every follower waiting")
        provider.gate.set()
        results = callers.finish()
        counts = status_counts(gw)
    assert results == dict.fromkeys(["leader", *followers], "shared answer")
    assert len(provider.requests) == 1
    stats = cache.stats()
    assert (stats.misses, stats.coalesced, stats.in_flight, stats.waiting) == (1, 8, 0, 0)
    assert counts == {("miss", "ok"): 1, ("hit", "ok"): 8}


@pytest.mark.parametrize("leader", ["chat", "achat"])
def test_a_failed_leader_promotes_one_waiter_whatever_its_mode(leader):
    provider = Gated(ProviderServerError("boom", provider="mock", model="m1"), "second try")
    cache = ExactCache()
    with gateway(provider, cache) as gw:
        callers = Callers(gw)
        callers.start("leader", leader)
        wait_for(lambda: cache.stats().in_flight == 1, "the leader's flight")
        # Streams never lead (a waiting stream whose leader failed goes alone): chat calls.
        followers = ["chat-0", "chat-1", "achat-0", "achat-1", "achat-2"]
        for name in followers:
            callers.start(name, name.split("-")[0])
        wait_for(lambda: cache.stats().waiting == len(followers), "every follower waiting")
        provider.gate.set()
        results = callers.finish()
    assert isinstance(results.pop("leader"), ProviderServerError)
    assert results == dict.fromkeys(followers, "second try")
    assert len(provider.requests) == 2  # the failed call and one promoted waiter's
    assert (cache.stats().in_flight, cache.stats().waiting, cache.stats().entries) == (0, 0, 1)


def test_a_cancelled_task_withdraws_from_a_flight_led_by_a_thread():
    provider = Gated("answer")
    cache = ExactCache()
    with gateway(provider, cache) as gw:
        callers = Callers(gw)
        callers.start("leader", "chat")
        wait_for(lambda: cache.stats().in_flight == 1, "the leader's flight")
        for name in ("gone", "stays", "thread"):
            callers.start(name, "chat" if name == "thread" else "achat")
        wait_for(lambda: cache.stats().waiting == 3, "three followers waiting")
        callers.cancel("gone")
        wait_for(lambda: cache.stats().waiting == 2, "the cancelled task to withdraw")
        provider.gate.set()
        results = callers.finish()
    assert isinstance(results.pop("gone"), concurrent.futures.CancelledError)
    assert results == {"leader": "answer", "stays": "answer", "thread": "answer"}
    assert len(provider.requests) == 1 and cache.stats().waiting == 0


def test_a_sync_call_on_the_loop_thread_does_not_wait_behind_a_task():
    """A notebook cell runs on the event loop's thread: a sync call there behind a flight
    that a task of that loop leads would block the very loop the answer needs."""
    provider = Gated("from the task")
    cache = ExactCache()
    outcome = {}

    async def cell(gw):
        task = asyncio.ensure_future(gw.achat("mock/m1", "the same prompt"))
        while cache.stats().in_flight == 0:
            await asyncio.sleep(0.001)
        provider.replies = ["from the cell"]
        provider.gate.set()  # the sync call below answers at once; the task needs the loop
        outcome["cell"] = gw.chat("mock/m1", "the same prompt").text  # blocks the loop
        outcome["task"] = (await task).text

    with gateway(provider, cache) as gw:
        worker = threading.Thread(target=asyncio.run, args=(cell(gw),), daemon=True)
        worker.start()
        worker.join(DEADLINE)
        assert not worker.is_alive(), "the sync call deadlocked the loop"
    assert outcome == {"cell": "from the cell", "task": "from the cell"}
    assert len(provider.requests) == 2 and cache.stats().misses == 2


# --- a hit replays in the mode of the call that hits -------------------------------------------


def run(gw, mode, prompt):
    if mode in ("chat", "stream"):
        return sync_call(gw, mode, prompt)
    return asyncio.run(call(gw, mode, prompt))


@pytest.mark.parametrize("hit_mode", MODES)
@pytest.mark.parametrize("miss_mode", MODES)
@pytest.mark.parametrize("kind", ["exact", "semantic", "semantic, batching"])
def test_an_answer_stored_in_one_mode_is_served_in_every_mode(kind, miss_mode, hit_mode):
    if kind == "exact":
        cache = ExactCache()
    else:  # with a batch window, lookups wait on the batch's future instead of a thread
        cache = SemanticCache(HashingEmbedder(64), batch_window=0.001 if "batch" in kind else 0)
    fn = FunctionProvider(lambda r: "Paris is the capital.", name="mock", models=("m1",))
    with gateway(fn, cache) as gw:
        assert run(gw, miss_mode, "What is the capital of France?") == "Paris is the capital."
        again = (
            "What is the capital of France?" if kind == "exact" else "what is the capital of france"
        )
        assert run(gw, hit_mode, again) == "Paris is the capital."
        rows = gw.query("SELECT cache_status, stream, attempt FROM calls ORDER BY timestamp")
    if "batch" in kind:
        cache.embedder.close()
    assert len(fn.requests) == 1
    assert list(rows.cache_status) == ["miss", "hit"] and list(rows.attempt) == [1, 0]
    assert list(rows.stream) == [miss_mode.endswith("stream"), hit_mode.endswith("stream")]


class ThreadNoting(HashingEmbedder):
    def __init__(self):
        super().__init__(64)
        self.threads: list[int] = []

    def embed(self, texts):
        self.threads.append(threading.get_ident())
        return super().embed(texts)


@pytest.mark.parametrize("mode", MODES)
def test_the_semantic_embedding_runs_off_the_event_loop(mode):
    embedder = ThreadNoting()
    loops: list[int] = []

    async def acall(gw):
        loops.append(threading.get_ident())
        return await call(gw, mode, "a question")

    fn = FunctionProvider(lambda r: "an answer", name="mock", models=("m1",))
    with gateway(fn, SemanticCache(embedder)) as gw:
        if mode in ("chat", "stream"):
            loops.append(threading.get_ident())
            assert sync_call(gw, mode, "a question") == "an answer"
        else:
            assert asyncio.run(acall(gw)) == "an answer"
    (embedded_on,) = embedder.threads
    # sync calls embed on their own thread; async ones on a worker, never on the loop
    assert (embedded_on == loops[0]) is (mode in ("chat", "stream"))


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_an_abandoned_stream_miss_stores_nothing_in_either_cache(mode):
    for cache in (ExactCache(), SemanticCache(HashingEmbedder(64))):
        fn = FunctionProvider(lambda r: "one two three four", name="mock", models=("m1",))
        with gateway(fn, cache) as gw:
            if mode == "stream":
                stream = gw.stream("mock/m1", "a question")
                next(iter(stream))
                stream.close()
            else:

                async def go():
                    stream = gw.astream("mock/m1", "a question")
                    await stream.__aiter__().__anext__()
                    await stream.aclose()

                asyncio.run(go())
            statuses = list(gw.query("SELECT status FROM calls")["status"])
        assert statuses == ["cancelled"] and cache.stats().entries == 0
