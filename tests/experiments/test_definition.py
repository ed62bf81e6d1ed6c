"""Targets, experiments, experiment files and the cost estimate, without running anything."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.experiments import Experiment, Target, estimate_cost, parse_spec, run_experiment
from aigw_lab.experiments.spec import DEFAULT_DB

from .conftest import small_dataset


def test_target_names_default_to_the_model_and_its_params():
    assert Target(model="sim-openai/sim-small").name == "sim-openai/sim-small"
    hot = Target(model="sim-openai/sim-small", params={"temperature": 0.7, "max_tokens": 10})
    assert hot.name == "sim-openai/sim-small[max_tokens=10,temperature=0.7]"
    assert Target("mine", "x/y", {"temperature": 0.7}).name == "mine"


def test_target_params_override_the_experiments_and_merge_extra():
    target = Target(model="a/b", params={"temperature": 1.0, "extra": {"top_k": 5}})
    merged = target.request_params({"temperature": 0.0, "max_tokens": 9, "extra": {"x": 1}})
    assert merged == {"temperature": 1.0, "max_tokens": 9, "extra": {"x": 1, "top_k": 5}}


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([], "at least one target"),
        (["a/b", "a/b"], "two targets are named 'a/b'"),
        ([Target("x", "a/b"), Target("x", "a/c")], "two targets are named 'x'"),
        ([{"model": "a/b", "temp": 1}], "unknown key"),
        ([{"model": "a/b", "params": {"messages": []}}], "'messages' is not a request parameter"),
    ],
)
def test_bad_targets_are_config_errors(targets, message):
    with pytest.raises(ConfigError, match=message):
        Experiment("e", small_dataset(), targets)


def test_experiment_ids_are_stable_and_distinct():
    one = Experiment("My run", small_dataset(), ["a/b"])
    assert one.id == Experiment("My run", small_dataset(2), ["c/d"]).id
    assert one.id.startswith("my-run-")
    assert one.id != Experiment("my-run", small_dataset(), ["a/b"]).id
    assert Experiment("x", small_dataset(), ["a/b"], experiment_id="fixed").id == "fixed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repetitions": 0}, "repetitions = 0"),
        ({"concurrency": True}, "concurrency = True"),
        ({"budget_usd": -1}, "budget_usd = -1"),
        ({"scorers": [object()]}, "is not a Scorer"),
        ({"params": {"temperature": 9}}, "out of range"),
    ],
)
def test_bad_experiment_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Experiment("e", small_dataset(), ["a/b"], **kwargs)


def test_units_go_repetition_then_item_then_target():
    exp = Experiment("e", small_dataset(2), ["a/b", "a/c"], repetitions=2)
    assert [u.key for u in exp.units()][:5] == [
        ("q0", "a/b", 0),
        ("q0", "a/c", 0),
        ("q1", "a/b", 0),
        ("q1", "a/c", 0),
        ("q0", "a/b", 1),
    ]
    assert exp.unit_count == 8


def test_the_estimate_prices_each_target_and_names_the_unpriced(make_gateway):
    gateway = make_gateway()
    # No reference answers and no log: the output estimate is max_tokens.
    exp = Experiment(
        "estimate",
        small_dataset(references=False),
        ["fake/m", "router/cheapest"],
        params={"max_tokens": 3},
    )
    estimate = estimate_cost(gateway, exp)
    assert estimate.units == 10 and estimate.output_tokens == 30
    assert estimate.per_target_usd == {"fake/m": pytest.approx(15.0), "router/cheapest": None}
    assert estimate.usd == pytest.approx(15.0)
    assert estimate.unpriced_targets == ("router/cheapest",)
    assert "no price known for router/cheapest" in estimate.describe()


def test_the_resumed_estimate_leaves_out_done_units(make_gateway):
    gateway = make_gateway()
    unanswered = small_dataset(references=False)
    exp = Experiment("estimate resume", unanswered, ["fake/m"], params={"max_tokens": 3})
    run_experiment(
        gateway,
        Experiment("estimate resume", small_dataset(2, references=False), ["fake/m"]),
        progress=False,
    )
    estimate = estimate_cost(gateway, exp, resume=True)
    assert (estimate.units, estimate.skipped_units) == (3, 2)
    assert estimate.spent_usd == pytest.approx(2.0)  # two one-token answers at $1
    # No references: the model's mean logged answer (one token, $1) for each of the three.
    assert estimate.output_sources == {"log_model": 3}
    assert estimate.total_usd == pytest.approx(2.0 + 3.0)


def spec(text_tables: dict, **kwargs):
    data = {
        "experiment": {"name": "s", "dataset": "bundled:mixed_v1", "sample": 3},
        "targets": [{"model": "sim-openai/sim-nano"}],
        **text_tables,
    }
    return parse_spec(data, **kwargs)


def test_a_spec_samples_filters_and_defaults_to_the_simulated_fleet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = spec(
        {
            "experiment": {
                "name": "s",
                "dataset": "bundled:mixed_v1",
                "categories": ["arithmetic"],
                "sample": 4,
                "seed": 3,
            }
        }
    )
    assert len(parsed.dataset) == 4 and set(parsed.dataset.categories) == {"arithmetic"}
    with parsed.build_gateway() as gateway:
        assert gateway.simulated and str(gateway.log.path) == DEFAULT_DB


def test_a_spec_reads_a_jsonl_dataset_relative_to_the_file(tmp_path):
    small_dataset(4).to_jsonl(tmp_path / "data" / "mine.jsonl")
    parsed = spec({"experiment": {"name": "s", "dataset": "data/mine.jsonl"}}, base_dir=tmp_path)
    assert parsed.dataset.ids == ("q0", "q1", "q2", "q3")


def test_a_spec_builds_an_inline_gateway(tmp_path):
    parsed = spec(
        {
            "gateway": {
                "db": "inline.duckdb",
                "providers": {"mine": {"kind": "simulated", "time_scale": 0}},
                "prices": {"mine/sim-nano": {"input_per_mtok": 1, "output_per_mtok": 2}},
            },
            "targets": [{"model": "mine/sim-nano"}],
        },
        base_dir=tmp_path,
        source=str(tmp_path / "e.toml"),
    )
    with parsed.build_gateway() as gateway:
        assert gateway.provider_names == ["mine"]
        assert gateway.log.path == tmp_path / "inline.duckdb"
        result = run_experiment(gateway, parsed.build(gateway), progress=False)
        assert result.completed == 3


def test_a_spec_gateway_config_file_is_used_and_cli_config_replaces_it(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[providers.filed]\nkind = "simulated"\ntime_scale = 0\n')
    other = tmp_path / "other.toml"
    other.write_text('[providers.cli]\nkind = "simulated"\ntime_scale = 0\n')
    parsed = spec({"gateway": {"config": "gw.toml"}}, base_dir=tmp_path)
    with parsed.build_gateway(db=tmp_path / "a.duckdb") as gateway:
        assert gateway.provider_names == ["filed"]
    with parsed.build_gateway(db=tmp_path / "b.duckdb", config=other) as gateway:
        assert gateway.provider_names == ["cli"]


def test_scorers_may_sit_at_the_top_or_in_experiment_but_not_both():
    assert spec({"scorers": ["exact"]}).scorers == ("exact",)
    with pytest.raises(ConfigError, match="scorers is set twice"):
        spec(
            {
                "scorers": ["exact"],
                "experiment": {"name": "s", "dataset": "bundled:mixed_v1", "scorers": ["auto"]},
            }
        )


def test_the_experiment_and_run_records(make_gateway):
    import json

    from aigw_lab import __version__

    from .conftest import ReferenceMatch

    gateway = make_gateway()
    exp = Experiment(
        "records",
        small_dataset(3),
        ["fake/m", Target("hot", "fake/m", {"temperature": 1.0})],
        scorers=[ReferenceMatch()],
        repetitions=2,
        params={"max_tokens": 4},
    )
    result = run_experiment(gateway, exp, progress=False)
    record = gateway.query("SELECT * FROM experiments").iloc[0]
    config = json.loads(record.config_json)
    assert (record.experiment_id, record["name"], record.repetitions) == (exp.id, "records", 2)
    assert record.dataset_fingerprint == small_dataset(3).fingerprint()
    assert config["dataset"]["name"] == "tiny" and config["scorers"] == ["match"]
    assert config["params"] == {"max_tokens": 4}
    assert json.loads(record.targets_json) == [
        {"name": "fake/m", "model": "fake/m", "params": {"max_tokens": 4}},
        {"name": "hot", "model": "fake/m", "params": {"max_tokens": 4, "temperature": 1.0}},
    ]
    assert record.code_version.startswith(__version__)
    run = gateway.query("SELECT * FROM experiment_runs").iloc[0]
    assert (run.run_id, run.status, run.planned, run.skipped, run.completed, run.failed) == (
        result.run_id,
        "completed",
        12,
        0,
        12,
        0,
    )
    # The reference answers are one token long, at $1 (max_tokens = 4 only caps them).
    assert run.estimated_cost_usd == pytest.approx(12 * 1.0)
    assert run.cost_usd == pytest.approx(result.cost_usd) and run.cost_usd > 0
    assert run.ended_at >= run.started_at


def test_code_version_without_git_is_the_package_version(monkeypatch):
    import subprocess

    from aigw_lab import __version__
    from aigw_lab.experiments.records import code_version

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert code_version.__wrapped__() == __version__
