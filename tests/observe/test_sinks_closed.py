"""The sinks a config builds (``[otel]``, ``[metrics]``) belong to the gateway built from it:
`Gateway.close`, the context manager and `aclose` close each exactly once (the OTel sink
exports what it holds and shuts its exporter down), however often the gateway is closed.
Sinks a caller passes as ``sinks=`` stay the caller's: flushed, never closed."""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.gateway.metrics_sink import MetricsSink
from aigw_lab.gateway.otel_sink import OtelSink
from aigw_lab.testing import MemorySink
from tests.observe.otlp_receiver import OtlpReceiver

CONFIG = """
[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0
models = ["sim-small"]

[otel]
endpoint = "{endpoint}"

[metrics]
"""


@pytest.fixture
def closes(monkeypatch):
    """How many times each sink kind's close ran."""
    counts = {OtelSink: 0, MetricsSink: 0}
    for kind in counts:
        original = kind.close

        def counted(self, _original=original, _kind=kind):
            counts[_kind] += 1
            return _original(self)

        monkeypatch.setattr(kind, "close", counted)
    return counts


@pytest.mark.parametrize("how", ["close", "with", "aclose"])
def test_a_configs_sinks_are_closed_once_with_the_gateway(tmp_path, closes, how):
    with OtlpReceiver() as receiver:
        path = tmp_path / "gw.toml"
        path.write_text(CONFIG.format(endpoint=receiver.endpoint))
        mine = MemorySink()
        gw = Gateway.from_config(path, log=None, sinks=[mine])
        if how == "with":
            with gw:
                gw.chat("sim/sim-small", "hi")
        elif how == "aclose":

            async def run():
                await gw.achat("sim/sim-small", "hi")
                await gw.aclose()

            asyncio.run(run())
        else:
            gw.chat("sim/sim-small", "hi")
            gw.close()
        gw.close()
        otel = next(s for s in gw.recorder.sinks if isinstance(s, OtelSink))
        # Closed, so exported: the call's span reached the receiver without a flush by us.
        assert any(not span["parent_span_id"] for span in receiver.spans)
    assert closes == {OtelSink: 1, MetricsSink: 1}
    assert otel._closed
    assert len(mine.rows) == 1 and mine.flushes >= 1
    assert not mine.closed  # the caller's sink: flushed, never closed by the gateway


def test_owned_resources_close_once_in_order_even_when_one_fails():
    closed = []

    class Resource:
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def close(self):
            closed.append(self.name)
            if self.fails:
                raise OSError(f"{self.name} failed")

    first, broken, last = Resource("first"), Resource("broken", fails=True), Resource("last")
    gw = Gateway([], log=None)
    gw.own(first, broken)
    gw.own(broken, last)  # owning twice closes once
    with pytest.raises(OSError, match="broken failed"):
        gw.close()
    gw.close()
    assert closed == ["first", "broken", "last"]


def test_owning_after_close_is_refused():
    gw = Gateway([], log=None)
    gw.close()
    with pytest.raises(RuntimeError, match="closed"):
        gw.own(MemorySink())
