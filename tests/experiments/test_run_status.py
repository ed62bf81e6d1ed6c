"""A run's recorded status and counts match what happened: every unit failed -> ``failed``
(and ``aigw-lab run`` exits 1), some failed -> ``completed`` with exit 3, Ctrl-C / SIGTERM /
``SystemExit`` -> ``interrupted`` with the units done so far, and a run whose process died is
closed later with its counts rebuilt from the log (not ``completed = 0``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from aigw_lab.cli.main import main
from aigw_lab.errors import ProviderServerError, StoreError
from aigw_lab.experiments import Experiment, Target, run_experiment
from aigw_lab.experiments.records import close_abandoned_runs
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider

from .conftest import answer_sum, small_dataset


def experiment(**kwargs):
    kwargs.setdefault("targets", [Target(model="fake/m")])
    return Experiment(
        kwargs.pop("name", "status test"), kwargs.pop("dataset", small_dataset(6)), **kwargs
    )


def runs(gateway):
    return gateway.query(
        "SELECT status, completed, failed, message, ended_at FROM experiment_runs "
        "ORDER BY started_at"
    )


def broken(request):
    raise ProviderServerError("upstream exploded", provider="fake", model="m", status=500)


def half_broken(request):
    if int(request.messages[-1].text.split()[2]) % 2:
        broken(request)
    return answer_sum(request)


# --- every unit failed ---------------------------------------------------------------------


def test_a_run_where_every_unit_failed_is_failed_not_completed(make_gateway):
    gateway = make_gateway(FunctionProvider(broken, "fake"))
    result = run_experiment(gateway, experiment(), progress=False)
    assert (result.status, result.completed, result.failed) == ("failed", 0, 6)
    assert not result.ok
    assert "every unit failed (6 of 6)" in result.message
    assert "upstream exploded" in result.message and "ProviderServerError" in result.message
    row = runs(gateway).iloc[0]
    assert (row.status, row.completed, row.failed) == ("failed", 0, 6)
    assert row.message == result.message and row.ended_at is not None


def test_some_failed_units_leave_the_run_completed_with_its_counts(make_gateway):
    gateway = make_gateway(FunctionProvider(half_broken, "fake"))
    result = run_experiment(gateway, experiment(), progress=False)
    assert (result.status, result.completed, result.failed) == ("completed", 3, 3)
    assert list(runs(gateway).status) == ["completed"]


def test_a_resumed_run_with_nothing_left_to_send_is_completed(make_gateway):
    gateway = make_gateway()
    run_experiment(gateway, experiment(), progress=False)
    again = run_experiment(gateway, experiment(), progress=False)
    assert (again.status, again.completed, again.failed, again.skipped) == ("completed", 0, 0, 6)


# --- interrupted in-process ----------------------------------------------------------------


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_callback_stopping_the_run_records_it_interrupted_with_its_counts(make_gateway, stop):
    gateway = make_gateway()
    seen = []

    def on_progress(snapshot):
        seen.append(snapshot.done)
        if snapshot.status == "running" and snapshot.done == 300:
            raise stop("enough")

    # Stopped after hundreds of units, as in the issue (which saw completed = 0 recorded).
    exp = experiment(dataset=small_dataset(400), concurrency=1)
    with pytest.raises(stop):
        run_experiment(gateway, exp, progress=False, on_progress=on_progress)
    row = runs(gateway).iloc[0]
    assert row.status == "interrupted"
    assert (row.completed, row.failed) == (300, 0)
    assert "after 300 units done" in row.message and row.ended_at is not None
    ok_calls = gateway.query("SELECT count(*) AS n FROM calls WHERE status = 'ok'").n[0]
    assert ok_calls == 300


def test_a_run_whose_process_died_is_closed_with_counts_from_the_log(make_gateway):
    gateway = make_gateway(FunctionProvider(half_broken, "fake"))
    exp = experiment()
    run_experiment(gateway, exp, progress=False)
    # What a SIGKILL leaves behind: the row still says running, with its counts at zero.
    gateway.log.execute(
        "UPDATE experiment_runs SET status = 'running', completed = 0, failed = 0, "
        "cost_usd = 0, ended_at = NULL"
    )
    assert close_abandoned_runs(gateway.log, exp.id) == 1
    row = gateway.query("SELECT * FROM experiment_runs").iloc[0]
    assert (row.status, row.completed, row.failed) == ("interrupted", 3, 3)
    assert row.cost_usd == pytest.approx(3.0)  # one $1 token per ok unit (conftest prices)
    assert row.ended_at is not None and "killed?" in row.message


# --- the CLI's exit status ------------------------------------------------------------------

TOML = """
[experiment]
name = "{name}"
dataset = "bundled:mixed_v1"
sample = {sample}
concurrency = {concurrency}
params = {{ max_tokens = 32 }}

[[targets]]
model = "sim-openai/sim-nano"

[gateway]
db = "{db}"

[gateway.simulated]
time_scale = {time_scale}
faults = {{ server_error = {errors} }}
"""


def write_toml(tmp_path, *, name="cli status", sample=6, concurrency=2, time_scale=0, errors=0.0):
    db = tmp_path / "status.duckdb"
    path = tmp_path / f"{name.replace(' ', '_')}.toml"
    path.write_text(
        TOML.format(
            name=name,
            sample=sample,
            concurrency=concurrency,
            db=db.as_posix(),
            time_scale=time_scale,
            errors=errors,
        )
    )
    return path, db


def test_cli_exits_1_and_says_failed_when_every_unit_failed(tmp_path, capsys):
    path, db = write_toml(tmp_path, errors=1.0)
    code = main(["run", str(path), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "failed; 0 units done, 6 failed" in out
    assert "run failed: every unit it sent failed" in err and "Traceback" not in err
    with CallLog(db) as log:
        assert log.execute("SELECT status, failed FROM experiment_runs") == [("failed", 6)]


def test_cli_exits_3_with_a_warning_when_some_units_failed(tmp_path, capsys):
    path, _ = write_toml(tmp_path, sample=12, errors=0.5)
    code = main(["run", str(path), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    assert "completed;" in out and "warning:" in err and "units failed (exit status 3)" in err


def test_cli_exits_0_when_every_unit_succeeded(tmp_path, capsys):
    path, _ = write_toml(tmp_path)
    assert main(["run", str(path), "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err


# --- a real process sent SIGINT / SIGTERM ---------------------------------------------------


def ok_units(db) -> int:
    if not db.exists():
        return 0
    try:
        conn = CallLog.snapshot(db)
    except StoreError:  # copied mid-checkpoint: the next poll tries again
        return 0
    try:
        return conn.execute(
            "SELECT count(*) FROM calls WHERE status = 'ok' AND item_id IS NOT NULL"
        ).fetchone()[0]
    except Exception:  # the copy has no tables yet
        return 0
    finally:
        conn.close()


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signalled_cli_run_is_recorded_interrupted_with_its_units(tmp_path, sig, code):
    if not hasattr(signal, sig):
        pytest.skip(f"no {sig} here")
    path, db = write_toml(tmp_path, name="signalled", sample=150, concurrency=2, time_scale=1.0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "run", str(path), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Python leaves SIGINT ignored if the parent ignores it; a terminal's Ctrl-C doesn't.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if ok_units(db) >= 5:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(getattr(signal, sig))
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    err = err.decode()
    assert process.returncode == code, err
    assert "Traceback" not in err and "resume with: aigw-lab run" in err
    with CallLog(db) as log:
        [(status, completed, failed, message)] = log.execute(
            "SELECT status, completed, failed, message FROM experiment_runs"
        )
        ok = log.execute("SELECT count(*) FROM calls WHERE status = 'ok'")[0][0]
    assert status == "interrupted"
    assert completed == ok and 5 <= completed < 150
    assert failed == 0 and f"after {completed} units done" in message
    assert f"after {completed} units done" in err


# --- a notebook's interrupt -------------------------------------------------------------------


@pytest.mark.parametrize("later_units_fail", [False, True])
async def test_an_interrupt_while_running_from_a_notebook_stops_and_records_the_run(
    make_gateway, later_units_fail
):
    # Inside a running event loop (Jupyter) the run goes to a helper thread; the interrupt
    # lands in this thread. The run must stop there and say so, not carry on unseen, also
    # when the units after it fail at once (a failing unit must not make it uncancellable).
    import threading

    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs signal.pthread_kill")

    calls = []
    third_call = threading.Event()

    def answer(request):
        calls.append(request)
        if len(calls) == 3:
            third_call.set()
            # What a kernel interrupt does: SIGINT to the main thread, blocked waiting.
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        elif len(calls) > 3:
            # Later units take a moment (as real calls do), so the interrupt always lands
            # before the run could finish on its own, even on a busy machine.
            time.sleep(0.01)
            if later_units_fail:
                raise RuntimeError("the provider is down")
        return answer_sum(request)

    gateway = make_gateway(FunctionProvider(answer, "fake"))
    exp = experiment(dataset=small_dataset(200), concurrency=1)
    # As in a notebook kernel: SIGINT raises KeyboardInterrupt in the main thread (the test
    # runner's event loop may have installed asyncio's own handler instead).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(gateway, exp, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert third_call.is_set()
    row = runs(gateway).iloc[0]
    ok_calls = gateway.query("SELECT count(*) AS n FROM calls WHERE status = 'ok'").n[0]
    assert row.status == "interrupted" and row.completed == ok_calls and 2 <= ok_calls < 200
    assert f"after {ok_calls} units done" in row.message  # the message has the final counts
    assert len(calls) < 200  # it stopped sending
    sent = len(calls)
    time.sleep(0.2)
    assert len(calls) == sent  # and nothing keeps sending in the background
