"""A call's start reaches the team log's spool before its request leaves, so a process
killed mid-call leaves an ``interrupted`` row in the team log, never nothing (issue 9 §4 for
processes whose only log is the team log: Ray workers, ``serve`` with no file of its own).

The kill test is a real one: a subprocess logging only to the team log sends a call to a
loopback `FakeUpstream` that holds it, and is killed with SIGKILL while the fake holds it;
a sink opened afterwards on the same spool directory sends the interrupted row. The count
is against the fake's own record of requests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from aigw_lab.gateway import Gateway
from aigw_lab.store import CallLog
from aigw_lab.store.spool import INTERRUPTED_MESSAGE, read_segment
from aigw_lab.store.team_log import TeamLogSink
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.testing.fakes import FunctionProvider

from .conftest import psycopg

pytestmark = pytest.mark.filterwarnings("ignore:no price known")


def _frames(folder) -> list[tuple[str, tuple]]:
    return [frame for path in sorted(folder.glob("*.spool")) for frame in read_segment(path)]


def _rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT call_id, status, error_message, request_model, experiment_id, item_id, "
            "budget_usd FROM calls ORDER BY timestamp"
        ).fetchall()


def test_a_gateway_logging_only_to_the_team_log_spools_each_start_first(team_url, tmp_path):
    folder = tmp_path / "team.spool"
    sink = TeamLogSink(team_url, spool_dir=folder)
    seen: list[list[tuple[str, tuple]]] = []

    def answer(request) -> str:
        seen.append(_frames(folder))  # what a kill at this moment would leave
        return "hello"

    provider = FunctionProvider(answer, "fn", models=("m",))
    with Gateway([provider], log=None, sinks=[sink]) as gateway:
        response = gateway.chat(model="fn/m", messages=[{"role": "user", "content": "hi"}])
    sink.close()
    # While the request was out, its start (and nothing else) was in the team log's spool.
    assert [(kind, values[0]) for kind, values in seen[0]] == [("start", response.call_id)]
    assert [(r[0], r[1]) for r in _rows(team_url)] == [(response.call_id, "ok")]
    assert not folder.exists()  # every row sent: the spool is removed, starts included


def test_with_a_file_log_and_a_team_log_both_spools_hold_the_start(team_url, tmp_path):
    folder = tmp_path / "team.spool"
    sink = TeamLogSink(team_url, spool_dir=folder)
    own = tmp_path / "own.duckdb"
    seen: list[tuple[list, list]] = []

    def answer(request) -> str:
        seen.append((_frames(folder), _frames(tmp_path / "own.duckdb.spool")))
        return "hello"

    provider = FunctionProvider(answer, "fn", models=("m",))
    with Gateway([provider], log=str(own), sinks=[sink]) as gateway:
        response = gateway.chat(model="fn/m", messages=[{"role": "user", "content": "hi"}])
    sink.close()
    team, local = seen[0]
    assert [(k, v[0]) for k, v in team] == [("start", response.call_id)]
    assert [(k, v[0]) for k, v in local] == [("start", response.call_id)]


_KILLED = textwrap.dedent(
    """
    import pathlib, sys
    from aigw_lab.gateway import Gateway
    from aigw_lab.store.team_log import TeamLogSink

    url, base_url, folder, own = sys.argv[1:5]
    config = pathlib.Path(folder).parent / "gateway.toml"
    config.write_text(
        '[providers.up]\\nkind = "openai"\\nbase_url = "' + base_url + '"\\n'
        'api_key_env = "KILLED_TEST_KEY"\\nmodels = ["m1"]\\n'
    )
    sink = TeamLogSink(url, spool_dir=folder)
    gateway = Gateway.from_config(config, env={"KILLED_TEST_KEY": "sk-test"},
                                  log=own or None, sinks=[sink])
    gateway.chat(model="up/m1", messages=[{"role": "user", "content": "held"}],
                 experiment_id="exp-k",
                 metadata={"aigw_experiment": {"run_id": "r1", "item_id": "i7",
                                               "target": "up/m1", "repetition": 0}})
    """
)


@pytest.mark.slow  # a subprocess importing the gateway, then a kill: ~4-8 s on a loaded box
@pytest.mark.parametrize("own_log", [False, True], ids=["team-log-only", "file-and-team-log"])
def test_kill_9_mid_call_leaves_an_interrupted_row_in_the_team_log(team_url, tmp_path, own_log):
    """Killed with only the team log (a Ray worker), or with a file log beside it (``serve``
    with ``backend = "postgres"``): the team log gets the interrupted row either way, and
    the file log its own."""
    folder = tmp_path / "team.spool"
    own = str(tmp_path / "own.duckdb") if own_log else ""
    release = threading.Event()
    with FakeUpstream() as fake:
        fake.reply_json({}, delay=60.0, release=release)  # held until the kill
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        process = subprocess.Popen(
            [sys.executable, "-c", _KILLED, team_url, f"{fake.url}/v1", str(folder), own],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not fake.requests:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the call never reached the upstream"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            release.set()
        received = len(fake.requests)
    # The next process on this machine opens a sink on the same spool and sends what the
    # dead one left.
    sink = TeamLogSink(team_url, spool_dir=folder)
    try:
        sink.flush()
    finally:
        sink.close()
    rows = _rows(team_url)
    assert received == 1 and len(rows) >= received
    ((call_id, status, message, model, experiment, item, budget),) = rows
    assert (status, message, model, experiment, item) == (
        "interrupted", INTERRUPTED_MESSAGE, "m1", "exp-k", "i7",
    )  # fmt: skip
    assert call_id and budget is None  # no budget: nothing to charge it to
    if own_log:
        with CallLog(own) as log:
            local = log.query("SELECT call_id, status FROM calls")
        assert local.values.tolist() == [[call_id, "interrupted"]]


def test_start_spool_picks_the_one_spool_or_tees_several():
    from aigw_lab.gateway.start_spools import StartTee, start_spool

    class Keeps:
        def __init__(self) -> None:
            self.started: list[tuple] = []

        def start(self, values: tuple) -> None:
            self.started.append(values)

    class Log:
        spool = Keeps()

    class Sink:
        start_spool = Keeps()

    class Plain:
        pass

    assert start_spool(None, []) is None
    assert start_spool(Plain(), [Plain()]) is None
    assert start_spool(Log, [Plain()]) is Log.spool
    assert start_spool(None, [Plain(), Sink]) is Sink.start_spool
    both = start_spool(Log, [Sink])
    assert isinstance(both, StartTee)
    both.start(("c1",))
    assert Log.spool.started == [("c1",)] == Sink.start_spool.started
