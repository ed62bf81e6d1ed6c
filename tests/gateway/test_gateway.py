"""The Gateway core: addressing, the per-attempt log rows, streams, errors, pricing, safety."""

import asyncio
import json
import threading
import warnings

import pytest

from aigw_lab import ChatRequest, Gateway, Price
from aigw_lab.errors import (
    InvalidRequestError,
    OverloadedError,
    RateLimitedError,
    StreamInterruptedError,
    UnknownModelError,
    UnknownProviderError,
)
from aigw_lab.gateway.middleware import Middleware
from aigw_lab.pricing import UnknownPriceWarning
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from aigw_lab.types import ChatResponse, StreamEnd, TextDelta, Usage


class Ticker:
    """A fake perf_counter that advances by a fixed step each time it is read."""

    def __init__(self, step=0.001):
        self.now = 100.0
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


def make_gateway(log, *providers, **kwargs):
    kwargs.setdefault("prices", {"mock/m1": Price(1.0, 2.0)})
    return Gateway(
        list(providers) or [MockProvider("mock", models=("m1", "m2"))], log=log, **kwargs
    )


def rows(log, where="TRUE"):
    return log.query(f"SELECT * FROM calls WHERE {where} ORDER BY timestamp, attempt")


def test_chat_returns_priced_response_and_logs_one_row(log):
    mock = MockProvider("mock", models=("m1",)).enqueue(
        ChatResponse(
            text="four",
            finish_reason="stop",
            usage=Usage(input_tokens=1000, output_tokens=500),
            provider="x",
            model="m1",
            response_id="r1",
        )
    )
    gw = make_gateway(log, mock, tags={"team": "t"}, experiment_id="exp1")
    resp = gw.chat("mock/m1", "2+2?", temperature=0, user="u1", tenant="acme", tags={"k": "v"})
    assert resp.text == "four" and resp.provider == "mock"
    assert resp.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert resp.call_id and resp.attempts == 1 and resp.simulated
    assert mock.requests[0].model == "m1"  # the provider sees its own model name
    df = rows(log)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row.provider_name, row.request_model, row.status) == ("mock", "m1", "ok")
    assert row.call_id == resp.call_id and row.response_id == "r1"
    assert row.input_tokens == 1000 and row.output_tokens == 500
    assert row.cost_usd == pytest.approx(resp.cost_usd)
    assert row.user_id == "u1" and row.tenant_id == "acme" and row.experiment_id == "exp1"
    assert json.loads(row.tags_json) == {"team": "t", "k": "v"}
    request = json.loads(row.request_json)
    assert (
        request["messages"] == [{"role": "user", "content": "2+2?"}] and request["temperature"] == 0
    )
    assert bool(row.simulated) is True


def test_latency_uses_the_injected_clock_and_splits_overhead(log):
    ticker = Ticker(step=0.002)
    gw = make_gateway(log, perf_counter=ticker)
    resp = gw.chat("mock/m1", "hi")
    # Reads: context start, upstream start, complete -> 2 steps of 2 ms between start and end.
    assert resp.latency.total_ms == pytest.approx(4.0)
    row = rows(log).iloc[0]
    assert row.latency_ms == pytest.approx(4.0)
    assert row.overhead_ms == pytest.approx(row.latency_ms - row.upstream_ms)


def test_errors_are_logged_with_type_status_and_then_raised(log):
    mock = MockProvider("mock", models=("m1",)).enqueue(
        RateLimitedError("slow down", retry_after=3.0, provider="mock", model="m1", status=429),
        OverloadedError("busy", provider="mock", model="m1", status=529),
    )
    gw = make_gateway(log, mock)
    with pytest.raises(RateLimitedError) as info:
        gw.chat("mock/m1", "a")
    assert info.value.retry_after == 3.0 and info.value.retryable
    with pytest.raises(OverloadedError):
        gw.chat("mock/m1", "b")
    df = rows(log)
    assert list(df.error_type) == ["rate_limited", "overloaded"]
    assert list(df.http_status_code) == [429, 529]
    assert set(df.status) == {"error"}


@pytest.mark.parametrize(
    ("model", "messages", "error", "fragment"),
    [
        ("mokc/m1", "hi", UnknownProviderError, "did you mean 'mock'"),
        ("m1", "hi", UnknownProviderError, "provider/model"),
        ("mock/m9", "hi", UnknownModelError, "m1, m2"),
        ("mock/m1", [{"role": "bot", "content": "x"}], InvalidRequestError, "role 'bot'"),
    ],
)
def test_bad_input_is_a_clear_typed_error_and_still_logged(log, model, messages, error, fragment):
    gw = make_gateway(log)
    with pytest.raises(error) as info:
        gw.chat(model, messages)
    assert fragment in str(info.value)
    df = rows(log)
    assert len(df) == 1 and df.iloc[0].status == "error"
    assert df.iloc[0].error_type == error.error_type


def test_default_provider_serves_bare_and_slashed_model_names(log):
    seen = []
    fn = FunctionProvider(lambda r: seen.append(r.model) or "ok", name="router")
    gw = Gateway([fn], log=log, default_provider="router")
    gw.chat("plain-model", "x")
    gw.chat("openai/gpt-4o", "x")  # OpenRouter-style names keep their slash
    assert seen == ["plain-model", "openai/gpt-4o"]


def test_stream_yields_text_then_response_and_logs_ttft(log):
    gw = make_gateway(log, MockProvider("mock", models=("m1",)).enqueue("one two three"))
    with gw.stream("mock/m1", "count") as stream:
        pieces = list(stream)
    assert "".join(pieces) == "one two three" and len(pieces) == 3
    assert stream.response.text == "one two three"
    row = rows(log).iloc[0]
    assert bool(row.stream) and row.status == "ok" and row.response_text == "one two three"


def test_abandoned_stream_is_logged_as_cancelled_with_partial_text(log):
    gw = make_gateway(log, MockProvider("mock", models=("m1",)).enqueue("alpha beta gamma"))
    stream = gw.stream("mock/m1", "x")
    iterator = iter(stream)
    assert next(iterator) == "alpha "
    stream.close()
    iterator.close()
    row = rows(log).iloc[0]
    assert row.status == "cancelled" and row.response_text == "alpha "


class BrokenStreamProvider(MockProvider):
    def stream(self, request):
        yield TextDelta("partial ")
        raise StreamInterruptedError(
            "stream cut",
            partial_text="partial ",
            text_delivered=True,
            provider=self.name,
            model=request.model,
        )


def test_interrupted_stream_raises_and_logs_partial_text(log):
    gw = make_gateway(log, BrokenStreamProvider("mock", models=("m1",)))
    with pytest.raises(StreamInterruptedError):
        for _ in gw.stream("mock/m1", "x"):
            pass
    row = rows(log).iloc[0]
    assert row.error_type == "stream_interrupted" and row.response_text == "partial "


class NoEndProvider(MockProvider):
    def stream(self, request):
        yield TextDelta("never ends")


def test_provider_stream_without_end_event_is_an_error_not_a_short_answer(log):
    gw = make_gateway(log, NoEndProvider("mock", models=("m1",)))
    with pytest.raises(Exception) as info:
        list(gw.stream("mock/m1", "x"))
    assert "final event" in str(info.value)
    assert rows(log).iloc[0].status == "error"


async def test_async_chat_and_stream(log):
    gw = make_gateway(log, MockProvider("mock", models=("m1",)).enqueue("a", "b c"))
    assert (await gw.achat("mock/m1", "x")).text == "a"
    stream = gw.astream("mock/m1", "y")
    assert [t async for t in stream] == ["b ", "c"]
    assert stream.response.text == "b c"
    assert len(rows(log)) == 2


async def test_cancelled_async_call_is_logged(log):
    started = asyncio.Event()

    class Slow(MockProvider):
        async def achat(self, request):
            started.set()
            await asyncio.sleep(10)

    gw = make_gateway(log, Slow("mock", models=("m1",)))
    task = asyncio.create_task(gw.achat("mock/m1", "x"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rows(log).iloc[0].status == "cancelled"


def test_gateway_is_a_provider_and_accepts_requests(log):
    inner = make_gateway(None)
    outer = Gateway([_named(inner, "inner")], log=log)
    request = ChatRequest.create("inner/mock/m1", "hi")
    assert outer.chat(request).text == "ok"


def _named(gateway, name):
    gateway.name = name
    return gateway


def test_thread_safety_every_call_logged_once(log):
    gw = make_gateway(
        log, FunctionProvider(lambda r: r.messages[-1].text, name="mock", models=("m1",))
    )
    errors = []

    def worker(k):
        try:
            for i in range(50):
                assert gw.chat("mock/m1", f"{k}-{i}").text == f"{k}-{i}"
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    df = log.query("SELECT count(*) AS n, count(DISTINCT call_id) AS ids FROM calls")
    assert df.n[0] == 400 and df.ids[0] == 400


async def test_asyncio_concurrency_every_call_logged(log):
    gw = make_gateway(log, FunctionProvider(lambda r: "x", name="mock", models=("m1",)))
    await asyncio.gather(*(gw.achat("mock/m1", str(i)) for i in range(200)))
    assert len(rows(log)) == 200


def test_unknown_price_logs_null_cost_and_warns(log):
    gw = Gateway([MockProvider("mock", models=("m1",))], log=log)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resp = gw.chat("mock/m1", "x")
    assert resp.cost_usd is None
    assert any(issubclass(w.category, UnknownPriceWarning) for w in caught)
    assert rows(log).cost_usd.isna().all()


class Recorder(Middleware):
    def __init__(self, kind, trail):
        self.kind = kind
        self.trail = trail

    def handle(self, ctx, call_next):
        self.trail.append(self.kind)
        return call_next(ctx)


def test_middleware_runs_in_the_documented_order(log):
    trail = []
    gw = make_gateway(
        log,
        middleware=[Recorder("retry", trail), Recorder("budget", trail), Recorder("cache", trail)],
    )
    gw.chat("mock/m1", "x")
    assert trail == ["budget", "cache", "retry"]
    assert gw.pipeline == ["budget", "cache", "retry", "provider", "cost", "log"]


def test_close_flushes_the_log_and_is_idempotent(tmp_path):
    path = tmp_path / "own.duckdb"
    gw = Gateway([MockProvider("mock", models=("m1",))], log=str(path))
    gw.chat("mock/m1", "x")
    gw.close()
    gw.close()
    with CallLog(path) as reopened:
        assert len(reopened.query("SELECT * FROM calls")) == 1


def test_stream_events_from_provider_include_end(log):
    mock = MockProvider("mock", models=("m1",)).enqueue("x y")
    events = list(mock.stream(ChatRequest.create("m1", "q")))
    assert isinstance(events[-1], StreamEnd) and all(isinstance(e, TextDelta) for e in events[:-1])


class AnswerFromMemory(Middleware):
    kind = "cache"

    def handle(self, ctx, call_next):
        cached = ChatResponse(
            text="remembered",
            finish_reason="stop",
            usage=Usage(input_tokens=10, output_tokens=5),
            provider="mock",
            model="m1",
        )
        return ctx.gateway.serve_without_provider(ctx, cached, similarity=0.97)


def test_middleware_can_serve_without_a_provider_and_it_is_logged(log):
    mock = MockProvider("mock", models=("m1",))
    gw = make_gateway(log, mock, middleware=[AnswerFromMemory()])
    resp = gw.chat("mock/m1", "x")
    assert resp.text == "remembered" and resp.cost_usd == 0.0 and resp.cache_status == "hit"
    assert mock.requests == []  # the provider was never called
    row = rows(log).iloc[0]
    assert (row.cache_status, row.attempt, row.cost_usd, row.status) == ("hit", 0, 0.0, "ok")
    assert row.cache_similarity == pytest.approx(0.97) and row.output_tokens == 5


def test_constructor_mistakes_are_config_errors():
    from aigw_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="used twice"):
        Gateway([MockProvider("a"), MockProvider("a")], log=None)
    with pytest.raises(ConfigError, match="default_provider 'b'"):
        Gateway([MockProvider("a")], log=None, default_provider="b")


class Refuser(Middleware):
    kind = "budget"

    def handle(self, ctx, call_next):
        raise InvalidRequestError("refused by a middleware", hint="change the request")

    def handle_stream(self, ctx, call_next):
        raise InvalidRequestError("refused by a middleware", hint="change the request")


def test_a_call_refused_by_middleware_still_gets_a_row(log):
    mock = MockProvider("mock", models=("m1",))
    gw = make_gateway(log, mock, middleware=[Refuser()])
    with pytest.raises(InvalidRequestError):
        gw.chat("mock/m1", "x")
    with pytest.raises(InvalidRequestError):
        list(gw.stream("mock/m1", "y"))
    df = rows(log)
    assert list(df.status) == ["error", "error"] and list(df.attempt) == [0, 0]
    assert set(df.error_type) == {"invalid_request"} and mock.requests == []


def test_mock_streams_keep_spacing_exactly(log):
    gw = make_gateway(log, MockProvider("mock", models=("m1",)).enqueue("a  b\n\nc "))
    assert "".join(gw.stream("mock/m1", "x")) == "a  b\n\nc "


class SlowGate(Middleware):
    kind = "rate_limit"

    def __init__(self, started):
        self.started = started

    async def ahandle(self, ctx, call_next):
        self.started.set()
        await asyncio.sleep(10)  # a limiter queue, say
        return await call_next(ctx)


async def test_a_call_cancelled_while_a_middleware_waits_is_logged(log):
    started = asyncio.Event()
    gw = make_gateway(log, middleware=[SlowGate(started)])
    task = asyncio.create_task(gw.achat("mock/m1", "x"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = rows(log).iloc[0]
    assert (row.status, row.error_type, row.attempt) == ("cancelled", "cancelled", 0)


def test_public_seams_for_extensions_resolve_and_describe_like_a_call():
    """spec / resolve / with_defaults / new_id: what extensions such as the batch helper use
    instead of the gateway's private state."""
    import pytest

    from aigw_lab import Gateway, UnknownProviderError
    from aigw_lab.types import ChatRequest

    with Gateway.simulated_fleet(log=None, tags={"team": "a"}, experiment_id="e1") as gw:
        assert gw.spec("sim-openai").kind == "simulated" and gw.spec("nope") is None
        assert gw.resolve("sim-openai/sim-small") == ("sim-openai", "sim-small")
        with pytest.raises(UnknownProviderError):
            gw.resolve("nope/x")
        request = gw.with_defaults(ChatRequest.create("sim-small", "hi"))
        assert dict(request.tags) == {"team": "a"} and request.experiment_id == "e1"
        first, second = gw.new_id(), gw.new_id()
        assert first != second
