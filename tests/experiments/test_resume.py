"""Resuming: done units are skipped and never paid twice, missing scores are filled from the
log without a call, and a changed definition under the same id is caught."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.experiments import DatasetChangedWarning, Experiment, Target, run_experiment
from aigw_lab.testing.fakes import FunctionProvider

from .conftest import ReferenceMatch, answer_sum, small_dataset


def ok_calls_per_unit(gateway):
    return gateway.query(
        "SELECT item_id, target, repetition, count(*) AS ok_calls FROM calls "
        "WHERE status = 'ok' GROUP BY ALL"
    )


def test_the_same_name_resumes_and_sends_nothing_twice(make_gateway):
    exp = Experiment("resumable", small_dataset(), ["fake/m", "fake/other"], budget_usd=None)
    gateway = make_gateway()
    # Stop part-way through with a budget, then resume without one.
    partial = run_experiment(
        gateway,
        Experiment(
            "resumable", small_dataset(), ["fake/m", "fake/other"], budget_usd=3, concurrency=1
        ),
        progress=False,
        force=True,
    )
    assert partial.status == "stopped_budget" and partial.completed == 3
    gateway.close()

    gateway = make_gateway()
    resumed = run_experiment(gateway, exp, progress=False)
    assert (resumed.status, resumed.skipped, resumed.completed) == ("completed", 3, 7)
    assert exp.id == partial.experiment_id  # derived from the name
    per_unit = ok_calls_per_unit(gateway)
    assert len(per_unit) == 10 and per_unit.ok_calls.eq(1).all()
    runs = gateway.query(
        "SELECT status, skipped, completed FROM experiment_runs ORDER BY started_at"
    )
    assert list(runs.status) == ["stopped_budget", "completed"]
    assert gateway.query("SELECT count(*) AS n FROM experiments").n[0] == 1


def test_units_without_scores_are_scored_from_the_log_without_a_call(make_gateway):
    provider = FunctionProvider(answer_sum, "fake")
    gateway = make_gateway(provider)
    run_experiment(gateway, Experiment("score later", small_dataset(), ["fake/m"]), progress=False)
    assert len(provider.requests) == 5 and gateway.query("SELECT * FROM scores").empty

    scored = run_experiment(
        gateway,
        Experiment("score later", small_dataset(), ["fake/m"], scorers=[ReferenceMatch()]),
        progress=False,
    )
    assert len(provider.requests) == 5  # no new call
    assert (scored.skipped, scored.completed, scored.cost_usd) == (5, 0, 0.0)
    scores = gateway.query("SELECT s.*, c.response_text FROM scores s JOIN calls c USING (call_id)")
    assert len(scores) == 5 and scores.value.eq(1.0).all()
    assert scores.trace_id.notna().all()
    assert scored.frame.score_match.eq(1.0).all()


def test_no_resume_sends_every_unit_again_and_results_take_the_latest(make_gateway):
    replies = iter(["first"] * 5 + ["second"] * 5)
    gateway = make_gateway(FunctionProvider(lambda request: next(replies), "fake"))
    exp = Experiment("again", small_dataset(), ["fake/m"])
    run_experiment(gateway, exp, progress=False)
    second = run_experiment(gateway, exp, progress=False, resume=False)
    assert (second.skipped, second.completed) == (0, 5)
    assert ok_calls_per_unit(gateway).ok_calls.eq(2).all()
    frame = second.frame
    assert len(frame) == 5 and set(frame.response_text) == {"second"}
    assert set(frame.run_id) == {second.run_id}


def test_added_items_warn_and_only_the_new_units_run(make_gateway):
    gateway = make_gateway()
    run_experiment(gateway, Experiment("grow", small_dataset(3), ["fake/m"]), progress=False)
    with pytest.warns(DatasetChangedWarning, match="2 item\\(s\\) added"):
        grown = run_experiment(
            gateway, Experiment("grow", small_dataset(5), ["fake/m"]), progress=False
        )
    assert (grown.skipped, grown.completed) == (3, 2)
    assert (
        "added"
        in gateway.query(
            "SELECT message FROM experiment_runs WHERE run_id = ?", [grown.run_id]
        ).message[0]
    )


def test_an_item_whose_content_changed_under_its_id_is_an_error(make_gateway):
    gateway = make_gateway()
    run_experiment(gateway, Experiment("drift", small_dataset(3), ["fake/m"]), progress=False)
    changed = small_dataset(3, name="tiny")
    records = [item.to_dict() for item in changed]
    records[1]["reference"] = "wrong"
    from aigw_lab.datasets import Dataset

    with pytest.raises(ConfigError, match="1 dataset item\\(s\\) changed content.*q1"):
        run_experiment(
            gateway,
            Experiment("drift", Dataset.from_records("tiny", records), ["fake/m"]),
            progress=False,
        )


def test_a_target_name_that_now_means_another_model_is_an_error(make_gateway):
    gateway = make_gateway()
    run_experiment(
        gateway, Experiment("swap", small_dataset(2), [Target("t", "fake/m")]), progress=False
    )
    with pytest.raises(ConfigError, match="already has a target named 't'"):
        run_experiment(
            gateway,
            Experiment("swap", small_dataset(2), [Target("t", "fake/other")]),
            progress=False,
        )
    # A new target is fine: only its units run.
    more = run_experiment(
        gateway,
        Experiment("swap", small_dataset(2), [Target("t", "fake/m"), Target("u", "fake/other")]),
        progress=False,
    )
    assert (more.skipped, more.completed) == (2, 2)
