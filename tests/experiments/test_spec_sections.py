"""An experiment file's gateway honours every section of its gateway config as
`Gateway.from_config` does (one builder, `aigw_lab.config_gateway.gateway_of`): ``[otel]``
spans reach a real loopback OTLP receiver, ``[shadow]`` shadows the experiment's calls,
``[metrics]`` counts them. Before, `ExperimentSpec.build_gateway` built the gateway from the
providers, middleware and policies only, and dropped these sections without a word. (The
team log, on a real PostgreSQL, is in tests/teamlog/test_experiment_team_log.py.)"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from aigw_lab.experiments import parse_spec, run_experiment
from aigw_lab.gateway.metrics_sink import MetricsSink

from .conftest import small_dataset

pytest.importorskip("opentelemetry.proto")

_PROVIDERS = '[providers.sim]\nkind = "simulated"\nformat = "openai"\ntime_scale = 0\n'


def _spec(tmp_path: Path, sections: str):
    """An experiment of 3 items x 1 target whose [gateway] config file has ``sections``."""
    (tmp_path / "gw.toml").write_text(_PROVIDERS + sections)
    small_dataset(3).to_jsonl(tmp_path / "items.jsonl")
    return parse_spec(
        {
            "experiment": {"name": "sections", "dataset": "items.jsonl", "concurrency": 2},
            "targets": [{"model": "sim/sim-small"}],
            "gateway": {"config": "gw.toml"},
        },
        base_dir=tmp_path,
        source=str(tmp_path / "experiment.toml"),
    )


def _run(spec, db: Path) -> None:
    with spec.build_gateway(db=db) as gateway:
        result = run_experiment(gateway, spec.build(gateway), progress=False)
        assert result.completed == 3


def test_an_experiments_otel_table_exports_its_calls_spans(tmp_path):
    from tests.observe.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        spec = _spec(tmp_path, f'[otel]\nendpoint = "{receiver.endpoint}"\n')
        _run(spec, tmp_path / "calls.duckdb")  # closing the gateway flushes the exporter
    with duckdb.connect(str(tmp_path / "calls.duckdb"), read_only=True) as db:
        traces = {t for (t,) in db.execute("SELECT trace_id FROM calls").fetchall()}
    calls = [s for s in receiver.spans if not s["parent_span_id"]]
    assert len(calls) == 3
    assert {s["trace_id"] for s in calls} == traces


def test_an_experiments_shadow_table_shadows_its_calls(tmp_path):
    spec = _spec(
        tmp_path, '[shadow]\ntarget = "sim/sim-large"\nshare = 1.0\nbudget_usd = 5.0\nseed = 0\n'
    )
    _run(spec, tmp_path / "calls.duckdb")  # closing waits for the shadow calls
    with duckdb.connect(str(tmp_path / "calls.duckdb"), read_only=True) as db:
        live = db.execute("SELECT call_id FROM calls WHERE shadow_of IS NULL").fetchall()
        shadowed = db.execute(
            "SELECT shadow_of, request_model, (item_id, target) FROM calls "
            "WHERE shadow_of IS NOT NULL"
        ).fetchall()
    assert len(live) == 3
    assert sorted(s for s, _, _ in shadowed) == sorted(c for (c,) in live)
    assert {m for _, m, _ in shadowed} == {"sim-large"}
    # No unit coordinates: a shadow row is never one of the experiment's units.
    assert {tuple(u) for _, _, u in shadowed} == {(None, None)}


def test_an_experiments_metrics_table_counts_its_calls(tmp_path):
    spec = _spec(tmp_path, "[metrics]\nrequire_key = false\n")
    with spec.build_gateway(db=tmp_path / "calls.duckdb") as gateway:
        run_experiment(gateway, spec.build(gateway), progress=False)
        (metrics,) = [s for s in gateway.recorder.sinks if isinstance(s, MetricsSink)]
        text = metrics.exposition()[0].decode()
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("aigw_requests_total{") and 'model="sim-small"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 3


def test_the_sections_may_be_written_inline_in_the_experiment_file(tmp_path):
    """``[gateway.shadow]`` and ``[gateway.metrics]`` inline (before, an unknown key)."""
    small_dataset(3).to_jsonl(tmp_path / "items.jsonl")
    spec = parse_spec(
        {
            "experiment": {"name": "inline", "dataset": "items.jsonl"},
            "targets": [{"model": "sim/sim-small"}],
            "gateway": {
                "providers": {"sim": {"kind": "simulated", "format": "openai", "time_scale": 0}},
                "shadow": {"target": "sim/sim-large", "share": 1.0, "budget_usd": 5.0},
                "metrics": {"require_key": False},
            },
        },
        base_dir=tmp_path,
        source=str(tmp_path / "experiment.toml"),
    )
    with spec.build_gateway(db=tmp_path / "calls.duckdb") as gateway:
        assert any(isinstance(s, MetricsSink) for s in gateway.recorder.sinks)
        run_experiment(gateway, spec.build(gateway), progress=False)
    with duckdb.connect(str(tmp_path / "calls.duckdb"), read_only=True) as db:
        (shadowed,) = db.execute(
            "SELECT count(*) FROM calls WHERE shadow_of IS NOT NULL"
        ).fetchone()
    assert shadowed == 3
