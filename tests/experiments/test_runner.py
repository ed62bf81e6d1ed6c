"""The runner against fake providers and a real DuckDB log: every unit logged with its
coordinates, bounded concurrency, budgets, scores, progress and cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest

from aigw_lab.errors import AigwError, BudgetExceededError, ProviderServerError
from aigw_lab.experiments import (
    Experiment,
    ProgressSnapshot,
    Target,
    arun_experiment,
    run_experiment,
)
from aigw_lab.testing.fakes import FunctionProvider

from .conftest import AsyncCounting, Exploding, ReferenceMatch, answer_sum, small_dataset


def experiment(**kwargs):
    kwargs.setdefault(
        "targets", [Target(model="fake/m"), Target("hot", "fake/m", {"temperature": 1.0})]
    )
    return Experiment(
        kwargs.pop("name", "unit test"), kwargs.pop("dataset", small_dataset()), **kwargs
    )


def test_every_unit_is_one_logged_call_with_its_coordinates(make_gateway):
    gateway = make_gateway()
    exp = experiment(repetitions=2)
    result = run_experiment(gateway, exp, progress=False)

    assert (result.status, result.planned, result.completed, result.failed) == (
        "completed",
        20,
        20,
        0,
    )
    rows = gateway.query(
        "SELECT item_id, target, repetition, run_id, experiment_id, status, request_json, "
        "metadata_json FROM calls"
    )
    assert len(rows) == 20
    units = set(zip(rows.item_id, rows.target, rows.repetition, strict=True))
    expected = {(f"q{i}", t, r) for i in range(5) for t in ("fake/m", "hot") for r in (0, 1)}
    assert units == expected
    assert set(rows.run_id) == {result.run_id}
    assert set(rows.experiment_id) == {exp.id}
    assert set(rows.status) == {"ok"}
    # The target's params reach the request; the other target sends none.
    temperatures = {
        t: json.loads(r).get("temperature")
        for t, r in zip(rows.target, rows.request_json, strict=True)
    }
    assert temperatures == {"hot": 1.0, "fake/m": None}
    meta = json.loads(rows.metadata_json[0])["aigw_experiment"]
    assert set(meta) >= {"run_id", "item_id", "target", "repetition"}


def test_calls_in_flight_never_exceed_the_concurrency(make_gateway):
    provider = AsyncCounting()
    gateway = make_gateway(provider)
    result = run_experiment(
        gateway, experiment(dataset=small_dataset(12), concurrency=3), progress=False
    )
    assert result.completed == 24
    assert provider.max_in_flight == 3  # reached, never passed


def test_an_estimate_over_budget_refuses_before_sending_anything(make_gateway):
    gateway = make_gateway()
    # No reference answers, no log: 256 output tokens at $1 each, $256 a unit against $10.
    exp = experiment(budget_usd=10.0, dataset=small_dataset(references=False))
    with pytest.raises(BudgetExceededError, match="over its budget_usd") as caught:
        run_experiment(gateway, exp, progress=False)
    assert "force=True" in caught.value.hint
    assert gateway.query("SELECT count(*) AS n FROM calls").n[0] == 0
    assert gateway.query("SELECT count(*) AS n FROM experiment_runs").n[0] == 0


def test_a_bounded_estimate_fits_the_budget(make_gateway):
    gateway = make_gateway()
    # Without references, max_tokens bounds the estimate: 10 units x 2 tokens x $1 = $20.
    exp = experiment(
        budget_usd=20.0, params={"max_tokens": 2}, dataset=small_dataset(references=False)
    )
    result = run_experiment(gateway, exp, progress=False)
    assert result.status == "completed"
    assert result.estimate.usd == pytest.approx(20.0)


def test_the_run_stops_scheduling_once_the_budget_is_spent(make_gateway):
    gateway = make_gateway()
    # Each answer is one token: $1 a unit. One at a time, the fourth unit reaches $3.5.
    exp = experiment(budget_usd=3.5, concurrency=1)
    result = run_experiment(gateway, exp, progress=False, force=True)

    assert result.status == "stopped_budget"
    assert result.completed == 4 and result.cost_usd == pytest.approx(4.0)
    assert "budget" in result.message
    run = gateway.query("SELECT status, completed, cost_usd, ended_at FROM experiment_runs")
    assert run.status[0] == "stopped_budget" and run.completed[0] == 4
    assert run.ended_at.notna()[0]
    assert gateway.query("SELECT count(*) AS n FROM calls").n[0] == 4

    # Resuming counts what was spent: the budget is the experiment's, over all its runs.
    again = run_experiment(gateway, exp, progress=False, force=True)
    assert again.status == "stopped_budget" and again.completed == 0 and again.skipped == 4


def test_scores_are_linked_to_their_calls(make_gateway):
    gateway = make_gateway()
    exp = experiment(scorers=[ReferenceMatch()])
    result = run_experiment(gateway, exp, progress=False)
    joined = gateway.query(
        "SELECT s.*, c.trace_id AS call_trace, c.item_id AS call_item, c.target AS call_target "
        "FROM scores s JOIN calls c USING (call_id)"
    )
    assert len(joined) == 10
    assert (joined.trace_id == joined.call_trace).all()
    assert (joined.item_id == joined.call_item).all() and (
        joined.target == joined.call_target
    ).all()
    assert set(joined.run_id) == {result.run_id} and set(joined.experiment_id) == {exp.id}
    assert set(joined.value) == {1.0} and set(joined.kind) == {"scorer"}


def test_a_failing_scorer_is_recorded_and_the_run_goes_on(make_gateway):
    gateway = make_gateway()
    result = run_experiment(
        gateway, experiment(scorers=[Exploding(), ReferenceMatch()]), progress=False
    )
    assert result.status == "completed" and result.completed == 10
    failed = gateway.query("SELECT * FROM scores WHERE scorer = 'exploding'")
    assert len(failed) == 10
    assert failed.value.isna().all() and set(failed.label) == {"scorer_error"}
    assert failed.comment.str.startswith("ValueError: cannot grade q").all()
    assert result.frame.score_match.eq(1.0).all() and result.frame.score_exploding.isna().all()


def test_failed_calls_count_as_failed_units_and_are_retried_by_a_resume(make_gateway):
    def flaky(request):
        if "3 + 3" in request.messages[-1].text:
            raise ProviderServerError("boom", provider="fake", model="m")
        return answer_sum(request)

    gateway = make_gateway(FunctionProvider(flaky, "fake"))
    exp = experiment()
    first = run_experiment(gateway, exp, progress=False)
    assert (first.status, first.completed, first.failed) == ("completed", 8, 2)
    assert not first.ok
    frame = first.frame
    failed = frame[frame.status != "ok"]
    assert set(failed.item_id) == {"q3"} and set(failed.error_type) == {"server_error"}
    gateway.close()

    fixed = make_gateway()
    second = run_experiment(fixed, exp, progress=False)
    assert (second.skipped, second.completed, second.failed) == (8, 2, 0)
    assert second.frame.status.eq("ok").all() and len(second.frame) == 10


def test_progress_snapshots_reach_the_callback(make_gateway):
    gateway = make_gateway()
    seen: list[ProgressSnapshot] = []
    run_experiment(gateway, experiment(), progress=False, on_progress=seen.append)
    assert [s.done for s in seen[:-1]] == list(range(1, 11))
    last = seen[-1]
    assert (last.status, last.done, last.total, last.errors, last.skipped) == (
        "completed",
        10,
        10,
        0,
        0,
    )
    assert last.cost_usd == pytest.approx(10.0)
    assert {t: (p.done, p.total) for t, p in last.per_target.items()} == {
        "fake/m": (5, 5),
        "hot": (5, 5),
    }
    with pytest.raises(AttributeError):
        last.done = 3  # frozen: the widget can keep it


def test_the_tqdm_bar_shows_cost_and_errors(make_gateway, capsys):
    run_experiment(make_gateway(), experiment(name="with a bar"), progress=True)
    err = capsys.readouterr().err
    assert "with a bar" in err and "10/10" in err and "$10.0000, 0 errors" in err


async def test_cancellation_records_an_interrupted_run(make_gateway):
    started = asyncio.Event()

    class Hanging(AsyncCounting):
        async def achat(self, request):
            started.set()
            await asyncio.Event().wait()  # never answers

    gateway = make_gateway(Hanging())
    task = asyncio.create_task(arun_experiment(gateway, experiment(), progress=False))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run = gateway.query("SELECT status, ended_at FROM experiment_runs")
    assert run.status[0] == "interrupted" and run.ended_at.notna()[0]
    statuses = set(gateway.query("SELECT status FROM calls").status)
    assert statuses == {"cancelled"}


def test_a_gateway_without_a_log_cannot_run_experiments():
    from aigw_lab.gateway import Gateway

    with Gateway([FunctionProvider(answer_sum, "fake")], log=None) as gateway:
        with pytest.raises(AigwError, match="no call log"):
            run_experiment(gateway, experiment(), progress=False)


async def test_run_experiment_works_inside_a_running_event_loop(make_gateway):
    # As in Jupyter: the synchronous call runs the experiment on a helper thread's loop.
    result = run_experiment(make_gateway(), experiment(), progress=False)
    assert result.completed == 10


@pytest.mark.parametrize("states_cost", [True, False])
def test_a_judges_calls_count_against_the_budget(make_gateway, states_cost):
    from aigw_lab.scorers.base import Score, Scorer

    gateway = make_gateway()

    class Judge(Scorer):
        """Asks the fake model (a one-token answer: $1) about every response."""

        name = "judge"
        kind = "judge"

        async def ascore(self, item, response):
            reply = await gateway.achat("fake/m", "What is 1 + 1?")
            trace = gateway.query(
                "SELECT trace_id FROM calls WHERE call_id = ?", [reply.call_id]
            ).trace_id[0]
            details = {"judge_cost_usd": reply.cost_usd} if states_cost else {}
            return Score(self.name, 1.0, details=details, judge_trace_id=trace, kind="judge")

    # $1 a unit plus $1 for its judge: the second unit reaches the $3.5 budget.
    exp = experiment(name="judged", budget_usd=3.5, concurrency=1, scorers=[Judge()])
    result = run_experiment(gateway, exp, progress=False, force=True)
    assert (result.status, result.completed) == ("stopped_budget", 2)
    assert result.cost_usd == pytest.approx(4.0)
    # The judge's calls carry no experiment id; the next run still counts them as spent.
    from aigw_lab.experiments import estimate_cost

    assert estimate_cost(gateway, exp, resume=True).spent_usd == pytest.approx(4.0)
