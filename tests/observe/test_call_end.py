"""The recorder tells observing sinks when each call is over (`CallEnd`), once per call,
after its last row, in every mode; a sink that raises there never fails the call."""

from __future__ import annotations

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import ProviderServerError
from aigw_lab.gateway import CallEnd, MetricsSink, OtelSink
from aigw_lab.testing.fakes import MockProvider
from tests._call_modes import MODES, call_in_mode

PRICES = {"mock/m": Price(1.0, 2.0)}


class Observer:
    name = "observer"

    def __init__(self, fail=False):
        self.events = []
        self.fail = fail

    def append(self, record):
        self.events.append(("row", record.trace_id, record.status))

    def call_ended(self, end):
        if self.fail:
            raise RuntimeError("observer broke")
        self.events.append(("end", end))

    def flush(self):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("mode", MODES)
def test_one_end_per_call_after_its_rows(mode):
    observer = Observer()
    mock = MockProvider("mock", models=("m",)).enqueue("fine")
    gw = Gateway([mock], log=None, sinks=[observer], prices=PRICES)
    response, _ = call_in_mode(gw, mode, "mock/m")
    assert [e[0] for e in observer.events] == ["row", "end"]
    end = observer.events[-1][1]
    assert isinstance(end, CallEnd)
    assert (end.trace_id, end.status, end.attempts, end.call_id) == (
        response.trace_id, "ok", 1, response.call_id,
    )  # fmt: skip
    assert end.stream is (mode in ("stream", "astream"))
    assert end.duration_s >= 0


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_call_ends_once_with_its_error(mode):
    observer = Observer()
    mock = MockProvider("mock", models=("m",)).enqueue(
        ProviderServerError("boom", provider="mock", model="m", status=500)
    )
    gw = Gateway([mock], log=None, sinks=[observer], prices=PRICES)
    with pytest.raises(ProviderServerError):
        call_in_mode(gw, mode, "mock/m")
    ends = [e[1] for e in observer.events if e[0] == "end"]
    assert [(e.status, e.error_type) for e in ends] == [("error", "server_error")]


def test_an_abandoned_stream_ends_as_cancelled():
    observer = Observer()
    mock = MockProvider("mock", models=("m",), default="one two three four five six")
    gw = Gateway([mock], log=None, sinks=[observer], prices=PRICES)
    stream = gw.stream("mock/m", "hi")
    next(iter(stream))
    stream.close()
    ends = [e[1] for e in observer.events if e[0] == "end"]
    assert [e.status for e in ends] == ["cancelled"]


def test_a_sink_failing_at_call_end_never_fails_the_call():
    observer = Observer(fail=True)
    gw = Gateway([MockProvider("mock", models=("m",))], log=None, sinks=[observer], prices=PRICES)
    with pytest.warns(Warning, match="observer"):
        assert gw.chat("mock/m", "hi").text == "ok"
    (health,) = gw.sink_health()
    assert health.rows_failed == 1 and health.last_error == "RuntimeError"


def test_sinks_without_call_ended_cost_nothing_more():
    class RowsOnly(Observer):
        call_ended = None

    gw = Gateway([MockProvider("mock", models=("m",))], log=None, sinks=[RowsOnly()], prices=PRICES)
    assert gw.recorder.observes_calls is False


def test_the_observability_sinks_are_public():
    import aigw_lab.gateway as gateway

    assert {"CallEnd", "OtelSink", "MetricsSink"} <= set(gateway.__all__)
    assert gateway.OtelSink is OtelSink and gateway.MetricsSink is MetricsSink


def test_shadow_calls_are_marked_and_not_counted_as_requests():
    from prometheus_client.parser import text_string_to_metric_families

    from aigw_lab.gateway import Shadow

    observer, metrics = Observer(), MetricsSink()
    live = MockProvider("mock", models=("m",))
    candidate = MockProvider("cand", models=("m",))
    gw = Gateway(
        [live, candidate],
        log=None,
        sinks=[observer, metrics],
        prices={**PRICES, "cand/m": Price(1.0, 2.0)},
        shadow=Shadow("cand/m", share=1.0, budget_usd=1.0, seed=0),
    )
    response = gw.chat("mock/m", "hi")
    gw.close()
    ends = [e[1] for e in observer.events if e[0] == "end"]
    assert sorted((e.provider, e.shadow_of) for e in ends) == [
        ("cand", response.call_id),
        ("mock", None),
    ]
    samples = [
        (s.name, s.labels.get("provider"), s.value)
        for family in text_string_to_metric_families(metrics.exposition()[0].decode())
        for s in family.samples
    ]
    assert [(p, v) for n, p, v in samples if n == "aigw_requests_total"] == [("mock", 1.0)]
    assert sorted((p, v) for n, p, v in samples if n == "aigw_attempts_total") == [
        ("cand", 1.0),
        ("mock", 1.0),
    ]
