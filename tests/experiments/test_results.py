"""`experiment_frame` on hand-written log rows: the contract's semantics for traces, units
and scores, and that the runner's frame matches its log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from aigw_lab.experiments import FRAME_COLUMNS, Experiment, experiment_frame, run_experiment
from aigw_lab.experiments.results import summarise
from aigw_lab.store import CallLog, CallRecord

from .conftest import Exploding, ReferenceMatch, small_dataset

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(
    call_id,
    trace_id,
    *,
    item="q1",
    target="t",
    rep=0,
    attempt=1,
    status="ok",
    at=0.0,
    latency=100.0,
    cost=0.01,
    fallback_from=None,
    text="answer",
    experiment="e1",
    run="r1",
):
    meta = {
        "aigw_experiment": {
            "run_id": run,
            "item_id": item,
            "target": target,
            "repetition": rep,
            "category": "math",
            "difficulty": "hard",
        }
    }
    return CallRecord(
        call_id=call_id,
        trace_id=trace_id,
        timestamp=T0 + timedelta(seconds=at),
        provider_name="p",
        request_model="m",
        status=status,
        error_type=None if status == "ok" else "server_error",
        response_text=text if status == "ok" else None,
        cost_usd=cost,
        latency_ms=latency,
        ttft_ms=latency / 2,
        input_tokens=10,
        output_tokens=3,
        attempt=attempt,
        fallback_from=fallback_from,
        experiment_id=experiment,
        metadata_json=json.dumps(meta),
        simulated=True,
        run_id=run,
        item_id=item,
        target=target,
        repetition=rep,
    )


@pytest.fixture
def log(tmp_path):
    with CallLog(tmp_path / "log.duckdb") as call_log:
        yield call_log


def test_a_retried_trace_is_one_unit_with_the_logical_calls_totals(log):
    # Attempt 1 fails after 300 ms; attempt 2 (a fallback) starts 0.5 s in and takes 200 ms.
    log.append_many(
        [
            row("c1", "t1", attempt=1, status="error", latency=300.0, cost=0.002),
            row("c2", "t1", attempt=2, at=0.5, latency=200.0, cost=0.01, fallback_from="p/m"),
        ]
    )
    frame = experiment_frame(log, "e1")
    assert list(frame.columns) == list(FRAME_COLUMNS)
    unit = frame.iloc[0]
    assert (unit.call_id, unit.status, unit.attempts, unit.fell_back) == ("c2", "ok", 2, True)
    assert unit.cost_usd == pytest.approx(0.012)
    assert unit.latency_ms == pytest.approx(700.0)  # end of the last row - start of the first
    assert unit.ttft_ms == pytest.approx(100.0)  # the outcome row's
    assert (unit.category, unit.difficulty, unit.run_id) == ("math", "hard", "r1")


def test_a_unit_is_its_latest_ok_trace_else_its_latest_trace(log):
    log.append_many(
        [
            # q1: ok, then failed again later (a --no-resume run): the ok trace is the result.
            row("a1", "ta", item="q1", at=0, text="old ok"),
            row("a2", "tb", item="q1", at=10, status="error"),
            # q2: two ok traces: the later one.
            row("b1", "tc", item="q2", at=0, text="early"),
            row("b2", "td", item="q2", at=10, text="late"),
            # q3: only failures: the latest.
            row("c1", "te", item="q3", at=0, status="error"),
            row("c2", "tf", item="q3", at=10, status="error"),
            # another experiment's call is not this experiment's unit
            row("x1", "tx", item="q1", experiment="other"),
        ]
    )
    frame = experiment_frame(log, "e1").set_index("item_id")
    assert len(frame) == 3
    assert frame.loc["q1", "call_id"] == "a1" and frame.loc["q1", "response_text"] == "old ok"
    assert frame.loc["q2", "call_id"] == "b2"
    assert frame.loc["q3", "call_id"] == "c2" and frame.loc["q3", "status"] == "error"


def test_scores_are_the_latest_per_scorer_of_the_outcome_call(log):
    log.append_many([row("a1", "ta", item="q1"), row("b1", "tb", item="q2")])
    log.insert(
        "scores",
        [
            {
                "score_id": "s1",
                "call_id": "a1",
                "experiment_id": "e1",
                "scorer": "exact",
                "value": 0.0,
                "created_at": T0,
            },
            {
                "score_id": "s2",
                "call_id": "a1",
                "experiment_id": "e1",
                "scorer": "exact",
                "value": 1.0,
                "created_at": T0 + timedelta(seconds=5),
            },
            {
                "score_id": "s3",
                "call_id": "a1",
                "experiment_id": "e1",
                "scorer": "judge it's",
                "value": 7.0,
                "created_at": T0,
            },
        ],
    )
    frame = experiment_frame(log, "e1").set_index("item_id")
    assert frame.loc["q1", "score_exact"] == 1.0
    assert frame.loc["q1", "score_judge it's"] == 7.0  # any scorer name is a safe column
    assert frame.loc[["q2"], "score_exact"].isna().all()


def test_the_runners_frame_matches_its_log(make_gateway):
    gateway = make_gateway()
    exp = Experiment(
        "frame",
        small_dataset(4),
        ["fake/m", "fake/other"],
        repetitions=2,
        scorers=[ReferenceMatch(), Exploding()],
    )
    result = run_experiment(gateway, exp, progress=False)
    frame = result.frame
    assert list(frame.columns) == [*FRAME_COLUMNS, "score_exploding", "score_match"]
    assert len(frame) == 16
    calls = gateway.query("SELECT * FROM calls").set_index("call_id")
    for unit in frame.itertuples():
        call = calls.loc[unit.call_id]
        assert (unit.item_id, unit.target, unit.repetition) == (
            call.item_id,
            call.target,
            call.repetition,
        )
        assert unit.cost_usd == pytest.approx(call.cost_usd)
        assert unit.response_text == call.response_text and unit.trace_id == call.trace_id
        assert unit.provider == "fake" and unit.model == call.request_model
    assert set(frame.category) == {"arithmetic", "other"}

    summary = result.summary()
    assert list(summary.columns) == [
        "n",
        "errors",
        "mean_exploding",
        "mean_match",
        "mean_latency_ms",
        "cost_usd",
    ]
    assert summary.loc["fake/m", "n"] == 8 and summary.loc["fake/m", "mean_match"] == 1.0
    assert summary.loc["fake/other", "cost_usd"] == pytest.approx(
        frame[frame.target == "fake/other"].cost_usd.sum()
    )


def test_summary_of_an_empty_frame_is_empty(log):
    assert summarise(experiment_frame(log, "nothing")).empty
