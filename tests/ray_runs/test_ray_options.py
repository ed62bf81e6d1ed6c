"""The Ray executor's surface without a cluster: a missing ``ray`` extra is one
`MissingExtraError` naming the install command (before anything is read or sent), hostile
options are `ConfigError`s naming the fix, and the team log's URL is never echoed."""

from __future__ import annotations

import sys

import pytest

from aigw_lab.datasets import Dataset
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.experiments import Experiment, RayExecutor, WorkerGateway, run_experiment
from aigw_lab.experiments.ray_executor import RAY_INSTALL
from aigw_lab.gateway import Gateway


def _experiment() -> Experiment:
    records = [{"id": "i0", "prompt": "q-0", "reference": "a"}]
    return Experiment("x", Dataset.from_records("s", records), ["sim-openai/sim-small"])


def test_a_missing_ray_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    executor = RayExecutor(mirror=tmp_path / "m.duckdb")
    with Gateway.simulated_fleet(log=None) as gateway:
        with pytest.raises(MissingExtraError) as info:
            run_experiment(gateway, _experiment(), executor=executor, progress=False)
    assert info.value.hint == RAY_INSTALL == 'pip install "aigw-lab[ray]"'
    assert not (tmp_path / "m.duckdb").exists()  # nothing opened before the check


def test_importing_the_executor_does_not_import_ray():
    code = (
        "import sys; import aigw_lab.experiments.ray_executor, aigw_lab.experiments.ray_worker;"
        " print('ray' in sys.modules)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers = 0"),
        ({"workers": True}, "workers = True"),
        ({"workers": 5000}, "over 1024"),
        ({"max_retries": -1}, "max_retries"),
        ({"url_env": "BAD$NAME"}, "not an environment variable name"),
        ({"address": ""}, "not a cluster address"),
        ({"mirror": ":memory:"}, "must be a file path"),
        ({"num_cpus": "2"}, "num_cpus"),
        ({"gateway": "gateway.toml"}, "WorkerGateway"),
    ],
)
def test_hostile_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        RayExecutor(**options)


def test_the_team_log_url_comes_from_the_environment_and_is_never_echoed():
    executor = RayExecutor(url_env="TEAM_URL")
    with pytest.raises(ConfigError, match="TEAM_URL is unset") as unset:
        executor.team_url({})
    assert "export TEAM_URL=postgresql://" in unset.value.hint
    with pytest.raises(ConfigError, match="does not hold a postgresql") as wrong:
        executor.team_url({"TEAM_URL": "mysql://secret-pw@h/db"})
    assert "secret-pw" not in str(wrong.value) + wrong.value.hint
    url = "postgresql://aigw:pw@db:5432/x"
    assert executor.team_url({"TEAM_URL": url}) == url


def test_each_team_log_gets_its_own_default_spool():
    executor = RayExecutor()
    a, b = executor.spool_for("postgresql://h/a"), executor.spool_for("postgresql://h/b")
    assert a != b and a.startswith("~/.aigw-lab/team-spool/")
    assert RayExecutor(spool_dir="/srv/spool").spool_for("postgresql://h/a") == "/srv/spool"


def test_a_worker_gateway_builds_the_simulated_fleet_logging_only_to_its_sinks():
    from aigw_lab.testing import MemorySink

    sink = MemorySink()
    gateway = WorkerGateway(simulated={"seed": 3}).build([sink])
    with gateway:
        assert gateway.log is None
        gateway.chat("sim-openai/sim-small", "hi")
    assert len(sink.rows) == 1
