"""`aigw-lab report --scorer NAME` names a scorer of the log, checked before the report is
built (issue 10 §2: cheap checks before expensive work)."""

from __future__ import annotations

from aigw_lab.cli.main import main

SPEC = """
scorers = ["auto"]

[experiment]
name = "report checks"
dataset = "bundled:mixed_v1"
sample = 3

[[targets]]
model = "sim-openai/sim-nano"

[gateway.simulated]
time_scale = 0
"""


def _log(tmp_path, capsys, scorers: str = 'scorers = ["auto"]'):
    spec = tmp_path / "e.toml"
    spec.write_text(SPEC.replace('scorers = ["auto"]', scorers))
    db = tmp_path / "e.duckdb"
    assert main(["run", str(spec), "--db", str(db), "--no-progress"]) == 0
    capsys.readouterr()
    return db


def test_an_unknown_scorer_is_one_message_listing_the_scorers(tmp_path, capsys):
    # Failed before: the report was written, with the misspelt scorer silently ignored.
    db = _log(tmp_path, capsys)
    out_file = tmp_path / "r.html"
    code = main(["report", "--db", str(db), "--scorer", "autoo", "--out", str(out_file)])
    _, err = capsys.readouterr()
    assert code == 2
    assert (
        "--scorer 'autoo': no scores by that scorer" in err and "fix: choose one of: 'auto'" in err
    )
    assert not out_file.exists()

    assert main(["report", "--db", str(db), "--scorer", "auto", "--out", str(out_file)]) == 0
    assert out_file.is_file()


def test_a_scorer_for_a_log_without_scores_says_to_drop_it(tmp_path, capsys):
    db = _log(tmp_path, capsys, scorers="")
    code = main(["report", "--db", str(db), "--scorer", "auto", "--out", str(tmp_path / "r.html")])
    _, err = capsys.readouterr()
    assert code == 2 and "drop --scorer" in err


def test_an_out_path_that_cannot_be_written_is_reported_before_the_log_is_read(tmp_path, capsys):
    # Failed before: the log was read (here: refused, as not a DuckDB file) first, so the
    # --out mistake surfaced only after the report's work, and here not at all.
    not_a_log = tmp_path / "notes.duckdb"
    not_a_log.write_text("not a database")
    code = main(["report", "--db", str(not_a_log), "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "--out" in err and "is a directory" in err
    assert "fix: pass --out a file name in it" in err

    (tmp_path / "file").write_text("x")
    code = main(["report", "--db", str(not_a_log), "--out", str(tmp_path / "file" / "r.html")])
    _, err = capsys.readouterr()
    assert code == 2 and "cannot write in" in err and "fix: choose a writable --out" in err
