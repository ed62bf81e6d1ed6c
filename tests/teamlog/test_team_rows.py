"""`TeamRows`: an experiment's own rows in the team log (scores appended; the experiments
and experiment_runs rows replaced by key, so a mirror keeps one copy of each, the latest),
the units it counts done, and the run lock that keeps two drivers off one experiment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aigw_lab.store.team_log import TeamLogSink
from aigw_lab.store.team_mirror import TeamLogMirror
from aigw_lab.store.team_rows import ExperimentBusyError, TeamRows

from .conftest import make_rows


def _run(run_id: str, status: str, completed: int) -> dict:
    return {"run_id": run_id, "experiment_id": "e1", "status": status, "completed": completed,
            "started_at": datetime(2026, 12, 7, tzinfo=UTC), "message": "x\x00y"}  # fmt: skip


def test_a_replaced_row_reaches_every_mirror_once_with_its_latest_values(team_url, tmp_path):
    with TeamRows(team_url) as rows, TeamLogMirror(team_url, tmp_path / "m.duckdb") as mirror:
        rows.replace("experiment_runs", [_run("r1", "running", 0), _run("r2", "running", 0)])
        assert mirror.sync().rows["experiment_runs"] == 2
        rows.replace("experiment_runs", [_run("r1", "completed", 7)])
        rows.insert("scores", [{"score_id": "s1", "call_id": "c", "scorer": "exact", "value": 1}])
        mirror.sync()
        got = mirror.log.execute(
            "SELECT run_id, status, completed, message FROM experiment_runs ORDER BY run_id"
        )
        # One row per run id (the old copy of r1 dropped), NUL replaced as the sink does.
        assert got == [("r1", "completed", 7, "x\ufffdy"), ("r2", "running", 0, "x\ufffdy")]
        assert mirror.log.execute("SELECT scorer, value FROM scores") == [("exact", 1.0)]
        # A second reader's fresh mirror sees the same, never the replaced copy.
        with TeamLogMirror(team_url, tmp_path / "m2.duckdb") as other:
            other.sync()
            assert other.log.execute(
                "SELECT run_id, status FROM experiment_runs ORDER BY run_id"
            ) == [("r1", "completed"), ("r2", "running")]


def test_unknown_columns_are_refused(team_url):
    with TeamRows(team_url) as rows, pytest.raises(Exception, match="no column nope"):
        rows.insert("scores", [{"nope": 1}])


def test_done_keys_are_units_whose_last_attempt_is_ok(team_url, tmp_path):
    base = make_rows(4)
    shaped = [
        # unit (i1, a, 0): attempt 1 failed, attempt 2 ok -> done
        base[0]._replace(trace_id="t1", attempt=1, status="error", experiment_id="e1",
                         run_id="r1", item_id="i1", target="a", repetition=0),
        base[1]._replace(trace_id="t1", attempt=2, status="ok", experiment_id="e1",
                         run_id="r1", item_id="i1", target="a", repetition=0),
        # unit (i2, a, 0): only a failure -> not done
        base[2]._replace(trace_id="t2", attempt=1, status="error", experiment_id="e1",
                         run_id="r1", item_id="i2", target="a", repetition=0),
        # another run of the experiment
        base[3]._replace(trace_id="t3", attempt=1, status="ok", experiment_id="e1",
                         run_id="r2", item_id="i3", target="b", repetition=1),
    ]  # fmt: skip
    sink = TeamLogSink(team_url, spool_dir=tmp_path / "spool")
    for row in shaped:
        sink.append(row)
    sink.flush()
    sink.close()
    with TeamRows(team_url) as rows:
        assert rows.done_keys(experiment_id="e1") == {("i1", "a", 0), ("i3", "b", 1)}
        assert rows.done_keys(run_id="r2") == {("i3", "b", 1)}


def test_two_drivers_cannot_hold_one_experiment_and_a_closed_one_lets_go(team_url):
    first = TeamRows(team_url)
    first.lock_experiment("e1")
    with TeamRows(team_url) as second:
        with pytest.raises(ExperimentBusyError, match="another driver"):
            second.lock_experiment("e1")
        second.lock_experiment("e2")  # another experiment: free
    first.close()  # a killed driver's connection ends the same way
    with TeamRows(team_url) as third:
        third.lock_experiment("e1")
