"""The HTTP gateway with ``[otel]`` and ``[metrics]`` together, called with the official
SDKs: every call is a trace at a real loopback OTLP receiver, under the calling key's
tenant, its trace id the one in the ``x-aigw-trace-id`` header; the metrics count the same
calls."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from aigw_lab.config import load_config  # noqa: E402
from aigw_lab.gateway import OtelSink  # noqa: E402
from aigw_lab.gateway.gateway import Gateway  # noqa: E402
from aigw_lab.server import BackgroundServer, GatewayApp, KeyRing  # noqa: E402
from tests._sdks import anthropic, openai  # noqa: E402
from tests.observe.otlp_receiver import OtlpReceiver  # noqa: E402
from tests.server.helpers import BASE_CONFIG, ENV, KEY_A, KEY_B  # noqa: E402


def test_served_calls_are_traced_and_counted(tmp_path):
    with OtlpReceiver() as receiver:
        path = tmp_path / "gw.toml"
        path.write_text(BASE_CONFIG + f'\n[otel]\nendpoint = "{receiver.endpoint}"\n\n[metrics]\n')
        config = load_config(path, env=ENV)
        gateway = Gateway.from_config(path, env=ENV, log=tmp_path / "calls.duckdb")
        keys = KeyRing.from_specs(config.server.keys, ENV)
        with BackgroundServer(GatewayApp(gateway, keys, close_gateway=True)) as server:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY_A, max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="sim-openai/sim-small", messages=[{"role": "user", "content": "hi"}]
            )
            trace_id = raw.headers["x-aigw-trace-id"]
            chunks = client.chat.completions.create(
                model="sim-openai/sim-small",
                messages=[{"role": "user", "content": "stream"}],
                stream=True,
            )
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            claude = anthropic.Anthropic(base_url=server.url, api_key=KEY_B, max_retries=0)
            claude.messages.create(
                model="sim-anthropic/sim-haikuish",
                max_tokens=32,
                messages=[{"role": "user", "content": "hello"}],
            )
            page = httpx.get(
                f"{server.url}/metrics", headers={"authorization": f"Bearer {KEY_A}"}
            ).text
        (sink,) = [s for s in gateway.recorder.sinks if isinstance(s, OtelSink)]
        sink.close()
    calls = [s for s in receiver.spans if not s["parent_span_id"]]
    assert len(calls) == 3
    by_trace = {c["trace_id"]: c for c in calls}
    assert by_trace[trace_id]["attributes"]["aigw.tenant"] == "a"
    assert by_trace[trace_id]["attributes"]["gen_ai.provider.name"] == "openai"
    tenants = sorted(c["attributes"]["aigw.tenant"] for c in calls)
    assert tenants == ["a", "a", "b"]
    claude_span = next(c for c in calls if c["attributes"]["aigw.tenant"] == "b")
    assert claude_span["attributes"]["gen_ai.provider.name"] == "anthropic"
    assert claude_span["attributes"]["gen_ai.request.model"] == "sim-haikuish"
    counted = {
        sample.labels["tenant"]: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "aigw_requests_total"
    }
    assert counted == {"a": 2, "b": 1}
