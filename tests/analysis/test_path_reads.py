"""A log given by its path: read in place when its rollups are current and no process has it
open for writing (nothing to merge, so no copy of the file), else in a private copy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from aigw_lab.analysis import cost_over_time, paired_comparison, target_summary
from aigw_lab.analysis.reference import (
    reference_cost_over_time,
    reference_paired_comparison,
    reference_target_summary,
)
from aigw_lab.analysis.rollups import fresh_rollups, refresh_rollups
from aigw_lab.store import CallLog
from tests.analysis.conftest import row, score


def _log(path: Path) -> None:
    with CallLog(path) as log:
        log.append_many(
            [
                row(f"c{i}", f"t{i}", item_id=f"i{i // 2}", target=("a", "b")[i % 2], attempt=1)
                for i in range(12)
            ]
        )
        log.insert("scores", [score(f"c{i}", float(i % 3 == 0)) for i in range(12)])


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """Where temporary copies go during the test (empty unless something copies the log)."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def _same(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False, rtol=1e-9)


def test_a_path_with_current_rollups_is_read_in_place_without_a_copy(tmp_path, scratch):
    path = tmp_path / "calls.duckdb"
    _log(path)
    assert refresh_rollups(path).calls == 12
    with fresh_rollups(path) as rollups:
        assert (rollups.schema, rollups.refreshed) == ("main", False)
        assert list(scratch.iterdir()) == []  # no copy of the file was made
        assert rollups.read("SELECT count(*) AS n FROM rollup_units")["n"].tolist() == [12]
    # The same frames as the reference over every row (which copies the file to read it).
    _same(
        target_summary(path, experiment_id="exp", n_boot=50),
        reference_target_summary(path, experiment_id="exp", n_boot=50, bootstrap="auto"),
    )
    _same(
        paired_comparison(path, "a", "b", experiment_id="exp", n_boot=50),
        reference_paired_comparison(
            path, "a", "b", experiment_id="exp", n_boot=50, bootstrap="auto"
        ),
    )
    _same(cost_over_time(path, freq="minute"), reference_cost_over_time(path, freq="minute"))
    # The in-place read holds no lock afterwards: the log opens for writing again.
    with CallLog(path) as log:
        assert log.execute("SELECT count(*) FROM calls") == [(12,)]


def test_a_path_whose_rollups_are_behind_is_still_merged_in_a_private_copy(tmp_path, scratch):
    path = tmp_path / "calls.duckdb"
    _log(path)
    refresh_rollups(path)
    with CallLog(path) as log:  # one more call: the log's rollups are behind by one
        log.append_many([row("c12", "t12", item_id="i9", target="a", attempt=1)])
    with fresh_rollups(path) as rollups:
        assert (rollups.schema, rollups.refreshed) == ("main", True)
        assert len(list(scratch.iterdir())) == 1  # the private copy
        assert rollups.read("SELECT count(*) AS n FROM rollup_units")["n"].tolist() == [13]
    check = duckdb.connect(str(path), read_only=True)
    try:  # the merge went into the copy, not the log
        assert check.execute("SELECT calls_rowid FROM rollup_state").fetchone() == (11,)
    finally:
        check.close()
    assert target_summary(path, experiment_id="exp", n_boot=2)["units"].sum() == 13


def test_a_path_a_writer_holds_open_is_read_from_a_copy(tmp_path, scratch):
    # DuckDB lets one process open a file for writing and no other process open it at all:
    # with the rollups current, the in-place open is refused and the copy answers.
    path = tmp_path / "calls.duckdb"
    _log(path)
    refresh_rollups(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, duckdb
                conn = duckdb.connect({str(path)!r})
                print("open", flush=True)
                sys.stdin.read()
                conn.close()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(duckdb.Error):  # the file is locked against this process
            duckdb.connect(str(path), read_only=True)
        with fresh_rollups(path) as rollups:
            assert len(list(scratch.iterdir())) == 1  # read from a copy
            assert rollups.refreshed is False  # the copy's rollups were current too
        summary = target_summary(path, experiment_id="exp", n_boot=2)
        assert summary["units"].tolist() == [6, 6]
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
