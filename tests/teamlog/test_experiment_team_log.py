"""An experiment's gateway config with ``[log] backend = "postgres"`` logs the experiment's
calls to the team log, as `Gateway.from_config` does; before, `ExperimentSpec.build_gateway`
dropped the team log and wrote only the local file. A Ray worker's gateway uses the run's
team-log sink as the config's team log (no second sink, the spool guard on it), and refuses
a config naming another team log than the run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigw_lab.datasets import Dataset
from aigw_lab.errors import ConfigError
from aigw_lab.experiments import parse_spec, run_experiment
from aigw_lab.experiments.ray_worker import WorkerGateway
from aigw_lab.gateway.otel_sink import OtelSink
from aigw_lab.gateway.spool_guard import SpoolGuard
from aigw_lab.store.team_log import TeamLogSink

from .conftest import psycopg

_CONFIG = """
[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0

[log]
backend = "postgres"
url_env = "TEAM_URL"
"""


def _spec(tmp_path: Path):
    (tmp_path / "gw.toml").write_text(_CONFIG)
    Dataset.from_records(
        "d", [{"id": f"q{i}", "prompt": f"What is {i} + {i}?"} for i in range(4)]
    ).to_jsonl(tmp_path / "items.jsonl")
    return parse_spec(
        {
            "experiment": {"name": "team", "dataset": "items.jsonl"},
            "targets": [{"model": "sim/sim-small"}],
            "gateway": {"config": "gw.toml"},
        },
        base_dir=tmp_path,
        source=str(tmp_path / "experiment.toml"),
    )


def test_an_experiments_team_log_config_logs_its_calls_to_postgresql(
    team_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("TEAM_URL", team_url)
    spec = _spec(tmp_path)
    with spec.build_gateway(db=tmp_path / "calls.duckdb") as gateway:
        result = run_experiment(gateway, spec.build(gateway), progress=False)
        local = sorted(gateway.query("SELECT call_id FROM calls")["call_id"])
    assert result.completed == 4 and len(local) == 4
    with psycopg.connect(team_url) as conn:
        remote = conn.execute("SELECT call_id, experiment_id FROM calls").fetchall()
    assert sorted(c for c, _ in remote) == local
    assert {e for _, e in remote} == {result.experiment_id}


def test_a_ray_workers_gateway_uses_the_runs_sink_as_the_configs_team_log(
    team_url, tmp_path, monkeypatch
):
    from tests.observe.otlp_receiver import OtlpReceiver

    monkeypatch.setenv("TEAM_URL", team_url)
    with OtlpReceiver() as receiver:
        config = tmp_path / "gw.toml"
        config.write_text(_CONFIG + f'\n[otel]\nendpoint = "{receiver.endpoint}"\n')
        sink = TeamLogSink(team_url, spool_dir=tmp_path / "shard-0")
        try:
            gateway = WorkerGateway(config=str(config)).build(team=sink, team_url=team_url)
            with gateway:
                sinks = gateway.recorder.sinks
                assert [s for s in sinks if isinstance(s, TeamLogSink)] == [sink]
                assert any(isinstance(s, OtelSink) for s in sinks)
                assert any(isinstance(m, SpoolGuard) for m in gateway._middleware)
                gateway.chat("sim/sim-small", "hello")
            sink.flush(30)
        finally:
            sink.close()
    assert not gateway.log  # a worker keeps no local log
    assert not (tmp_path / "aigw-team-log.spool").exists()  # no second team-log spool
    assert len([s for s in receiver.spans if not s["parent_span_id"]]) == 1
    with psycopg.connect(team_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 1


def test_a_ray_workers_config_naming_another_team_log_is_refused(team_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TEAM_URL", team_url.rsplit("/", 1)[0] + "/another_db")
    config = tmp_path / "gw.toml"
    config.write_text(_CONFIG)
    sink = TeamLogSink(team_url, spool_dir=tmp_path / "shard-0")
    try:
        with pytest.raises(ConfigError, match="names another team log than the Ray run's"):
            WorkerGateway(config=str(config)).build(team=sink, team_url=team_url)
    finally:
        sink.close()
