"""The scores table: rows from Scores, coordinates copied from calls, feedback, reading back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway import Gateway
from aigw_lab.scorers import Score
from aigw_lab.store import CallLog
from aigw_lab.store.scores import (
    SCORE_COLUMNS,
    UnknownCallError,
    call_coordinates,
    record_feedback,
    score_rows,
    scores_frame,
    write_scores,
)

from .conftest import make_record

EXPERIMENT = {"run_id": "run-1", "item_id": "arith-001", "target": "nano", "repetition": 0}


def test_score_rows_have_every_column_and_serialised_details():
    when = datetime(2026, 1, 2, tzinfo=UTC)
    rows = score_rows(
        [
            Score("numeric", 1.0, label="correct", details={"answer": 42.0}),
            Score("judge", None, label="unparsed", kind="judge"),
        ],
        call_id="c1",
        trace_id="t1",
        created_at=when,
    )
    assert [tuple(r) for r in rows] == [SCORE_COLUMNS, SCORE_COLUMNS]
    assert rows[0]["details_json"] == '{"answer":42.0}' and rows[1]["details_json"] is None
    assert rows[0]["score_id"] != rows[1]["score_id"] and len(rows[0]["score_id"]) == 32
    assert (rows[1]["kind"], rows[1]["value"], rows[0]["created_at"]) == ("judge", None, when)


def test_schema_and_score_columns_agree(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        columns = [row[0] for row in log.execute("DESCRIBE scores")]
    assert tuple(columns) == SCORE_COLUMNS


def test_write_scores_copies_the_calls_coordinates(tmp_path):
    with Gateway.simulated_fleet(time_scale=0, log=tmp_path / "c.duckdb") as gw:
        response = gw.chat(
            "sim-openai/sim-nano",
            "What is 2+2?",
            experiment_id="exp-1",
            metadata={"aigw_experiment": EXPERIMENT},
        )
        ids = write_scores(gw.log, response.call_id, [Score("exact", 0.0, label="incorrect")])
        frame = scores_frame(gw.log, experiment_id="exp-1")
        trace = gw.query("SELECT trace_id FROM calls").trace_id[0]
    assert list(frame.score_id) == ids
    row = frame.iloc[0]
    assert (row.call_id, row.trace_id, row.experiment_id, row.run_id, row.item_id, row.target) == (
        response.call_id,
        trace,
        "exp-1",
        "run-1",
        "arith-001",
        "nano",
    )
    assert (row.scorer, row.kind, row.value, row.label) == ("exact", "scorer", 0.0, "incorrect")


def test_write_scores_with_all_coordinates_skips_the_lookup_and_given_ones_win(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        # No such call: with every coordinate given nothing is looked up.
        coordinates = dict(trace_id="t", experiment_id="e", run_id="r", item_id="i", target="x")
        write_scores(log, "not-logged", Score("s", 1.0), **coordinates)
        log.append(make_record(1, experiment_id="exp-9", item_id="q", target="a"))
        write_scores(log, "call-0000001", Score("s", 0.5), target="override")
        frame = scores_frame(log, scorer="s")
        assert list(frame.target) == ["x", "override"]
        assert list(frame.experiment_id) == ["e", "exp-9"] and frame.item_id[1] == "q"
        assert write_scores(log, "call-0000001", []) == []
        with pytest.raises(UnknownCallError, match="no call with call_id 'missing'"):
            write_scores(log, "missing", Score("s", 1.0))
        with pytest.raises(ConfigError, match="unknown coordinate"):
            write_scores(log, "call-0000001", Score("s", 1.0), model="x")
        assert call_coordinates(log, "call-0000001")["trace_id"] == "trace-0000001"


def test_feedback_round_trip_through_a_gateway_and_a_log_file(tmp_path):
    path = tmp_path / "calls.duckdb"
    with Gateway.simulated_fleet(time_scale=0, log=path) as gw:
        liked = gw.chat("sim-openai/sim-small", "Name a colour.")
        disliked = gw.chat("sim-anthropic/sim-haikuish", "Name a fruit.")
        up = record_feedback(gw.log, liked.call_id, thumbs=True, user="ana", comment="great")
        record_feedback(gw.log, disliked.call_id, thumbs=False)
        record_feedback(gw.log, disliked.call_id, score=0.25, name="rating", user="bo")
        with pytest.raises(UnknownCallError) as info:
            record_feedback(gw.log, "0" * 32, thumbs=True)
        assert "response.call_id" in str(info.value) and info.value.error_type == "unknown_call"
    # Read back from the file, in a fresh connection: the rows were committed.
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT s.score_id, s.call_id, s.trace_id = c.trace_id, s.scorer, s.kind, s.value, "
            "s.label, s.comment, s.user_id FROM scores s JOIN calls c USING (call_id) "
            "ORDER BY s.created_at"
        ).fetchall()
    assert rows == [
        (up, liked.call_id, True, "feedback", "feedback", 1.0, "up", "great", "ana"),
        (rows[1][0], disliked.call_id, True, "feedback", "feedback", 0.0, "down", None, None),
        (rows[2][0], disliked.call_id, True, "rating", "feedback", 0.25, None, None, "bo"),
    ]


def test_feedback_needs_a_verdict_and_a_log(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        log.append(make_record(1))
        with pytest.raises(ConfigError, match="needs a verdict"):
            record_feedback(log, "call-0000001")
        with pytest.raises(ConfigError, match="not a number"):
            record_feedback(log, "call-0000001", score="high")  # type: ignore[arg-type]
        both = record_feedback(log, "call-0000001", thumbs=False, score=0.4)
        row = scores_frame(log, kind="feedback").iloc[0]
        assert (row.score_id, row.value, row.label) == (both, 0.4, "down")
    with pytest.raises(ConfigError, match="no call log"):
        record_feedback(None, "x", thumbs=True)  # type: ignore[arg-type]


def test_scores_frame_filters(tmp_path):
    with CallLog(tmp_path / "c.duckdb") as log:
        for i in range(2):
            log.append(make_record(i, experiment_id=f"exp-{i}"))
        write_scores(
            log,
            "call-0000000",
            [Score("exact", 1.0), Score("judge", 8.0, kind="judge", details={"k": [1]})],
        )
        write_scores(log, "call-0000001", [Score("exact", 0.0)])
        assert len(scores_frame(log)) == 3
        assert list(scores_frame(log, scorer="exact").value) == [1.0, 0.0]
        judge = scores_frame(log, kind="judge", experiment_id="exp-0")
        assert len(judge) == 1 and json.loads(judge.details_json[0]) == {"k": [1]}
        assert scores_frame(log, call_id="call-0000001").scorer.tolist() == ["exact"]
        assert scores_frame(log, scorer="x' OR '1'='1").empty  # values are parameters
