"""``[otel]`` and ``[metrics]`` in a config file: validated (URLs, variable names, headers),
secrets only from the environment, the sinks built into the gateway; a missing extra is one
error naming the install command."""

from __future__ import annotations

import pytest

from aigw_lab.config import load_config
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.gateway import metrics_sink, otel_sink
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.gateway.metrics_sink import MetricsSink
from aigw_lab.gateway.observe_settings import check_http_url, parse_headers

BASE = """
[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0
models = ["sim-small"]
"""


def _write(tmp_path, text):
    path = tmp_path / "gw.toml"
    path.write_text(BASE + text)
    return path


@pytest.mark.parametrize(
    "url",
    [
        "ftp://collector:4318",
        "http://user:pw0rd@collector:4318",
        "http:///v1",
        "http://collector:99999",
        "http://collector:4318/#x",
        "http://collector\n:4318",
        "",
    ],
)
def test_bad_exporter_urls_are_refused_at_load(tmp_path, url):
    path = _write(tmp_path, f"[otel]\nendpoint = {url!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "[otel]" in str(caught.value) and "endpoint" in str(caught.value)
    assert "pw0rd" not in str(caught.value)


def test_unknown_keys_and_bad_variable_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="did you mean"):
        load_config(_write(tmp_path, '[otel]\nendpoint = "http://c:4318"\nendpont = 1\n'))
    with pytest.raises(ConfigError, match="headers_env"):
        load_config(_write(tmp_path, '[otel]\nendpoint = "http://c:4318"\nheaders_env = "A-B"\n'))
    with pytest.raises(ConfigError, match="max_label_values"):
        load_config(_write(tmp_path, "[metrics]\nmax_label_values = 0\n"))


def test_headers_come_from_the_environment_only(tmp_path):
    from tests.observe.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        path = _write(
            tmp_path,
            f'[otel]\nendpoint = "{receiver.endpoint}"\nheaders_env = "OTLP_HDRS"\n'
            'service_name = "gw-test"\n',
        )
        with pytest.raises(ConfigError, match="OTLP_HDRS is not set"):
            Gateway.from_config(path, env={})
        gw = Gateway.from_config(path, env={"OTLP_HDRS": "x-api-key=s3cret,x-team=a"}, log=None)
        gw.chat("sim/sim-small", "hi")
        gw.close()
        (sink,) = [s for s in gw.recorder.sinks if isinstance(s, otel_sink.OtelSink)]
        sink.close()
    assert receiver.requests[0]["x-api-key"] == "s3cret"
    (span,) = [s for s in receiver.spans if not s["parent_span_id"]]
    assert span["resource"]["service.name"] == "gw-test"


def test_malformed_headers_never_echo_the_value():
    with pytest.raises(ConfigError) as caught:
        parse_headers("novalue-secret-token", "[otel] headers_env (V)")
    assert "secret-token" not in str(caught.value)
    with pytest.raises(ConfigError, match="control"):
        parse_headers("a=b\r\nc", "x")
    assert parse_headers(" a = 1 ,b=2,", "x") == {"a": "1", "b": "2"}


def test_metrics_table_builds_a_sink_with_the_configured_names(tmp_path):
    path = _write(tmp_path, '[metrics]\nmax_label_values = 2\ntenants = ["acme"]\n')
    gw = Gateway.from_config(path, log=None)
    (sink,) = [s for s in gw.recorder.sinks if isinstance(s, MetricsSink)]
    assert sink._fold["model"]("sim-small") == "sim-small"
    assert sink._fold["tenant"]("acme") == "acme"
    gw.close()
    off = Gateway.from_config(_write(tmp_path, "[metrics]\nenabled = false\n"), log=None)
    assert off.recorder.sinks == ()
    off.close()


def test_check_http_url_accepts_plain_urls():
    assert check_http_url("https://otel.example.com:4318/base", "x")


@pytest.mark.parametrize(
    ("module", "build", "extra"),
    [
        (otel_sink, lambda: otel_sink.OtelSink(endpoint="http://127.0.0.1:4318"), "otel"),
        (metrics_sink, lambda: metrics_sink.MetricsSink(), "metrics"),
    ],
)
def test_a_missing_extra_is_one_error_naming_the_install(monkeypatch, module, build, extra):
    monkeypatch.setattr(module, "missing_modules", lambda names: list(names))
    with pytest.raises(MissingExtraError) as caught:
        build()
    assert f'pip install "aigw-lab[{extra}]"' in caught.value.hint
