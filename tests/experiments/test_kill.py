"""SIGKILL in the middle of a run, then resume: nothing is paid twice that the log knew of.

A subprocess runs an experiment against the simulated fleet (with real, scaled-down
latency) into a DuckDB file; the test kills it once some units are logged, then resumes in
this process. The one call that could be repeated is one whose row was not yet written when
the process died: the log never saw it, so it cannot show up as a second ok call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aigw_lab.errors import StoreError
from aigw_lab.experiments import run_experiment
from aigw_lab.gateway import Gateway
from aigw_lab.store import CallLog

SCRIPT = textwrap.dedent(
    """
    import sys
    from aigw_lab.datasets import bundled_dataset
    from aigw_lab.experiments import Experiment, run_experiment
    from aigw_lab.gateway import Gateway
    from aigw_lab.scorers.base import Score, Scorer
    from aigw_lab.store import CallLog

    class Length(Scorer):
        name = "length"
        def score(self, item, response):
            return Score(self.name, float(len(response.text)))

    def experiment():
        return Experiment(
            "killed",
            bundled_dataset().head(30),
            ["sim-openai/sim-nano", "sim-anthropic/sim-haikuish"],
            scorers=[Length()],
            concurrency=2,
            params={"max_tokens": 64},
        )

    if __name__ == "__main__":
        # A short batch age: the test watches the log's progress from another process (a
        # snapshot sees rows once inserted), and kills the run once some units are in.
        log = CallLog(sys.argv[1], flush_interval=0.2)
        gateway = Gateway.simulated_fleet(time_scale=float(sys.argv[2]), log=log)
        run_experiment(gateway, experiment(), progress=False)
    """
)
UNITS = 60


def ok_units(db) -> int:
    for _ in range(50):
        try:
            conn = CallLog.snapshot(db)
        except StoreError:  # copied mid-checkpoint: try again
            time.sleep(0.01)
            continue
        try:
            return conn.execute(
                "SELECT count(DISTINCT (item_id, target, repetition)) FROM calls "
                "WHERE status = 'ok' AND item_id IS NOT NULL"
            ).fetchone()[0]
        except Exception:  # the copy has no tables yet
            return 0
        finally:
            conn.close()
    raise AssertionError("could not snapshot the log")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_run_resumes_without_paying_twice(tmp_path, monkeypatch):
    script = tmp_path / "killed_run.py"
    script.write_text(SCRIPT)
    db = tmp_path / "killed.duckdb"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(db), "0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if db.exists() and ok_units(db) >= 6:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    monkeypatch.syspath_prepend(str(tmp_path))
    import killed_run  # the same experiment definition as the killed process

    with Gateway.simulated_fleet(time_scale=0.0, log=str(db)) as gateway:
        done_before = gateway.query(
            "SELECT count(DISTINCT (item_id, target, repetition)) AS n FROM calls "
            "WHERE status = 'ok'"
        ).n[0]
        assert 6 <= done_before < UNITS  # killed mid-run, not before or after
        runs = gateway.query("SELECT status FROM experiment_runs")
        assert list(runs.status) == ["running"]  # SIGKILL: nothing could record the end

        result = run_experiment(gateway, killed_run.experiment(), progress=False)

        assert result.status == "completed"
        assert result.skipped == done_before
        assert result.skipped + result.completed == UNITS
        runs = gateway.query("SELECT status, message FROM experiment_runs ORDER BY started_at")
        assert list(runs.status) == ["interrupted", "completed"]
        assert "killed?" in runs.message[0]
        per_unit = gateway.query(
            "SELECT item_id, target, repetition, count(*) AS ok_calls FROM calls "
            "WHERE status = 'ok' GROUP BY ALL"
        )
        assert len(per_unit) == UNITS and per_unit.ok_calls.eq(1).all()
        # Every unit is scored, including any killed between its call and its scores.
        scores = gateway.query("SELECT call_id, trace_id FROM scores")
        assert scores.call_id.nunique() == UNITS
        assert scores.trace_id.notna().all()  # the killed run's scores got theirs too
