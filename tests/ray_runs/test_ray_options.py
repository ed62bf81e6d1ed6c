"""The Ray executor's surface without a cluster: a missing ``ray`` extra is one
`MissingExtraError` naming the install command (before anything is read or sent), hostile
options are `ConfigError`s naming the fix, and the team log's URL is never echoed."""

from __future__ import annotations

import os
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


_FILE = """
[experiment]
name = "x"
dataset = "bundled:mixed_v1"
sample = 2

[[targets]]
model = "sim-openai/sim-small"
{executor}
"""


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ('[executor]\nkind = "dask"', "kind = 'dask' is not an executor"),
        ('[executor]\nkind = "ray"\nworkers = 0', "workers = 0 must be"),
        ('[executor]\nkind = "ray"\nurl_env = "A-B"', "url_env = 'A-B' must be"),
        ('[executor]\nkind = "ray"\nnope = 1', "nope"),
        ("[executor]\nworkers = 3", "workers set but kind is 'local'"),
    ],
)
def test_an_executor_table_is_checked_by_the_schema(tmp_path, executor, message):
    from aigw_lab.experiments import load_spec

    path = tmp_path / "e.toml"
    path.write_text(_FILE.format(executor=executor))
    with pytest.raises(ConfigError, match=message):
        load_spec(path)


def test_an_executor_table_gives_the_ray_executor_with_paths_beside_the_file(tmp_path):
    from aigw_lab.experiments import load_spec
    from aigw_lab.experiments.ray_executor import executor_for_spec

    path = tmp_path / "e.toml"
    table = '[executor]\nkind = "ray"\nworkers = 3\nmirror = "m.duckdb"\nspool = "~/s"'
    path.write_text(_FILE.format(executor=table))
    spec = load_spec(path)
    executor = executor_for_spec(spec, workers=5, address=None)
    assert executor.workers == 5  # the CLI's option wins
    assert executor.mirror == str(tmp_path / "m.duckdb") and executor.spool_dir == "~/s"
    assert executor.gateway.config is None and executor.gateway.simulated == {}
    assert executor.scorer_specs == ()  # built in each worker for its own gateway
    assert load_spec(tmp_path / "e.toml").executor is not None
    path.write_text(_FILE.format(executor=""))
    assert load_spec(path).executor is None


def test_ray_options_without_the_ray_executor_are_a_one_line_error(tmp_path):
    import subprocess

    path = tmp_path / "e.toml"
    path.write_text(_FILE.format(executor=""))
    out = subprocess.run(
        [sys.executable, "-m", "aigw_lab.cli.main", "run", str(path), "--workers", "3"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--workers only apply to --executor ray" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_experiment_hands_the_whole_run_to_an_executor():
    """The runner's hook: with an executor, nothing runs here; the executor gets the
    runner's parameters and its result is returned as is."""
    seen = {}

    class Recording:
        async def arun(self, gateway, experiment, **options):
            seen.update(options, gateway=gateway, experiment=experiment)
            return "the executor's result"

    experiment = _experiment()
    with Gateway.simulated_fleet(log=None) as gateway:  # no log: the local runner refuses
        out = run_experiment(gateway, experiment, executor=Recording(), progress=False,
                             resume=False, output_tokens=7)  # fmt: skip
    assert out == "the executor's result"
    assert seen["experiment"] is experiment and seen["gateway"] is gateway
    assert (seen["progress"], seen["resume"], seen["force"], seen["output_tokens"]) == (
        False, False, False, 7,
    )  # fmt: skip


def test_the_cli_without_ray_says_how_to_install_it_in_one_line(tmp_path):
    import os
    import subprocess

    blocker = tmp_path / "blocked" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ray is not installed here')\n")
    path = tmp_path / "e.toml"
    path.write_text(_FILE.format(executor=""))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "blocked"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "aigw_lab.cli.main", "run", str(path), "--executor", "ray"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert 'pip install "aigw-lab[ray]"' in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "experiments.duckdb").exists()


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (None, True),
        ("127.0.0.1:6379", True),
        ("localhost:6379", True),
        ("[::1]:6379", True),
        ("ray://127.0.0.1:10001", True),
        ("auto", False),
        ("10.0.0.5:6379", False),
        ("head.internal:6379", False),
        ("ray://head:10001", False),
    ],
)
def test_which_addresses_are_joined_on_loopback(address, loopback):
    from aigw_lab.experiments.ray_start import is_loopback_address

    assert is_loopback_address(address) is loopback


class _FakeRay:
    """What `init_ray` touches of ray: records ``init``'s options and the clusters-enabled
    constant as ``init`` saw it."""

    def __init__(self, fails: bool = False) -> None:
        self._private = type("P", (), {})()
        self._private.ray_constants = type("C", (), {"ENABLE_RAY_CLUSTER": True})()
        self.calls: list[tuple[dict, bool]] = []
        self.fails = fails

    def is_initialized(self) -> bool:
        return bool(self.calls)

    def init(self, **options) -> None:
        self.calls.append((options, self._private.ray_constants.ENABLE_RAY_CLUSTER))
        if self.fails:
            raise RuntimeError("no cluster there")


@pytest.mark.parametrize(
    ("address", "num_cpus", "expected", "clusters_seen"),
    [
        (None, 2, {"_node_ip_address": "127.0.0.1", "num_cpus": 2}, False),
        ("127.0.0.1:6379", 2, {"address": "127.0.0.1:6379"}, False),
        ("10.0.0.5:6379", None, {"address": "10.0.0.5:6379"}, True),
        ("auto", None, {"address": "auto"}, True),
    ],
)
def test_a_local_start_and_a_loopback_join_run_with_ray_clusters_off(
    address, num_cpus, expected, clusters_seen, monkeypatch
):
    from aigw_lab.experiments.ray_start import init_ray

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    fake = _FakeRay()
    init_ray(fake, address=address, num_cpus=num_cpus)
    ((options, seen),) = fake.calls
    assert options == {"include_dashboard": False, "log_to_driver": False, **expected}
    assert seen is clusters_seen
    assert fake._private.ray_constants.ENABLE_RAY_CLUSTER is True  # put back
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    init_ray(fake, address=address, num_cpus=num_cpus)  # joined already: nothing
    assert len(fake.calls) == 1


def test_the_constant_is_put_back_when_init_fails():
    from aigw_lab.experiments.ray_start import init_ray

    fake = _FakeRay(fails=True)
    with pytest.raises(RuntimeError):
        init_ray(fake, address=None, num_cpus=None)
    assert fake._private.ray_constants.ENABLE_RAY_CLUSTER is True
