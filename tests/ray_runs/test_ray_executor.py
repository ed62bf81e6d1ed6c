"""Issue 14 §5: experiments on Ray. One local Ray cluster (2 CPUs, no dashboard, no usage
report) and one real PostgreSQL 15 for the module; the upstream is a loopback
`FakeUpstream` that records every request and answers deterministically from the prompt, so
a sharded run and a single-process run of the same experiment log the same usage and
scores.

- a sharded run logs every unit exactly once, and the team log's mirror gives the same
  `target_summary` / `paired_comparison` as one process's DuckDB file;
- its progress reaches the driver's tracker as one total, and a resume counts its skips;
- kill -9 of the driver, or of a Ray worker, mid-run: the rerun (or Ray's retry) pays again
  at most for the calls that were in flight, counted against the fake's own record; a call
  in flight on a killed worker is in the team log as ``interrupted``, never missing;
- the cluster listens on 127.0.0.1 only (the executor's local start; the subprocess driver
  and the CLI join it at its loopback address).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from aigw_lab.analysis import paired_comparison, target_summary
from aigw_lab.datasets import Dataset
from aigw_lab.errors import ConfigError
from aigw_lab.experiments import Experiment, run_experiment
from aigw_lab.experiments.ray_executor import RayExecutor, WorkerGateway
from aigw_lab.gateway import Gateway
from aigw_lab.scorers import build_scorer
from aigw_lab.store.team_log import TeamLogSink, TeamLogWarning
from aigw_lab.testing.fake_upstream import FakeUpstream, Reply
from aigw_lab.testing.postgres import PostgresCluster, find_pg_bin

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
ray = pytest.importorskip("ray")
psycopg = pytest.importorskip("psycopg")

ENV = "AIGW_RAY_TEST_TEAM_URL"
CONFIG = """
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "RAY_TEST_UPSTREAM_KEY"
models = ["m1", "m2"]

[prices."up/m1"]
input_per_mtok = 1.0
output_per_mtok = 2.0

[prices."up/m2"]
input_per_mtok = 3.0
output_per_mtok = 5.0
"""


class Upstream(FakeUpstream):
    """Answers every request from its prompt (``q-<n>``): m1 always right, m2 right on even
    n; usage derived from n. ``delay`` slows every answer (the kill tests)."""

    delay = 0.0

    def __init__(self) -> None:
        self._seen = threading.local()
        super().__init__()
        self.requests = _Noting(self._seen)

    def _next_reply(self) -> Reply:
        request = self._seen.request
        model = request.json["model"]
        n = int(request.json["messages"][-1]["content"].split("-")[1])
        text = f"answer {n}" if model == "m1" or n % 2 == 0 else "no idea"
        body = {
            "id": f"up-{n}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5 + n % 7, "completion_tokens": 1 + n % 5},
        }  # fmt: skip
        return Reply(
            headers={"content-type": "application/json"},
            chunks=(json.dumps(body).encode(),),
            delay=self.delay,
        )

    def units(self) -> Counter[tuple[str, str]]:
        """Requests per (item id, model) seen so far. A request whose body a kill cut
        short (no JSON) could not be answered, so it is not a paid call: left out."""
        return Counter(
            (f"i{r.json['messages'][-1]['content'].split('-')[1]}", r.json["model"])
            for r in list(self.requests)
            if r.json is not None
        )


class _Noting(list):
    def __init__(self, seen: threading.local) -> None:
        super().__init__()
        self._seen = seen

    def append(self, request) -> None:
        self._seen.request = request
        super().append(request)


@pytest.fixture(scope="module")
def team_url() -> Iterator[str]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (.ci/run installs postgresql)")
    with PostgresCluster.start_new() as cluster:
        name = f"ray_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        yield cluster.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def cluster(team_url: str) -> Iterator[str]:
    """A local Ray cluster whose workers inherit the team log's URL variable, started as
    the executor starts one: on 127.0.0.1 only (`aigw_lab.experiments.ray_start`)."""
    os.environ[ENV] = team_url
    os.environ["RAY_TEST_UPSTREAM_KEY"] = "sk-up-test"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    RayExecutor(num_cpus=2).ensure_ray(ray)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_the_local_cluster_listens_on_loopback_only(cluster):
    """Every socket the local start's processes listen on (GCS, raylet, workers, Ray's
    agents) is on 127.0.0.1; the GCS address the workers and other drivers use too."""
    psutil = pytest.importorskip("psutil")
    assert cluster.rsplit(":", 1)[0] == "127.0.0.1"
    assert ray.get(ray.remote(lambda: ray.util.get_node_ip_address()).remote()) == "127.0.0.1"
    listening = set()
    for process in psutil.Process().children(recursive=True):
        try:
            connections = process.net_connections(kind="inet")
            name = process.name()
        except psutil.Error:
            continue  # ended meanwhile
        listening |= {(name, c.laddr.ip) for c in connections if c.status == psutil.CONN_LISTEN}
    assert {"gcs_server", "raylet"} <= {name for name, _ in listening}, listening
    outside = {(n, ip) for n, ip in listening if ip.removeprefix("::ffff:") != "127.0.0.1"}
    assert not outside, outside


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as fake:
        yield fake


def _config(tmp_path: Path, upstream: Upstream, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(CONFIG.format(url=upstream.url))
    return path


def _experiment(name: str, items: int = 12, concurrency: int = 4) -> Experiment:
    records = [
        {"id": f"i{n}", "prompt": f"q-{n}", "reference": f"answer {n}",
         "category": ("a", "b")[n % 2]}
        for n in range(items)
    ]  # fmt: skip
    return Experiment(
        name,
        Dataset.from_records("ray-set", records),
        ["up/m1", "up/m2"],
        scorers=[build_scorer("exact")],
        concurrency=concurrency,
        experiment_id=f"{name}-{uuid.uuid4().hex[:6]}",
    )


def _executor(tmp_path: Path, config: Path, **options) -> RayExecutor:
    return RayExecutor(
        workers=2,
        url_env=ENV,
        mirror=tmp_path / "mirror.duckdb",
        spool_dir=str(tmp_path / "spool"),
        gateway=WorkerGateway(config=str(config)),
        **options,
    )


def _pg(url: str, sql: str, params: list) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _ok_units(url: str, experiment_id: str) -> Counter[tuple[str, str, int]]:
    """Ok outcome rows per unit in the team log."""
    rows = _pg(
        url,
        "SELECT item_id, target, repetition FROM calls WHERE experiment_id = %s AND status = 'ok'",
        [experiment_id],
    )
    return Counter((i, t, int(r)) for i, t, r in rows)


def _comparable(frame):
    """The summary without wall-clock columns (latency differs between any two runs)."""
    keep = [c for c in frame.columns if "latency" not in c and "ms" not in c]
    return frame[keep].sort_values("target").reset_index(drop=True)


def test_a_sharded_run_logs_every_unit_once_and_matches_one_process(
    cluster, team_url, tmp_path, upstream
):
    config = _config(tmp_path, upstream)
    experiment = _experiment("sharded")
    snapshots = []
    pytest.importorskip("ipywidgets")
    from aigw_lab.notebook.widgets import ExperimentProgressView

    view = ExperimentProgressView()  # the notebook's live view, fed by the same callback

    def on_progress(snapshot) -> None:
        snapshots.append(snapshot)
        view.update(snapshot)

    with Gateway.from_config(config, log=None) as driver:
        result = run_experiment(
            driver,
            experiment,
            executor=_executor(tmp_path, config),
            progress=False,
            on_progress=on_progress,
        )
    units = experiment.unit_count
    assert result.status == "completed", result.message
    assert (result.completed, result.failed, result.skipped) == (units, 0, 0)
    # Every unit paid once and logged once, with its score, in PostgreSQL itself.
    assert sum(upstream.units().values()) == units
    assert set(upstream.units().values()) == {1}
    ok = _ok_units(team_url, experiment.id)
    assert len(ok) == units and set(ok.values()) == {1}
    scores = _pg(team_url, "SELECT count(*) FROM scores WHERE experiment_id = %s", [experiment.id])
    assert scores[0][0] == units
    runs = _pg(
        team_url,
        "SELECT status, completed, failed FROM experiment_runs WHERE experiment_id = %s",
        [experiment.id],
    )
    assert runs == [("completed", units, 0)]

    # (c) one total for the whole run, fed from the workers, ending at every unit.
    assert len(snapshots) > 2
    done = [s.done for s in snapshots]
    assert done == sorted(done) and done[-1] == units
    last = snapshots[-1]
    assert (last.total, last.errors, last.status) == (units, 0, "completed")
    assert {t: p.total for t, p in last.per_target.items()} == {"up/m1": 12, "up/m2": 12}
    assert last.cost_usd == pytest.approx(result.cost_usd) and last.cost_usd > 0
    assert view.bar.value == 1.0 and "<b>24/24</b> units" in view.headline.value

    # The same experiment in one process, into one DuckDB file, on its own upstream.
    with Upstream() as other:
        single_config = _config(tmp_path, other, "single.toml")
        with Gateway.from_config(single_config, log=str(tmp_path / "single.duckdb")) as gw:
            single = run_experiment(gw, experiment, progress=False)
            assert single.status == "completed"
            expected = target_summary(gw.log, experiment_id=experiment.id)
            expected_pair = paired_comparison(gw.log, "up/m1", "up/m2",
                                              experiment_id=experiment.id)  # fmt: skip
    got = target_summary(result.log, experiment_id=experiment.id)
    assert got["units"].tolist() == [12, 12]
    pd.testing.assert_frame_equal(_comparable(got), _comparable(expected), rtol=1e-9)
    pair = paired_comparison(result.log, "up/m1", "up/m2", experiment_id=experiment.id)
    pd.testing.assert_frame_equal(
        pair.set_index("metric").loc[["quality", "cost_usd"]],
        expected_pair.set_index("metric").loc[["quality", "cost_usd"]],
        rtol=1e-9,
    )

    # The report reads the mirror as it reads one process's file.
    from aigw_lab.report import write_report

    ours = write_report(result.log, tmp_path / "ray.html", experiment_id=experiment.id)
    theirs = write_report(tmp_path / "single.duckdb", tmp_path / "one.html",
                          experiment_id=experiment.id)  # fmt: skip
    for page in (ours.read_text(), theirs.read_text()):
        assert "sharded" in page and "up/m1" in page and "up/m2" in page

    # (c) a resumed run: nothing is sent, every unit counted as skipped in the one total.
    again: list = []
    with Gateway.from_config(config, log=None) as driver:
        resumed = run_experiment(
            driver, experiment, executor=_executor(tmp_path, config), progress=False,
            on_progress=again.append,
        )  # fmt: skip
    assert (resumed.status, resumed.skipped, resumed.completed) == ("completed", units, 0)
    assert sum(upstream.units().values()) == units
    assert (again[-1].done, again[-1].skipped, again[-1].total) == (units, units, units)


_DRIVER = textwrap.dedent(
    """
    import sys
    import ray
    from aigw_lab.datasets import Dataset
    from aigw_lab.experiments import Experiment, run_experiment
    from aigw_lab.experiments.ray_executor import RayExecutor, WorkerGateway
    from aigw_lab.gateway import Gateway
    from aigw_lab.scorers import build_scorer

    address, config, tmp, experiment_id, items = sys.argv[1:6]
    records = [{{"id": f"i{{n}}", "prompt": f"q-{{n}}", "reference": f"answer {{n}}",
                "category": ("a", "b")[n % 2]}} for n in range(int(items))]
    experiment = Experiment("killed", Dataset.from_records("ray-set", records),
                            ["up/m1", "up/m2"], scorers=[build_scorer("exact")],
                            concurrency={concurrency}, experiment_id=experiment_id)
    executor = RayExecutor(address=address, workers=2, url_env={env!r},
                           mirror=tmp + "/driver-mirror.duckdb", spool_dir=tmp + "/spool",
                           gateway=WorkerGateway(config=config))
    print("started", flush=True)
    with Gateway.from_config(config, log=None) as driver:
        run_experiment(driver, experiment, executor=executor, progress=False)
    """
)


def _settle(upstream: Upstream, quiet_s: float = 5.0, limit_s: float = 60) -> None:
    """Wait until the fake has seen no new request for ``quiet_s`` (the dead run's workers
    are gone). 5 s, not less: on a box at load 20 a live worker can pause for over a second,
    and a resume started beside it would pay its units twice (seen once with 1.5 s)."""
    deadline = time.monotonic() + limit_s
    seen, since = len(upstream.requests), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if len(upstream.requests) != seen:
            seen, since = len(upstream.requests), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("the killed run's workers kept calling the upstream")


def _wait_requests(upstream: Upstream, at_least: int, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while len(upstream.requests) < at_least:
        assert time.monotonic() < deadline, f"only {len(upstream.requests)} requests"
        time.sleep(0.02)


def test_b_kill_9_of_the_driver_then_resume_repays_at_most_the_calls_in_flight(
    cluster, team_url, tmp_path, upstream
):
    upstream.delay = 0.05
    concurrency, items = 3, 30
    units = items * 2
    in_flight = 2 * concurrency  # workers x concurrency: the most calls a kill can cut
    config = _config(tmp_path, upstream)
    experiment = _experiment("killed", items=items, concurrency=concurrency)
    script = _DRIVER.format(concurrency=concurrency, env=ENV)
    process = subprocess.Popen(
        [sys.executable, "-c", script, cluster, str(config), str(tmp_path), experiment.id,
         str(items)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_requests(upstream, units // 3)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    _settle(upstream)
    first = upstream.units()
    assert 0 < sum(first.values()) < units  # killed mid-run
    done_before = _ok_units(team_url, experiment.id)
    assert len(done_before) < units

    with Gateway.from_config(config, log=None) as driver:
        result = run_experiment(
            driver, experiment, executor=_executor(tmp_path, config), progress=False
        )
    assert result.status == "completed", result.message
    total = upstream.units()
    assert len(total) == units  # every unit was sent
    repaid = {unit: n - 1 for unit, n in total.items() if n > 1}
    # Only calls the kill cut (sent, never logged) were paid again...
    logged = {(item, {"up/m1": "m1", "up/m2": "m2"}[target]) for item, target, _ in done_before}
    assert not set(repaid) & logged
    assert sum(repaid.values()) <= in_flight, repaid
    print(
        f"driver killed after {sum(first.values())} requests, {len(done_before)} units "
        f"logged; {sum(repaid.values())} paid again"
    )
    # ... and every unit has exactly one ok outcome in the team log.
    ok = _ok_units(team_url, experiment.id)
    assert len(ok) == units and set(ok.values()) == {1}
    # The killed run's row no longer says running.
    statuses = _pg(
        team_url,
        "SELECT status FROM experiment_runs WHERE experiment_id = %s ORDER BY started_at",
        [experiment.id],
    )
    assert [s for (s,) in statuses] == ["interrupted", "completed"]


class HeldUpstream(Upstream):
    """`Upstream` holding the first request for ``held`` (item id, model) until `release`
    is set (or the fake closes): a call surely in flight on a worker when it is killed."""

    def __init__(self, held: tuple[str, str]) -> None:
        super().__init__()
        self.held = held
        self.holding = threading.Event()  # set once the held request has arrived
        self.release = threading.Event()
        self._once = threading.Lock()

    def _next_reply(self) -> Reply:
        reply = super()._next_reply()
        body = self._seen.request.json
        key = (f"i{body['messages'][-1]['content'].split('-')[1]}", body["model"])
        if key == self.held and self._once.acquire(blocking=False):
            self.holding.set()
            return replace(reply, delay=60.0, release=self.release)
        return reply


def test_b_kill_9_of_the_ray_workers_mid_call_logs_the_call_as_interrupted_and_repays_it(
    cluster, team_url, tmp_path
):
    """The workers are killed while the fake holds one of their calls (and others may be
    in flight): each such call is in the team log as ``interrupted`` (the next worker on
    the machine sends the dead one's spooled start), never missing; Ray's retry pays again
    at most the calls that were in flight. Counted per unit against the fake's record."""
    concurrency, items = 3, 24
    units = items * 2
    killed: list[int] = []
    with HeldUpstream(held=("i2", "m1")) as upstream:
        upstream.delay = 0.05
        config = _config(tmp_path, upstream)
        experiment = _experiment("worker-killed", items=items, concurrency=concurrency)

        def kill_workers(snapshot) -> None:
            """SIGKILL every shard's worker once the held call is in flight: Ray retries
            each killed shard."""
            if killed or snapshot.status != "running" or not upstream.holding.is_set():
                return
            board = ray.get_actor(f"aigw-board-{snapshot.run_id}")
            pids = ray.get(board.pids.remote())
            for shard, pid in pids.items():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(shard)

        with Gateway.from_config(config, log=None) as driver:
            result = run_experiment(
                driver, experiment, executor=_executor(tmp_path, config), progress=False,
                on_progress=kill_workers,
            )  # fmt: skip
        upstream.release.set()
        total = upstream.units()
    assert killed, "no worker was killed mid-call"
    assert result.status == "completed", result.message
    assert len(total) == units
    repaid = sum(n - 1 for n in total.values())
    # The killed workers' calls in flight, at most.
    assert repaid <= len(killed) * concurrency, total
    ok = _ok_units(team_url, experiment.id)
    assert len(ok) == units and set(ok.values()) == {1}
    # No paid call missing: for every unit, at least as many rows as requests the fake got.
    rows = _pg(
        team_url,
        "SELECT item_id, target, status FROM calls WHERE experiment_id = %s",
        [experiment.id],
    )
    logged = Counter((item, target.removeprefix("up/")) for item, target, _ in rows)
    short = {unit: (n, logged[unit]) for unit, n in total.items() if logged[unit] < n}
    assert not short, f"requests received vs rows logged: {short}"
    interrupted = sorted((item, target) for item, target, status in rows if status == "interrupted")
    assert ("i2", "up/m1") in interrupted, rows
    # A unit paid again was cut by the kill, so its first call is interrupted (a start may
    # also be spooled for a request the kill stopped before it left: then no request).
    assert len(interrupted) >= repaid, (interrupted, repaid)
    print(
        f"killed the workers of shards {killed} with the call for i2/m1 held; "
        f"{len(interrupted)} interrupted rows, {repaid} paid again"
    )


def test_b_a_killed_workers_calls_reach_postgresql_without_a_resume(cluster, team_url, tmp_path):
    """Without retries, killing every shard's worker while the fake holds one of their calls
    fails the run; before it returns, the driver sends every node's spool
    (`RayExecutor.send_cluster_leftovers`), so the held call is an ``interrupted`` row in
    PostgreSQL with no resume and no later worker on the machine, and no paid call is
    missing. Before, those rows stayed in the machine's spool until a worker of the same
    shard index next ran there."""
    concurrency, items = 3, 24
    killed: list[int] = []
    with HeldUpstream(held=("i2", "m1")) as upstream:
        upstream.delay = 0.05
        config = _config(tmp_path, upstream)
        experiment = _experiment("killed-no-retry", items=items, concurrency=concurrency)

        def kill_workers(snapshot) -> None:
            if killed or snapshot.status != "running" or not upstream.holding.is_set():
                return
            board = ray.get_actor(f"aigw-board-{snapshot.run_id}")
            for shard, pid in ray.get(board.pids.remote()).items():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(shard)

        executor = _executor(tmp_path, config, max_retries=0)
        with Gateway.from_config(config, log=None) as driver:
            with pytest.raises(Exception) as caught:  # noqa: B017, PT011 - Ray's, for a dead worker
                run_experiment(driver, experiment, executor=executor, progress=False,
                               on_progress=kill_workers)  # fmt: skip
        upstream.release.set()
        total = upstream.units()
    assert killed, f"no worker was killed mid-call: {caught.value!r}"
    rows = _pg(
        team_url,
        "SELECT item_id, target, status FROM calls WHERE experiment_id = %s",
        [experiment.id],
    )
    assert ("i2", "up/m1", "interrupted") in rows, rows
    logged = Counter((item, target.removeprefix("up/")) for item, target, _ in rows)
    short = {unit: (n, logged[unit]) for unit, n in total.items() if logged[unit] < n}
    assert not short, f"requests received vs rows logged: {short}"


def test_send_cluster_leftovers_sends_what_a_dead_shard_left_on_each_node(
    cluster, team_url, tmp_path
):
    """One Ray task pinned to each alive node sends that node's shard folders (here the
    one node): a dead shard's rows, and its call in flight as ``interrupted``."""
    from tests.teamlog.conftest import make_rows

    root = tmp_path / "spool"
    dead = TeamLogSink("postgresql://x@127.0.0.1:9/none", spool_dir=root / "shard-7",
                       flush_timeout=0.2, retry_interval=0.05)  # fmt: skip
    for row in make_rows(5, prefix="left"):
        dead.append(row)
    dead.start_spool.start(
        ("in-flight-7", "t", 1767225600.0, "up", "m1", "openai", False, "miss", 1, None, None,
         None, "x", None, None, False, "r", "i", "up/m1", 0, None)
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TeamLogWarning)
        dead.close()  # unreachable: the rows stay in the folder, as a killed worker's do
    executor = RayExecutor(url_env=ENV, mirror=tmp_path / "m.duckdb", spool_dir=str(root))
    assert executor.send_cluster_leftovers(ray, team_url) == 1  # nodes swept
    statuses = _pg(team_url, "SELECT status FROM calls WHERE call_id LIKE %s OR call_id = %s",
                   ["left-%", "in-flight-7"])  # fmt: skip
    assert len(statuses) == 6 and ("interrupted",) in statuses


EXPERIMENT_FILE = """
[experiment]
name = "cli on ray"
id = "{experiment_id}"
dataset = "items.jsonl"
concurrency = 2
scorers = ["exact"]

[[targets]]
model = "up/m1"

[[targets]]
model = "up/m2"

[gateway]
config = "gateway.toml"

[executor]
kind = "ray"
workers = 2
url_env = "{env}"
mirror = "cli-mirror.duckdb"
spool = "spool"
"""


def test_aigw_lab_run_with_an_executor_table_runs_on_the_cluster(
    cluster, team_url, tmp_path, upstream
):
    _config(tmp_path, upstream)
    items = [{"id": f"i{n}", "prompt": f"q-{n}", "reference": f"answer {n}"} for n in range(6)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    experiment_id = f"cli-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "experiment.toml"
    spec.write_text(EXPERIMENT_FILE.format(experiment_id=experiment_id, env=ENV))
    command = [sys.executable, "-m", "aigw_lab.cli.main", "run", str(spec), "--no-progress",
               "--ray-address", cluster]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "on Ray: 2 workers" in out.stdout and "12 units done" in out.stdout
    assert str(tmp_path / "cli-mirror.duckdb") in out.stdout
    assert sum(upstream.units().values()) == 12
    assert len(_ok_units(team_url, experiment_id)) == 12
    # A rerun resumes from the team log (test_a checks it through the Python entry point).


def test_the_budget_stops_every_worker_within_the_calls_in_flight(
    cluster, team_url, tmp_path, upstream
):
    upstream.delay = 0.02
    concurrency, items, budget = 3, 24, 0.0004
    # The most one unit costs here: up/m2 at 11 input and 5 output tokens.
    most = 11 * 3.0e-6 + 5 * 5.0e-6
    config = _config(tmp_path, upstream)
    experiment = replace(_experiment("budget", items=items, concurrency=concurrency),
                         budget_usd=budget)  # fmt: skip
    with Gateway.from_config(config, log=None) as driver:
        result = run_experiment(
            driver, experiment, executor=_executor(tmp_path, config), progress=False,
            force=True,  # the estimate is over budget: start anyway, stop once spent
        )  # fmt: skip
    assert result.status == "stopped_budget", result.message
    assert "stopped at the budget" in result.message
    sent = sum(upstream.units().values())
    assert 0 < sent < items * 2
    spent = _pg(team_url, "SELECT sum(cost_usd) FROM calls WHERE experiment_id = %s",
                [experiment.id])[0][0]  # fmt: skip
    assert budget <= spent <= budget + 2 * concurrency * most, spent
    print(f"budget ${budget}: {sent} units sent, ${spent:.6f} spent")


def test_ctrl_c_in_the_driver_stops_every_worker_and_a_rerun_resumes(
    cluster, team_url, tmp_path, upstream
):
    upstream.delay = 0.05
    concurrency, items = 3, 24
    units = items * 2
    config = _config(tmp_path, upstream)
    experiment = _experiment("interrupted", items=items, concurrency=concurrency)

    def interrupt(snapshot) -> None:
        if snapshot.status == "running" and snapshot.done >= 10:
            raise KeyboardInterrupt  # what a notebook's interrupt raises in the driver

    with Gateway.from_config(config, log=None) as driver:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(
                driver, experiment, executor=_executor(tmp_path, config), progress=False,
                on_progress=interrupt,
            )  # fmt: skip
    _settle(upstream)  # the workers stopped sending
    sent = sum(upstream.units().values())
    assert sent < units
    runs = _pg(team_url, "SELECT status, message FROM experiment_runs WHERE experiment_id = %s",
               [experiment.id])  # fmt: skip
    assert len(runs) == 1 and runs[0][0] == "interrupted" and "run again" in runs[0][1]
    with Gateway.from_config(config, log=None) as driver:
        result = run_experiment(
            driver, experiment, executor=_executor(tmp_path, config), progress=False
        )
    assert result.status == "completed"
    total = upstream.units()
    assert len(total) == units
    assert sum(n - 1 for n in total.values()) <= 2 * concurrency
    print(f"interrupted after {sent} requests; {sum(n - 1 for n in total.values())} paid again")


def test_a_node_without_the_team_log_variable_is_one_config_error(
    cluster, team_url, tmp_path, upstream, monkeypatch
):
    # Set in the driver only, after the cluster's workers started: they do not have it.
    monkeypatch.setenv("AIGW_RAY_DRIVER_ONLY_URL", team_url)
    config = _config(tmp_path, upstream)
    executor = replace(_executor(tmp_path, config), url_env="AIGW_RAY_DRIVER_ONLY_URL")
    with Gateway.from_config(config, log=None) as driver:
        with pytest.raises(ConfigError, match="has no team log URL in AIGW_RAY_DRIVER") as info:
            run_experiment(driver, _experiment("no-url"), executor=executor, progress=False)
    assert type(info.value) is ConfigError  # itself, not Ray's wrapper
    assert "on every node" in info.value.hint
    assert sum(upstream.units().values()) == 0
