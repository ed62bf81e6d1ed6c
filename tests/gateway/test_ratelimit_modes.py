"""The rate limiter across call modes (`aigw_lab.gateway.ratelimit`): threads and asyncio
tasks waiting in one queue are served in arrival order, a caller that stops waiting (a
cancelled task, an interrupted thread, in every mode) withdraws its place, and every mode
settles a call's usage once.

Threads and tasks run for real here; the event loop runs on its own thread. Where time must
pass, either a fake clock moves one slot at a time (so only the head of the queue can go),
or the real clock runs with a limit of a few calls a second; no assertion is on time.
"""

import asyncio
import threading
import time

import pytest

from aigw_lab import Gateway
from aigw_lab.errors import RateLimitedError
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.types import ChatResponse, Usage

MODES = ("chat", "achat", "stream", "astream")

pytestmark = pytest.mark.filterwarnings("ignore::aigw_lab.pricing.UnknownPriceWarning")


def fake_clock():
    """Monotonic seconds that move only when the test moves them: ``now[0] += 1.0``."""
    now = [100.0]
    return now, lambda: now[0]


def wait_until(condition, what="condition"):
    for _ in range(10_000):
        if condition():
            return
        time.sleep(0.001)
    raise AssertionError(f"{what} not reached")


def recording_gateway(limiter, seen, usage=None):
    def answer(request):
        seen.append(request.messages[0].text)
        return ChatResponse(
            text="ok",
            finish_reason="stop",
            usage=usage or Usage(input_tokens=1, output_tokens=1),
            provider="a",
            model=request.model,
        )

    return Gateway([FunctionProvider(answer, "a", models=("m",))], middleware=[limiter])


class Loop:
    """An event loop on its own thread, so tasks and threads wait side by side."""

    def __enter__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def submit(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def call_in(mode, gw, loop, text, **params):
    """Start one call in ``mode`` (a thread, or a task on ``loop``); returns something with
    ``done()``."""
    if mode in ("chat", "stream"):

        def run():
            if mode == "chat":
                gw.chat("a/m", text, **params)
            else:
                list(gw.stream("a/m", text, **params))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.done = lambda: not thread.is_alive()  # type: ignore[attr-defined]
        return thread

    async def run_async():
        if mode == "achat":
            await gw.achat("a/m", text, **params)
        else:
            async for _ in gw.astream("a/m", text, **params):
                pass

    return loop.submit(run_async())


def queue_lengths(limiter):
    state = limiter.snapshot()
    return state["waiting"], [row["waiting"] for row in state["buckets"]]


# --- one queue for threads and tasks --------------------------------------------------------


def test_threads_and_tasks_in_one_queue_go_in_arrival_order_one_slot_at_a_time():
    now, clock = fake_clock()
    seen = []

    async def poll(seconds):
        # The head's timed wait (a second at most) polls; a call behind it (the timeout
        # left) waits for its wake future, resolved when the queue moves.
        await asyncio.sleep(0.001 if seconds <= 1.0 else 3600)

    # The head polls (1 ms real sleeps, thread or task) while the test moves the clock one
    # second at a time: each second frees exactly one slot, so only the head can take it.
    limiter = RateLimiter(
        [{"requests_per_second": 1}],
        clock=clock,
        sleep=lambda s: time.sleep(0.001),
        async_sleep=poll,
        timeout=3600,
    )
    gw = recording_gateway(limiter, seen)
    gw.chat("a/m", "drain")
    order = ["chat", "achat", "astream", "stream", "achat", "chat", "astream"]
    with Loop() as loop:
        callers = []
        for i, mode in enumerate(order):
            callers.append(call_in(mode, gw, loop, f"{i}:{mode}"))
            wait_until(lambda i=i: limiter.snapshot()["waiting"] == i + 1, f"{i + 1} waiting")
        for i, caller in enumerate(callers):
            now[0] += 1.0
            wait_until(caller.done, f"caller {i} served")
            assert seen[1:] == [f"{k}:{m}" for k, m in enumerate(order[: i + 1])]
    assert queue_lengths(limiter) == (0, [0])


def test_real_waits_serve_threads_and_tasks_in_arrival_order():
    # No injected clock or sleep: the head waits on its wake future with a timeout, the
    # others until the queue moves; five a second, so the calls go about 0.2 s apart.
    seen = []
    limiter = RateLimiter([{"requests_per_second": 5}], timeout=30)
    gw = recording_gateway(limiter, seen)
    for _ in range(5):
        gw.chat("a/m", "drain")
    order = ["achat", "chat", "astream", "stream", "chat"]
    with Loop() as loop:
        callers = []
        for i, mode in enumerate(order):
            callers.append(call_in(mode, gw, loop, f"{i}:{mode}"))
            # Queued, or already through (the head may go before the next one arrives).
            wait_until(
                lambda i=i: limiter.snapshot()["waiting"] + len(seen) - 5 >= i + 1,
                f"caller {i} arrived",
            )
        for i, caller in enumerate(callers):
            wait_until(caller.done, f"caller {i} served")
    assert seen[5:] == [f"{i}:{m}" for i, m in enumerate(order)]
    assert queue_lengths(limiter) == (0, [0])


# --- giving up a place ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["achat", "astream"])
def test_a_cancelled_task_withdraws_and_the_thread_behind_it_takes_its_place(mode):
    seen = []
    limiter = RateLimiter([{"requests_per_second": 5}], timeout=None)
    gw = recording_gateway(limiter, seen)
    for _ in range(5):
        gw.chat("a/m", "drain")
    with Loop() as loop:
        task = call_in(mode, gw, loop, "task")
        wait_until(lambda: limiter.snapshot()["waiting"] == 1, "the task waiting")
        thread = call_in("chat", gw, loop, "thread")
        wait_until(lambda: limiter.snapshot()["waiting"] == 2, "the thread waiting")
        task.cancel()
        wait_until(thread.done, "the thread served")
        assert task.cancelled()
    assert seen[5:] == ["thread"]
    assert queue_lengths(limiter) == (0, [0])


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("mode", ["chat", "stream"])
def test_an_interrupted_thread_wait_withdraws_its_place(mode):
    now, clock = fake_clock()

    def interrupted(seconds):
        raise Interrupted("^C while waiting")

    seen = []
    limiter = RateLimiter([{"requests_per_second": 1}], clock=clock, sleep=interrupted)
    gw = recording_gateway(limiter, seen)
    gw.chat("a/m", "drain")
    with pytest.raises(Interrupted):
        if mode == "chat":
            gw.chat("a/m", "interrupted")
        else:
            list(gw.stream("a/m", "interrupted"))
    assert queue_lengths(limiter) == (0, [0])
    now[0] += 1.0
    gw.chat("a/m", "next")  # its slot is there: nothing was taken or held
    assert seen == ["drain", "next"]


@pytest.mark.parametrize("mode", ["achat", "astream"])
def test_a_task_cancelled_while_queued_behind_another_leaves_no_trace(mode):
    limiter = RateLimiter([{"requests_per_minute": 1}], timeout=None)
    gw = recording_gateway(limiter, [])
    gw.chat("a/m", "drain")
    with Loop() as loop:
        tasks = [call_in(mode, gw, loop, f"t{i}") for i in range(2)]
        wait_until(lambda: limiter.snapshot()["waiting"] == 2, "two waiting")
        for task in tasks:
            task.cancel()
        wait_until(lambda: limiter.snapshot()["waiting"] == 0, "none waiting")
    assert queue_lengths(limiter) == (0, [0])


# --- settling in every mode -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_settles_the_real_usage_once(mode):
    _, clock = fake_clock()
    limiter = RateLimiter(
        [{"requests_per_minute": 100, "tokens_per_minute": 1000}], clock=clock, timeout=0
    )
    gw = recording_gateway(limiter, [], usage=Usage(input_tokens=7, output_tokens=3))
    with Loop() as loop:
        caller = call_in(mode, gw, loop, "x" * 40, max_tokens=200)
        wait_until(caller.done, "the call")
        if hasattr(caller, "result"):
            caller.result()
    rows = {r["limit"]: r["available"] for r in limiter.snapshot()["buckets"]}
    assert rows == {"requests_per_minute": 99, "tokens_per_minute": 990}  # 10 used, not 210


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_refuses_in_reject_mode_and_takes_nothing(mode):
    limiter = RateLimiter([{"requests_per_hour": 1}], mode="reject")
    seen = []
    gw = recording_gateway(limiter, seen)
    gw.chat("a/m", "first")
    errors = []

    async def run_async():
        try:
            if mode == "achat":
                await gw.achat("a/m", "second")
            else:
                async for _ in gw.astream("a/m", "second"):
                    pass
        except RateLimitedError as exc:
            errors.append(exc)

    if mode in ("chat", "stream"):
        with pytest.raises(RateLimitedError) as info:
            gw.chat("a/m", "second") if mode == "chat" else list(gw.stream("a/m", "second"))
        errors.append(info.value)
    else:
        asyncio.run(run_async())
    assert len(errors) == 1 and errors[0].retry_after > 0
    assert seen == ["first"] and queue_lengths(limiter) == (0, [0])


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_an_abandoned_stream_pays_for_its_prompt_and_the_text_delivered_in_each_mode(mode):
    _, clock = fake_clock()
    limiter = RateLimiter([{"tokens_per_minute": 1000}], clock=clock)
    reply = "word " * 40  # 200 characters, several deltas

    def answer(request):
        return ChatResponse(
            text=reply,
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=50),
            provider="a",
            model=request.model,
        )

    gw = Gateway([FunctionProvider(answer, "a", models=("m",))], middleware=[limiter])
    if mode == "stream":
        with gw.stream("a/m", "x" * 40, max_tokens=300) as stream:
            first = next(iter(stream))
    else:

        async def first_delta():
            stream = gw.astream("a/m", "x" * 40, max_tokens=300)
            text = await stream.__aiter__().__anext__()
            await stream.aclose()
            return text

        first = asyncio.run(first_delta())
    assert first == "word "  # 5 characters: 2 tokens at most
    (row,) = limiter.snapshot()["buckets"]
    assert row["available"] == 1000 - (10 + 2)  # the prompt and what it got, not 300


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_that_times_out_in_the_queue_is_refused_and_leaves_it(mode):
    limiter = RateLimiter([{"requests_per_hour": 1}], timeout=0.05)
    gw = recording_gateway(limiter, [])
    gw.chat("a/m", "drain")

    async def consume():
        async for _ in gw.astream("a/m", "late"):
            pass

    with pytest.raises(RateLimitedError, match="after waiting 0.05s") as info:
        list(gw.stream("a/m", "late")) if mode == "stream" else asyncio.run(consume())
    assert info.value.retry_after > 3500
    assert queue_lengths(limiter) == (0, [0])
