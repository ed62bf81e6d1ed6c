"""``aigw-lab run`` on TOML files: the estimate, the summary, resuming, exit codes, and
mistakes reported as one message without a traceback."""

from __future__ import annotations

import pytest

from aigw_lab.cli.main import main

GOOD = """
[experiment]
name = "cli run"
dataset = "bundled:mixed_v1"
sample = 6
seed = 1
params = { max_tokens = 64 }

[[targets]]
model = "sim-openai/sim-nano"

[[targets]]
model = "sim-anthropic/sim-haikuish"
name = "haiku-hot"
params = { temperature = 1.0 }

[gateway.simulated]
time_scale = 0
"""


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "exp.toml"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def run(capsys, *args):
    code = main(["run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_prints_the_estimate_the_summary_and_the_log(write, tmp_path, capsys):
    path = write(GOOD)
    db = tmp_path / "cli.duckdb"
    code, out, err = run(capsys, path, "--db", str(db), "--no-progress")
    assert code == 0, err
    assert "6 items x 2 targets x 1 repetitions = 12 units" in out
    assert "12 units to send" in out and "estimated $" in out
    assert "SIMULATED" in out
    assert "haiku-hot" in out and "sim-openai/sim-nano" in out  # the summary's rows
    assert "completed; 12 units done, 0 failed, 0 skipped" in out
    assert str(db) in out and "Traceback" not in err

    code, out, _ = run(capsys, path, "--db", str(db), "--no-progress")
    assert code == 0 and "0 units to send" in out and "12 skipped" in out


def test_max_items_and_no_resume(write, tmp_path, capsys):
    path = write(GOOD)
    db = str(tmp_path / "cli.duckdb")
    code, out, _ = run(capsys, path, "--db", db, "--max-items", "2", "--no-progress")
    assert code == 0 and "= 4 units" in out
    code, out, _ = run(capsys, path, "--db", db, "--max-items", "2", "--no-resume", "--no-progress")
    assert code == 0 and "4 units done" in out and "0 skipped" in out


def test_the_db_defaults_to_the_file_setting_relative_to_the_file(
    write, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = write(
        GOOD.replace("[gateway.simulated]", '[gateway]\ndb = "logs/x.duckdb"\n[gateway.simulated]')
    )
    code, out, err = run(capsys, path, "--max-items", "1", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "logs" / "x.duckdb").is_file()


def test_an_estimate_over_budget_needs_yes(write, tmp_path, capsys):
    path = write(GOOD.replace('name = "cli run"', 'name = "cli run"\nbudget_usd = 0.0000001'))
    db = str(tmp_path / "b.duckdb")
    code, out, err = run(capsys, path, "--db", db, "--no-progress")
    assert code == 2
    assert "over its budget_usd" in err and "--yes" in err and "Traceback" not in err
    code, out, err = run(capsys, path, "--db", db, "--no-progress", "--yes")
    assert code == 1 and "stopped_budget" in out and "raise it and run again" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[experiment\nname = 1", "not valid TOML"),
        (GOOD.replace("sample = 6", "sampel = 6"), "unknown key 'sampel'"),
        (GOOD.replace("sample = 6", 'sample = "six"'), "sample = 'six' must be an integer"),
        (GOOD.replace('dataset = "bundled:mixed_v1"', 'dataset = "nope.jsonl"'), "does not exist"),
        (GOOD.split("[[targets]]")[0], "no [[targets]]"),
        (
            GOOD.replace('name = "haiku-hot"', 'name = "sim-openai/sim-nano"'),
            "two targets are named",
        ),
        (GOOD.replace("temperature = 1.0", "temprature = 1.0"), "'temprature' is not a request"),
        (GOOD.replace("temperature = 1.0", "temperature = 5.0"), "temperature=5.0 is out of range"),
        (GOOD + '\n[gateway.providers.x]\nkind = "simulated"\n', "given together with simulated"),
        (GOOD.replace("time_scale = 0", "time_scal = 0"), "unknown key 'time_scal'"),
        (GOOD.replace("sample = 6", 'categories = ["math"]'), "has no category math"),
        ("scorers = [1]\n" + GOOD, "scorers must be a list"),
    ],
)
def test_mistakes_exit_2_with_a_message_and_no_traceback(write, tmp_path, capsys, text, message):
    code, out, err = run(capsys, write(text), "--db", str(tmp_path / "m.duckdb"))
    assert code == 2
    assert err.startswith("aigw-lab: error:") and "Traceback" not in err
    assert message in err


def test_a_missing_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path / "none.toml"))
    assert code == 2 and "does not exist" in err


def test_ctrl_c_says_how_to_resume(write, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("aigw_lab.experiments.runner.run_experiment", interrupted)
    db = str(tmp_path / "i.duckdb")
    code, _, err = run(capsys, write(GOOD), "--db", db, "--max-items", "3")
    assert code == 130
    assert "interrupted" in err and f"resume with: aigw-lab run {tmp_path / 'exp.toml'}" in err
    assert f"--db {db} --max-items 3" in err


RECORDED = """
scorers = ["recorded", "numeric"]

[experiment]
name = "gsm8k real outputs"
dataset = "recorded:routellm/gsm8k"
sample = 30

[[targets]]
model = "rec/gpt-4-1106-preview"

[[targets]]
model = "rec/Mixtral-8x7B-Instruct-v0.1"

[gateway.providers.rec]
kind = "replay"
recorded = "routellm/gsm8k"
"""


def test_a_recorded_dataset_runs_against_its_real_outputs(write, tmp_path, capsys):
    from aigw_lab.datasets.shared import shared_data_dir_or_none

    if shared_data_dir_or_none() is None:
        pytest.skip("shared data folder absent: set AIGW_LAB_SHARED_DATA to run this test")
    from aigw_lab.sim.replay import load_recording
    from aigw_lab.store import CallLog

    db = tmp_path / "rec.duckdb"
    assert main(["run", write(RECORDED), "--db", str(db), "--no-progress", "--yes"]) == 0
    recording = load_recording("routellm/gsm8k")
    with CallLog(db) as log:
        scores = log.query(
            "SELECT s.item_id, c.response_model AS model, s.value FROM scores s "
            "JOIN calls c USING (call_id) WHERE s.scorer = 'recorded'"
        )
        simulated = log.query("SELECT bool_or(simulated) AS any FROM calls").iloc[0, 0]
    assert len(scores) == 60 and not simulated
    # The "recorded" scorer is the recording's own label for the model that answered.
    for row in scores.itertuples():
        assert row.value == recording.label(row.item_id, row.model)
    assert "gsm8k real outputs" in capsys.readouterr().out


def test_an_unknown_recording_is_one_message(write, tmp_path, capsys):
    path = write(RECORDED.replace("recorded:routellm/gsm8k", "recorded:nope"))
    assert main(["run", path, "--db", str(tmp_path / "x.duckdb"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no recording named 'nope'" in err and "Traceback" not in err
