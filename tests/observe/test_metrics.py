"""Prometheus metrics at ``/metrics`` of the HTTP gateway, scraped after real calls through
the official openai SDK, parsed with prometheus_client's own parser; label values bounded."""

from __future__ import annotations

import httpx
import pytest

from tests._sdks import openai

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from aigw_lab.config import load_config  # noqa: E402
from aigw_lab.gateway.call_end import CallEnd  # noqa: E402
from aigw_lab.gateway.gateway import Gateway  # noqa: E402
from aigw_lab.gateway.metrics_sink import MetricsSink  # noqa: E402
from aigw_lab.server import BackgroundServer, GatewayApp, KeyRing  # noqa: E402
from aigw_lab.store import CallLog  # noqa: E402
from tests.server.helpers import BASE_CONFIG, ENV, KEY_A, KEY_B  # noqa: E402


def _samples(text):
    """{(sample name, frozenset of labels): value}"""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def _serve(tmp_path, extra=""):
    path = tmp_path / "gw.toml"
    path.write_text(BASE_CONFIG + "\n[metrics]\n" + extra)
    config = load_config(path, env=ENV)
    gateway = Gateway.from_config(path, env=ENV, log=tmp_path / "calls.duckdb")
    keys = KeyRing.from_specs(config.server.keys, ENV)
    return gateway, BackgroundServer(GatewayApp(gateway, keys, close_gateway=True))


def test_metrics_after_real_calls_through_the_openai_sdk(tmp_path):
    gateway, server = _serve(tmp_path)
    with server:
        a = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY_A, max_retries=0)
        b = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY_B, max_retries=0)
        for _ in range(3):
            a.chat.completions.create(
                model="sim-openai/sim-small", messages=[{"role": "user", "content": "hi"}]
            )
        streamed = b.chat.completions.create(
            model="sim-openai/sim-small",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        with pytest.raises(openai.NotFoundError):
            a.chat.completions.create(
                model="sim-openai/no-such-model", messages=[{"role": "user", "content": "x"}]
            )
        scrape = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {KEY_A}"})
        unauthenticated = httpx.get(f"{server.url}/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert unauthenticated.status_code == 401
    samples = _samples(scrape.text)
    ok = {"provider": "sim-openai", "model": "sim-small", "status": "ok"}
    assert _value(samples, "aigw_requests_total", tenant="a", **ok) == 3
    assert _value(samples, "aigw_requests_total", tenant="b", **ok) == 1
    assert _value(samples, "aigw_requests_total", status="error") == 1
    assert _value(samples, "aigw_errors_total", tenant="a") == 1
    assert _value(samples, "aigw_request_duration_seconds_count", tenant="a") == 4
    assert _value(samples, "aigw_request_duration_seconds_count", tenant="b") == 1
    # Tokens and cost agree with the call log.
    log = CallLog(tmp_path / "calls.duckdb")
    rows = log.query(
        "SELECT tenant_id, sum(input_tokens) i, sum(output_tokens) o, sum(cost_usd) c "
        "FROM calls WHERE status = 'ok' GROUP BY 1 ORDER BY 1"
    )
    log.close()
    assert len(rows) == 2
    for tenant, i, o, c in rows.itertuples(index=False):
        assert _value(samples, "aigw_tokens_total", tenant=tenant, direction="input") == i
        assert _value(samples, "aigw_tokens_total", tenant=tenant, direction="output") == o
        assert _value(samples, "aigw_cost_usd_total", tenant=tenant) == pytest.approx(c)


def test_metrics_without_a_key_when_asked_and_404_without_metrics(tmp_path):
    gateway, server = _serve(tmp_path, "require_key = false\n")
    with server:
        assert httpx.get(f"{server.url}/metrics").status_code == 200
    plain = Gateway.simulated_fleet(log=None)
    with BackgroundServer(GatewayApp(plain, None, close_gateway=True)) as bare:
        missing = httpx.get(f"{bare.url}/metrics")
    assert missing.status_code == 404
    assert "[metrics]" in missing.text


def _end(model, tenant="t", status="ok"):
    return CallEnd(
        trace_id="x",
        provider="p",
        model=model,
        tenant=tenant,
        cache_status="none",
        status=status,
        error_type=None if status == "ok" else "server_error",
        started_wall=0.0,
        duration_s=0.01,
        stream=False,
        attempts=1,
    )


def test_client_supplied_label_values_are_bounded_and_validated():
    sink = MetricsSink(max_values=3, known={"model": ["configured"]})
    for i in range(50):
        sink.call_ended(_end(f"model-{i}"))
    sink.call_ended(_end("configured"))
    sink.call_ended(_end("bad\nname{}"))
    sink.call_ended(_end("x" * 65))
    sink.call_ended(_end("m", tenant=None))
    samples = _samples(sink.exposition()[0].decode())
    models = {dict(ls)["model"] for (n, ls) in samples if n == "aigw_requests_total"}
    assert models == {"model-0", "model-1", "model-2", "configured", "_other", "_invalid"}
    assert _value(samples, "aigw_requests_total", model="_other") == 47 + 1  # and "m"
    assert _value(samples, "aigw_requests_total", model="_invalid") == 2
    assert _value(samples, "aigw_requests_total", tenant="_none") == 1


def test_two_sinks_never_share_counts():
    one, two = MetricsSink(), MetricsSink()
    one.call_ended(_end("m"))
    assert _value(_samples(one.exposition()[0].decode()), "aigw_requests_total") == 1
    assert _value(_samples(two.exposition()[0].decode()), "aigw_requests_total") == 0


def test_label_combinations_are_bounded_too():
    sink = MetricsSink(max_values=100, max_label_sets=3)
    for i in range(10):
        sink.call_ended(_end(f"m{i % 5}", tenant=f"t{i}"))
    samples = _samples(sink.exposition()[0].decode())
    sets = {
        (dict(ls)["model"], dict(ls)["tenant"]) for (n, ls) in samples if n == "aigw_requests_total"
    }
    assert len(sets) == 4  # three kept, and the one everything else counts under
    assert ("_other", "_other") in sets
    assert _value(samples, "aigw_requests_total") == 10
