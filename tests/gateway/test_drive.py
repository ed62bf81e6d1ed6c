"""The gateway's drivers run a sans-IO primitive the same way in every call mode: they do
the waits and work it asks for, replay what it serves, settle each ticket once, withdraw
abandoned waits and close the stream beneath an abandoned one."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from aigw_lab import Gateway
from aigw_lab.gateway.middleware import Primitive
from aigw_lab.gateway.primitive import PROCEED, Proceed, Serve, Wait, Work
from aigw_lab.providers.base import Price
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.types import ChatResponse, StreamEnd, TextDelta, Usage

PRICES = {"fake/m": Price(input_per_mtok=1.0, output_per_mtok=2.0)}

MODES = ("chat", "achat", "stream", "astream")


def run(gw: Gateway, mode: str, prompt: str = "hello there friend", **params) -> str:
    """One call in ``mode``; the answer's text."""
    if mode == "chat":
        return gw.chat("fake/m", prompt, **params).text
    if mode == "achat":
        return asyncio.run(gw.achat("fake/m", prompt, **params)).text
    if mode == "stream":
        return "".join(gw.stream("fake/m", prompt, **params))

    async def consume() -> str:
        return "".join([t async for t in gw.astream("fake/m", prompt, **params)])

    return asyncio.run(consume())


class Script(Primitive):
    """A primitive that follows a script of verdicts and records what the driver did."""

    kind = "cache"
    observes = True

    def __init__(self, *verdicts) -> None:
        self.verdicts = list(verdicts)
        self.asked: list[object] = []
        self.events: list[object] = []
        self.settled: list[tuple[object, object]] = []
        self.withdrawn: list[object] = []

    def admit(self, ctx, state):
        self.asked.append(state)
        return self.verdicts.pop(0) if self.verdicts else Proceed("ticket")

    def withdraw(self, ctx, state):
        self.withdrawn.append(state)

    def observe(self, ctx, ticket, event):
        self.events.append(type(event).__name__)

    def settle(self, ctx, ticket, outcome):
        self.settled.append((ticket, outcome))


def gateway(*middleware, answer="the answer is here") -> Gateway:
    return Gateway(
        [FunctionProvider(lambda r: answer, "fake")], middleware=list(middleware), prices=PRICES
    )


@pytest.mark.parametrize("mode", MODES)
def test_wait_and_work_then_proceed_settles_once_with_the_response(mode):
    slept = []

    async def asleep(s):
        slept.append(s)

    script = Script(
        Wait(0.5, state="queued", sleep=slept.append, async_sleep=asleep),
        Work(lambda: "worked", state="working"),
    )
    with gateway(script) as gw:
        assert run(gw, mode) == "the answer is here"
        rows = gw.query("select count(*) as n from calls")
    assert slept == [0.5]
    assert script.asked == [None, "queued", "worked"]
    assert len(script.settled) == 1
    ticket, outcome = script.settled[0]
    assert ticket == "ticket"
    assert outcome.response is not None and outcome.response.text == "the answer is here"
    assert outcome.error is None and outcome.answered
    assert script.withdrawn == []
    if mode.endswith("stream"):
        assert script.events[-1] == "StreamEnd" and "TextDelta" in script.events
    else:
        assert script.events == []
    assert int(rows["n"][0]) == 1


@pytest.mark.parametrize("mode", MODES)
def test_serve_answers_in_the_call_mode_without_reaching_the_provider(mode):
    served = ChatResponse(
        text="from memory, word by word",
        finish_reason="stop",
        usage=Usage(input_tokens=1, output_tokens=5),
        provider="fake",
        model="m",
    )
    calls = []
    gw = Gateway(
        [FunctionProvider(lambda r: calls.append(r) or "upstream", "fake")],
        middleware=[Script(Serve(served))],
        prices=PRICES,
    )
    with gw:
        assert run(gw, mode) == "from memory, word by word"
    assert calls == []


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_settles_with_the_error(mode):
    def boom(request):
        raise RuntimeError("upstream broke")

    script = Script()
    with Gateway([FunctionProvider(boom, "fake")], middleware=[script], prices=PRICES) as gw:
        with pytest.raises(Exception, match="upstream broke"):
            run(gw, mode)
    assert len(script.settled) == 1
    _, outcome = script.settled[0]
    assert outcome.response is None and "upstream broke" in str(outcome.error)
    assert not outcome.answered


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_an_abandoned_stream_is_closed_beneath_then_settled_as_answered(mode):
    script = Script()
    with gateway(script, answer="one two three four five six") as gw:
        if mode == "stream":
            stream = gw.stream("fake/m", "hi")
            first = next(iter(stream))
            stream.close()
        else:

            async def go():
                stream = gw.astream("fake/m", "hi")
                it = stream.__aiter__()
                text = await it.__anext__()
                await stream.aclose()
                return text

            first = asyncio.run(go())
        statuses = gw.query("select status from calls")["status"].tolist()
    assert first
    assert len(script.settled) == 1
    _, outcome = script.settled[0]
    assert outcome.response is None and outcome.answered
    # The attempt beneath was closed at once, so its row is already there, as cancelled.
    assert statuses == ["cancelled"]


def test_a_stream_never_read_is_never_admitted():
    script = Script()
    with gateway(script) as gw:
        gw.stream("fake/m", "hi")
    assert script.asked == []


def test_a_cancelled_async_wait_is_withdrawn():
    never: Future[None] = Future()
    script = Script(Wait(None, state="in line", wake=never))

    async def go(gw):
        task = asyncio.ensure_future(gw.achat("fake/m", "hi"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with gateway(script) as gw:
        asyncio.run(go(gw))
    assert script.withdrawn == ["in line"]
    assert script.settled == []
    assert not never.cancelled()  # a shared future is not the waiter's to cancel


def test_a_wake_from_another_thread_ends_a_sync_wait_early():
    wake: Future[None] = Future()
    script = Script(Wait(30.0, state="woken?", wake=wake))
    threading.Timer(0.05, wake.set_result, (None,)).start()
    with gateway(script) as gw:
        assert gw.chat("fake/m", "hi").text == "the answer is here"
    assert script.asked == [None, "woken?"]


def test_a_stage_that_lets_calls_pass_is_never_settled():
    class Pass(Script):
        def admit(self, ctx, state):
            self.asked.append(state)
            return PROCEED

    script = Pass()
    with gateway(script) as gw:
        for mode in MODES:
            run(gw, mode)
    assert len(script.asked) == 4 and script.settled == [] and script.events == []


def test_an_unknown_verdict_is_a_type_error():
    class Wrong(Script):
        def admit(self, ctx, state):
            return "yes"

    with gateway(Wrong()) as gw, pytest.raises(TypeError, match="not a verdict"):
        gw.chat("fake/m", "hi")


def test_stream_events_reach_the_stage_in_order():
    script = Script()
    with gateway(script, answer="a b c") as gw:
        list(gw.stream("fake/m", "hi"))
    assert script.events[-1] == StreamEnd.__name__
    assert all(e == TextDelta.__name__ for e in script.events[:-1])


def test_a_sync_wait_never_blocks_the_event_loop_that_would_wake_it():
    """A sync call made on a thread that runs an event loop (a notebook cell) must not block
    on a wake only a task of that loop can resolve: the wait returns at once, unresolved."""
    never: Future[None] = Future()
    script = Script()
    outcome: dict[str, object] = {}

    async def cell(gw):
        loop = asyncio.get_running_loop()
        script.verdicts.append(Wait(None, state="led by a task", wake=never, wake_loop=loop))
        outcome["text"] = gw.chat("fake/m", "hi").text  # blocking, on the loop's thread

    with gateway(script) as gw:
        worker = threading.Thread(target=asyncio.run, args=(cell(gw),), daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the sync wait blocked the loop that would wake it"
    assert outcome["text"] == "the answer is here"
    assert script.asked == [None, "led by a task"] and not never.done()


def test_an_async_wait_on_its_own_loop_still_waits_for_the_wake():
    wake: Future[None] = Future()
    script = Script()

    async def go(gw):
        loop = asyncio.get_running_loop()
        script.verdicts.append(Wait(None, state="waiting", wake=wake, wake_loop=loop))
        task = asyncio.ensure_future(gw.achat("fake/m", "hi"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done() and script.asked == [None]  # still waiting
        wake.set_result(None)
        return (await task).text

    with gateway(script) as gw:
        assert asyncio.run(go(gw)) == "the answer is here"
    assert script.asked == [None, "waiting"]
