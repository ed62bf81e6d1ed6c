"""The gateway's own code written once for asyncio and generated for threads (the attempt
stage, the entry points' guard, the caller's stream, closing), checked in the modes where
each runs: the same rows, the same stream semantics, the same closing."""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import RateLimitedError
from aigw_lab.gateway import AsyncChatStream, ChatStream
from aigw_lab.gateway.middleware import Primitive
from aigw_lab.store import CallLog
from aigw_lab.testing import MemorySink
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import TextDelta

PRICES = {"mock/m1": Price(1.0, 2.0)}


class Watched(MockProvider):
    """A mock whose streams note when they are closed (the upstream released)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed_streams = 0

    def stream(self, request):
        try:
            yield from super().stream(request)
        finally:
            self.closed_streams += 1

    async def astream(self, request):
        try:
            async for event in super().astream(request):
                yield event
        finally:
            self.closed_streams += 1


def gateway(provider, **kwargs) -> tuple[Gateway, MemorySink]:
    sink = MemorySink()
    return Gateway([provider], log=None, sinks=[sink], prices=PRICES, **kwargs), sink


@pytest.mark.parametrize("asynchronous", [False, True], ids=["stream", "astream"])
def test_leaving_a_stream_early_logs_it_cancelled_before_the_block_ends(asynchronous):
    mock = Watched("mock", models=("m1",)).enqueue("alpha beta gamma delta")
    gw, sink = gateway(mock)
    seen = {}
    if asynchronous:

        async def run():
            async with gw.astream("mock/m1", "x") as stream:
                assert isinstance(stream, AsyncChatStream)
                async for text in stream:
                    assert text == "alpha "
                    break
            seen["rows"], seen["closed"] = sink.rows, mock.closed_streams
            return stream

        stream = asyncio.run(run())
    else:
        with gw.stream("mock/m1", "x") as stream:
            assert isinstance(stream, ChatStream)
            for text in stream:
                assert text == "alpha "
                break
        seen["rows"], seen["closed"] = sink.rows, mock.closed_streams
    # At once, not when the generator is collected: the row and the upstream closed.
    (row,) = seen["rows"]
    assert (row.status, row.response_text, row.stream) == ("cancelled", "alpha ", True)
    assert seen["closed"] == 1
    assert stream.response is None and stream.text == "alpha "


@pytest.mark.parametrize("asynchronous", [False, True], ids=["stream", "astream"])
def test_a_stream_read_to_the_end_has_its_response_and_one_row(asynchronous):
    mock = MockProvider("mock", models=("m1",)).enqueue("one two three")
    gw, sink = gateway(mock)
    if asynchronous:

        async def run():
            stream = gw.astream("mock/m1", "x")
            assert stream.response is None  # nothing is read before the first iteration
            response = await stream.until_done()
            await stream.aclose()  # closing an ended stream changes nothing
            return stream, response

        stream, response = asyncio.run(run())
    else:
        stream = gw.stream("mock/m1", "x")
        assert stream.response is None
        response = stream.until_done()
        stream.close()
    assert stream.text == response.text == "one two three"
    assert response.latency.ttft_ms is not None and response.cost_usd is not None
    (row,) = sink.rows
    assert (row.status, row.attempt, row.call_id) == ("ok", 1, response.call_id)


class RefuseAtOnce(Primitive):
    kind = "rate_limit"

    def admit(self, ctx, state):
        raise RateLimitedError("limit reached", hint="wait")


@pytest.mark.parametrize("mode", ["chat", "achat", "stream", "astream"])
def test_a_refusal_before_any_attempt_is_one_row_in_every_mode(mode):
    mock = MockProvider("mock", models=("m1",))
    gw, sink = gateway(mock, middleware=[RefuseAtOnce()])

    async def run_async():
        if mode == "achat":
            await gw.achat("mock/m1", "x")
        else:
            [t async for t in gw.astream("mock/m1", "x")]

    with pytest.raises(RateLimitedError):
        if mode == "chat":
            gw.chat("mock/m1", "x")
        elif mode == "stream":
            list(gw.stream("mock/m1", "x"))
        else:
            asyncio.run(run_async())
    (row,) = sink.rows
    assert (row.status, row.attempt, row.error_type) == ("error", 0, "rate_limited")
    assert mock.requests == []


class Silent(MockProvider):
    async def astream(self, request):
        yield TextDelta("half")  # and no final event


def test_an_async_stream_without_its_final_event_is_an_error_row():
    gw, sink = gateway(Silent("mock", models=("m1",)))

    async def run():
        return [t async for t in gw.astream("mock/m1", "x")]

    with pytest.raises(Exception, match="final event"):
        asyncio.run(run())
    (row,) = sink.rows
    assert (row.status, row.response_text) == ("error", "half")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["close", "aclose"])
def test_closing_closes_an_owned_log_flushes_a_given_one_and_the_sinks(tmp_path, asynchronous):
    given = CallLog(tmp_path / "given.duckdb")
    mock = MockProvider("mock", models=("m1",)).enqueue("a", "b")
    owned_sink, given_sink = MemorySink(), MemorySink()
    owned = Gateway([mock], log=tmp_path / "owned.duckdb", sinks=[owned_sink], prices=PRICES)
    borrowed = Gateway([mock], log=given, sinks=[given_sink], prices=PRICES)
    owned.chat("mock/m1", "x")
    borrowed.chat("mock/m1", "y")
    if asynchronous:

        async def run():
            async with owned, borrowed:
                pass
            await owned.aclose()  # twice: nothing more happens

        asyncio.run(run())
    else:
        with owned, borrowed:
            pass
        owned.close()
    assert owned.log.closed and not given.closed
    assert len(given.query("SELECT * FROM calls")) == 1  # flushed
    assert (owned_sink.flushes, given_sink.flushes) == (1, 1)
    assert not owned_sink.closed and not given_sink.closed  # their owner closes them
    given.close()
    with CallLog(tmp_path / "owned.duckdb") as reopened:
        assert len(reopened.query("SELECT * FROM calls")) == 1
