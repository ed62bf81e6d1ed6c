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
