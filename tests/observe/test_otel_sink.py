"""The OpenTelemetry sink, exported over real OTLP/HTTP to a loopback receiver: a call span
and a child per attempt with the GenAI attributes, errors as span status, in every call
mode; no prompt or answer in spans unless asked."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from aigw_lab import Gateway, Price  # noqa: E402
from aigw_lab.errors import ProviderServerError, UnknownProviderError  # noqa: E402
from aigw_lab.gateway.otel_sink import OtelSink  # noqa: E402
from aigw_lab.gateway.reliability import Retry  # noqa: E402
from aigw_lab.testing.fakes import MockProvider  # noqa: E402
from tests._call_modes import MODES, call_in_mode  # noqa: E402
from tests.observe.otlp_receiver import OtlpReceiver  # noqa: E402

PRICES = {"mock/m": Price(1.0, 2.0)}


@pytest.fixture
def receiver():
    with OtlpReceiver() as running:
        yield running


def _gateway(sink, *replies, retry=False):
    mock = MockProvider("mock", models=("m",)).enqueue(*replies)
    middleware = (
        [Retry(max_attempts=3, sleep=lambda s: None, async_sleep=_no_wait)] if retry else []
    )
    return Gateway([mock], log=None, sinks=[sink], prices=PRICES, middleware=middleware)


async def _no_wait(seconds):
    return None


def _by_parent(spans):
    calls = [s for s in spans if not s["parent_span_id"]]
    children = {
        c["span_id"]: [s for s in spans if s["parent_span_id"] == c["span_id"]] for c in calls
    }
    return calls, children


@pytest.mark.parametrize("mode", MODES)
def test_a_retried_call_is_one_call_span_with_an_error_child_and_an_ok_child(receiver, mode):
    sink = OtelSink(endpoint=receiver.endpoint)
    gw = _gateway(
        sink,
        ProviderServerError("boom", provider="mock", model="m", status=500),
        "hello there",
        retry=True,
    )
    response, _ = call_in_mode(gw, mode, "mock/m")
    gw.close()
    sink.close()
    calls, children = _by_parent(receiver.spans)
    assert len(calls) == 1, receiver.spans
    call = calls[0]
    attempts = sorted(children[call["span_id"]], key=lambda s: s["attributes"]["aigw.attempt"])
    assert [a["attributes"]["aigw.attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["status"] == 2 and attempts[0]["attributes"]["error.type"] == "server_error"
    assert attempts[1]["status"] != 2
    attrs = call["attributes"]
    assert call["name"] == "chat m"
    assert call["trace_id"] == response.trace_id  # the gateway's own trace id
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "m"
    assert attrs["gen_ai.response.model"] == response.model
    assert attrs["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    assert attrs["gen_ai.response.finish_reasons"] == (response.finish_reason,)
    assert attrs["aigw.cost_usd"] == pytest.approx(response.cost_usd)
    assert attrs["aigw.cache_status"] == "none"
    assert attrs["aigw.call_id"] == response.call_id
    assert attrs["aigw.stream"] is (mode in ("stream", "astream"))
    assert attrs["aigw.attempts"] == 2
    assert call["status"] != 2
    assert call["resource"]["service.name"] == "aigw-lab"
    # Children lie within their call.
    for attempt in attempts:
        assert call["start"] <= attempt["start"] <= attempt["end"] <= call["end"] + 5_000_000
    # No prompt or answer by default.
    assert not any("messages" in key for s in receiver.spans for key in s["attributes"])


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_call_has_error_status_and_its_error_type(receiver, mode):
    sink = OtelSink(endpoint=receiver.endpoint)
    gw = _gateway(sink, ProviderServerError("boom", provider="mock", model="m", status=503))
    with pytest.raises(ProviderServerError):
        call_in_mode(gw, mode, "mock/m")
    gw.close()
    sink.close()
    calls, children = _by_parent(receiver.spans)
    assert len(calls) == 1
    assert calls[0]["status"] == 2
    assert calls[0]["attributes"]["error.type"] == "server_error"
    assert calls[0]["attributes"]["aigw.status"] == "error"
    assert [
        c["attributes"]["http.response.status_code"] for c in children[calls[0]["span_id"]]
    ] == [503]


def test_tenant_and_content_opt_in(receiver):
    sink = OtelSink(endpoint=receiver.endpoint, capture_content=True, service_name="gw-a")
    gw = _gateway(sink, "the answer")
    gw.chat("mock/m", "the question", tenant="acme")
    gw.close()
    sink.close()
    (call,) = [s for s in receiver.spans if not s["parent_span_id"]]
    assert call["attributes"]["aigw.tenant"] == "acme"
    assert "the question" in call["attributes"]["gen_ai.input.messages"]
    assert call["attributes"]["gen_ai.output.messages"] == "the answer"
    assert call["resource"]["service.name"] == "gw-a"


def test_a_rejected_call_is_a_span_too(receiver):
    sink = OtelSink(endpoint=receiver.endpoint)
    gw = _gateway(sink)
    with pytest.raises(UnknownProviderError):
        gw.chat("nowhere/m", "hi")
    gw.close()
    sink.close()
    (call,) = receiver.spans
    assert call["status"] == 2
    assert call["attributes"]["aigw.attempts"] == 0


def test_a_cache_hit_is_a_call_span_without_attempts(receiver):
    from aigw_lab.gateway.cache import ExactCache

    sink = OtelSink(endpoint=receiver.endpoint)
    mock = MockProvider("mock", models=("m",))
    gw = Gateway([mock], log=None, sinks=[sink], prices=PRICES, middleware=[ExactCache()])
    gw.chat("mock/m", "same", temperature=0)
    gw.chat("mock/m", "same", temperature=0)
    gw.close()
    sink.close()
    calls, children = _by_parent(receiver.spans)
    statuses = sorted(c["attributes"]["aigw.cache_status"] for c in calls)
    assert statuses == ["hit", "miss"]
    hit = next(c for c in calls if c["attributes"]["aigw.cache_status"] == "hit")
    assert children[hit["span_id"]] == []
    assert hit["attributes"]["aigw.cost_usd"] == 0.0


def test_rows_whose_call_never_ends_are_exported_at_close(receiver):
    from datetime import UTC, datetime

    from aigw_lab.store.records import CallRecord

    sink = OtelSink(endpoint=receiver.endpoint)
    sink.append(
        CallRecord(
            call_id="c1",
            trace_id="0123456789abcdef0123456789abcdef",
            timestamp=datetime.now(UTC),
            provider_name="p",
            request_model="m",
            latency_ms=5.0,
        )
    )
    sink.flush()
    assert receiver.spans == []  # still waiting for its call's end
    sink.close()
    calls, children = _by_parent(receiver.spans)
    assert [c["trace_id"] for c in calls] == ["0123456789abcdef0123456789abcdef"]
    assert len(children[calls[0]["span_id"]]) == 1  # its one attempt


def test_export_failures_never_fail_a_call():
    sink = OtelSink(endpoint="http://127.0.0.1:9", timeout_s=0.5)  # nothing listens there
    gw = _gateway(sink, "ok")
    assert gw.chat("mock/m", "hi").text == "ok"
    gw.close()
    sink.close()


def test_sampling_keeps_whole_calls_by_trace_id(receiver):
    sink = OtelSink(endpoint=receiver.endpoint, sample_ratio=0.5)
    gw = _gateway(sink)
    responses = [gw.chat("mock/m", f"q{i}") for i in range(40)]
    gw.close()
    sink.close()
    calls, children = _by_parent(receiver.spans)
    kept = {c["trace_id"] for c in calls}
    assert 5 < len(kept) < 35  # about half
    assert kept < {r.trace_id for r in responses}
    assert all(len(children[c["span_id"]]) == 1 for c in calls)  # never half a call
    none = OtelSink(endpoint=receiver.endpoint, sample_ratio=0.0)
    gw = _gateway(none)
    gw.chat("mock/m", "x")
    gw.close()
    none.close()
    assert len(receiver.spans) == 2 * len(kept)
