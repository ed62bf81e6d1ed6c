"""The Recorder and the call sinks: every row that reaches the log reaches each extra sink,
in every call mode and for every outcome; a sink's problem never fails a call and shows in
`Gateway.sink_health`; the Recorder prices, times and logs on its own, without a gateway."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import BudgetExceededError, ProviderError, UnknownProviderError
from aigw_lab.gateway.middleware import CallContext, Primitive
from aigw_lab.gateway.primitive import PROCEED, Serve
from aigw_lab.gateway.recorder import Recorder
from aigw_lab.pricing import PriceBook
from aigw_lab.store import CallLog
from aigw_lab.store.sink import CallSink, CallSinkWarning
from aigw_lab.testing import MemorySink
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import ChatRequest, ChatResponse, Latency, Usage

MODES = ("chat", "achat", "stream", "astream")
PRICES = {"mock/m1": Price(1.0, 2.0)}


def call(gw: Gateway, mode: str, model: str = "mock/m1", prompt: str = "x") -> str:
    """One call in ``mode``, read to the end; its text."""
    if mode == "chat":
        return gw.chat(model, prompt).text
    if mode == "stream":
        return "".join(gw.stream(model, prompt))

    async def run() -> str:
        if mode == "achat":
            return (await gw.achat(model, prompt)).text
        return "".join([t async for t in gw.astream(model, prompt)])

    return asyncio.run(run())


def abandon(gw: Gateway, mode: str) -> None:
    """Read one delta of a stream, then close it (the call is logged as cancelled)."""
    if mode == "stream":
        stream = gw.stream("mock/m1", "x")
        iterator = iter(stream)
        next(iterator)
        stream.close()
        iterator.close()
        return

    async def run() -> None:
        stream = gw.astream("mock/m1", "x")
        iterator = aiter(stream)
        await anext(iterator)
        await stream.aclose()
        await iterator.aclose()

    asyncio.run(run())


class Remember(Primitive):
    """Answers prompts it knows from memory, through the recorder (a cache hit)."""

    kind = "cache"

    def admit(self, ctx, state):
        if ctx.request.messages[-1].content != "known":
            return PROCEED
        stored = ChatResponse(
            text="remembered",
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=1),
            provider="mock",
            model="m1",
        )
        return Serve(ctx.recorder.serve_without_provider(ctx, stored, similarity=0.9))


class Refuse(Primitive):
    """Refuses prompts that say "refuse" before any attempt."""

    kind = "budget"

    def admit(self, ctx, state):
        if ctx.request.messages[-1].content == "refuse":
            raise BudgetExceededError("over budget", hint="raise the limit")
        return PROCEED


def every_outcome(gw: Gateway, mock: MockProvider, mode: str) -> None:
    """Completed, failed, served, refused, rejected (and, for streams, cancelled)."""
    mock.enqueue("fine answer", ProviderError("upstream broke", retryable=False))
    assert call(gw, mode) == "fine answer"
    with pytest.raises(ProviderError):
        call(gw, mode)
    assert call(gw, mode, prompt="known") == "remembered"
    with pytest.raises(BudgetExceededError):
        call(gw, mode, prompt="refuse")
    with pytest.raises(UnknownProviderError):
        call(gw, mode, model="nowhere/m1")
    if "stream" in mode:
        mock.enqueue("alpha beta gamma")
        abandon(gw, mode)


def outcomes(rows) -> list[tuple]:
    return sorted((r.status, r.attempt, r.cache_status, r.provider_name) for r in rows)


@pytest.mark.parametrize("mode", MODES)
def test_an_extra_sink_receives_every_row_the_log_receives(tmp_path, mode):
    mock = MockProvider("mock", models=("m1",))
    sink = MemorySink()
    with CallLog(tmp_path / "calls.duckdb") as log:
        gw = Gateway(
            [mock],
            log=log,
            sinks=[sink],
            prices=PRICES,
            middleware=[Remember(), Refuse()],
        )
        every_outcome(gw, mock, mode)
        gw.close()
        logged = log.query("SELECT * FROM calls").itertuples()
        logged = {r.call_id: r for r in logged}
    received = {r.call_id: r for r in sink.rows}
    assert len(received) == len(sink) == len(logged)  # each row once, none missing
    assert received.keys() == logged.keys()
    statuses = {(r.status, r.attempt) for r in received.values()}
    expected = {("ok", 1), ("error", 1), ("ok", 0), ("error", 0)}
    if "stream" in mode:
        expected.add(("cancelled", 1))
    assert statuses == expected
    hit = next(r for r in received.values() if r.cache_status == "hit")
    assert hit.cost_usd == 0.0 and hit.cache_similarity == pytest.approx(0.9)
    rejected = next(r for r in received.values() if r.provider_name == "nowhere")
    assert rejected.error_type == "unknown_provider"
    # the same values as the log's row, not just the same ids
    ok = next(r for r in received.values() if (r.status, r.attempt) == ("ok", 1))
    assert ok.cost_usd == pytest.approx(logged[ok.call_id].cost_usd)
    assert ok.response_text == logged[ok.call_id].response_text == "fine answer"
    assert sink.flushes == 1 and not sink.closed  # flushed at close, closed by its owner


@pytest.mark.parametrize("mode", MODES)
def test_sinks_take_rows_when_there_is_no_log(mode):
    mock = MockProvider("mock", models=("m1",))
    sink = MemorySink()
    gw = Gateway([mock], log=None, sinks=[sink], prices=PRICES, middleware=[Remember(), Refuse()])
    every_outcome(gw, mock, mode)
    assert len(sink) == (6 if "stream" in mode else 5)
    assert gw.log is None and gw.log_health() is None


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_sink_never_fails_a_call_and_is_reported(tmp_path, mode):
    mock = MockProvider("mock", models=("m1",))
    broken = MemorySink(name="team-log", fail=ConnectionError("collector down"))
    healthy = MemorySink()
    with CallLog(tmp_path / "calls.duckdb") as log:
        gw = Gateway(
            [mock],
            log=log,
            sinks=[broken, healthy],
            prices=PRICES,
            middleware=[Remember(), Refuse()],
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            every_outcome(gw, mock, mode)
        gw.close()
        logged = int(log.query("SELECT count(*) AS n FROM calls").n[0])
    # Every row is in the log and in the healthy sink; the broken sink's are counted.
    assert logged == len(healthy) == (6 if "stream" in mode else 5)
    (bad, good) = gw.sink_health()
    assert (bad.name, bad.rows_failed, bad.last_error, bad.ok) == (
        "team-log",
        logged,
        "ConnectionError",
        False,
    )
    assert good.ok and good.as_dict()["rows_failed"] == 0
    sink_warnings = [w for w in caught if issubclass(w.category, CallSinkWarning)]
    assert len(sink_warnings) == 1 and "team-log" in str(sink_warnings[0].message)


def test_a_sink_warning_made_an_error_still_does_not_fail_the_call():
    mock = MockProvider("mock", models=("m1",)).enqueue("fine")
    broken = MemorySink(fail=RuntimeError("no"))
    gw = Gateway([mock], log=None, sinks=[broken], prices=PRICES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gw.chat("mock/m1", "x").text == "fine"
    assert gw.sink_health()[0].rows_failed == 1


class FlakyFlush(MemorySink):
    def flush(self) -> None:
        raise OSError("disk full")


def test_a_sink_that_fails_to_flush_does_not_fail_close_and_is_reported():
    sink = FlakyFlush()
    mock = MockProvider("mock", models=("m1",)).enqueue("a")
    gw = Gateway([mock], log=None, sinks=[sink], prices=PRICES)
    gw.chat("mock/m1", "x")
    with pytest.warns(CallSinkWarning, match="flush"):
        gw.close()
    health = gw.sink_health()[0]
    assert (health.flush_failures, health.rows_failed, health.last_error) == (1, 0, "OSError")
    assert len(sink) == 1


def test_only_call_sinks_are_accepted_and_the_log_is_one():
    assert isinstance(MemorySink(), CallSink)
    with CallLog(":memory:") as log:
        assert isinstance(log, CallSink)
    with pytest.raises(TypeError, match="not a call sink"):
        Gateway([], log=None, sinks=[object()])
    assert Gateway([], log=None).sink_health() == ()


def test_sink_rows_are_made_storable_like_the_logs():
    mock = MockProvider("mock", models=("m1",)).enqueue("y" * 500)
    sink = MemorySink()
    Gateway([mock], log=None, sinks=[sink], prices=PRICES, max_body_chars=100).chat("mock/m1", "x")
    (row,) = sink.rows
    assert len(row.response_text) <= 100 and "truncated_response" in row.flags


class SeesRecorder(Primitive):
    kind = "rate_limit"

    def __init__(self):
        self.seen = []

    def admit(self, ctx, state):
        self.seen.append(ctx.recorder)
        return PROCEED


@pytest.mark.parametrize("mode", MODES)
def test_each_call_context_carries_the_gateways_recorder(mode):
    stage = SeesRecorder()
    mock = MockProvider("mock", models=("m1",)).enqueue("a")
    gw = Gateway([mock], prices=PRICES, middleware=[stage])
    call(gw, mode)
    assert stage.seen == [gw.recorder]
    # A context built without one (as the batch helper does) finds its gateway's.
    ctx = CallContext(
        ChatRequest.create("m1", "x"), "mock", "m1", "t", stream=False, started=0.0,
        started_wall=0.0, gateway=gw,
    )  # fmt: skip
    assert ctx.recorder is gw.recorder


class Ticker:
    def __init__(self, step):
        self.now, self.step = 10.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_a_recorder_prices_times_and_logs_without_a_gateway():
    sink = MemorySink()
    ids = iter(f"id{i}" for i in range(100))
    recorder = Recorder(
        clock=lambda: 1_700_000_000.0,
        perf_counter=Ticker(0.010),
        new_id=lambda: next(ids),
        prices=PriceBook({"p/m": Price(1.0, 2.0)}),
        log=None,
        sinks=[sink],
        max_body_chars=10_000,
        api_format=lambda name: "openai",
        is_simulated=lambda name: False,
    )
    ctx = CallContext(
        ChatRequest.create("m", "hi"), "p", "m", "trace", stream=False, started=10.0,
        started_wall=1_700_000_000.0, gateway=None, recorder=recorder,
    )  # fmt: skip
    call_id = recorder.begin(ctx)
    answer = ChatResponse(
        text="hello",
        finish_reason="stop",
        usage=Usage(input_tokens=1_000_000, output_tokens=500_000),
        provider="p",
        model="m",
        latency=Latency(total_ms=5.0, ttfb_ms=2.0, ttft_ms=3.0, upstream_ms=None),
    )
    upstream_start = recorder.perf()  # 10.01 s: the request leaves 10 ms into the attempt
    done = recorder.complete(ctx, answer, upstream_start, call_id)
    assert done.cost_usd == pytest.approx(2.0)  # $1 input + $1 output
    assert done.call_id == call_id == "id0" and done.trace_id == "trace"
    assert done.latency.total_ms == pytest.approx(20.0)  # read again at 10.02 s
    assert done.latency.ttft_ms == pytest.approx(13.0)  # the upstream's 3 ms + 10 ms
    assert done.latency.upstream_ms == pytest.approx(5.0)
    recorder.failed(ctx, TimeoutError("slow"), upstream_start, "par", call_id="id9")
    recorder.log_refused(ctx, BudgetExceededError("over"))
    ok, failed, refused = sink.rows
    assert (ok.status, ok.api_format, ok.cost_usd) == ("ok", "openai", pytest.approx(2.0))
    assert (failed.call_id, failed.response_text, failed.attempt) == ("id9", "par", 1)
    assert (refused.status, refused.attempt) == ("error", 0)
    assert ctx.logged == 3


def test_sinks_get_every_row_from_many_threads_and_failures_are_all_counted():
    import threading

    mock = MockProvider("mock", models=("m1",))
    mock.enqueue(*[f"answer {i}" for i in range(200)])
    good, bad = MemorySink(), MemorySink(fail=ValueError("bad"))
    gw = Gateway([mock], log=None, sinks=[good, bad], prices=PRICES)

    def worker():
        for _ in range(25):
            gw.chat("mock/m1", "x")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CallSinkWarning)
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len({row.call_id for row in good.rows}) == len(good) == 200
    assert gw.sink_health()[1].rows_failed == 200


def test_each_providers_wire_format_is_looked_up_once_and_logged_on_its_rows(tmp_path):
    # The recorder remembers a provider's wire format after its first completed call (the
    # lookup runs on the calling thread of every logged call); a provider without one is
    # asked again each time, and each row carries its own provider's format.
    asked: list[str] = []

    def api_format(name: str) -> str | None:
        asked.append(name)
        return {"p": "openai", "q": "anthropic"}.get(name)

    with CallLog(tmp_path / "formats.duckdb") as log:
        recorder = Recorder(
            clock=lambda: 1_700_000_000.0,
            perf_counter=Ticker(0.010),
            new_id=iter(f"id{i}" for i in range(100)).__next__,
            prices=PriceBook({f"{name}/m": Price(1.0, 2.0) for name in "pqr"}),
            log=log,
            max_body_chars=10_000,
            api_format=api_format,
            is_simulated=lambda name: False,
        )
        for name in ("p", "q", "p", "r", "q", "r", "p"):
            ctx = CallContext(
                ChatRequest.create("m", "hi"), name, "m", f"trace-{len(asked)}", stream=False,
                started=10.0, started_wall=1_700_000_000.0, gateway=None, recorder=recorder,
            )  # fmt: skip
            answer = ChatResponse(
                text="hello",
                finish_reason="stop",
                usage=Usage(input_tokens=1, output_tokens=1),
                provider=name,
                model="m",
                latency=Latency(total_ms=5.0, ttfb_ms=2.0, ttft_ms=3.0, upstream_ms=None),
            )
            recorder.complete(ctx, answer, recorder.perf(), recorder.begin(ctx))
        rows = log.execute("SELECT provider_name, api_format FROM calls")
    assert sorted(asked) == ["p", "q", "r", "r"]
    assert sorted(set(rows), key=str) == [("p", "openai"), ("q", "anthropic"), ("r", None)]
    assert len(rows) == 7
