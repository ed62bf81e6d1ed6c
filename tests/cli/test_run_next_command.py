"""`aigw-lab run` then the `aigw-lab report` it suggests, as the README has a new user do
(issue 10 §2): the bundled example logs to the current directory, and `run` ends with the
exact report command, which works as printed."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from aigw_lab.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _next_command(out: str) -> list[str]:
    lines = [line for line in out.splitlines() if line.startswith("next: ")]
    assert len(lines) == 1, out
    return shlex.split(lines[0][len("next: ") :])


def test_the_example_logs_to_the_current_directory_and_its_report_command_works(
    tmp_path, capsys, monkeypatch
):
    # Failed before: the log went to examples/experiments.duckdb, so the README's
    # `aigw-lab report --db experiments.duckdb` found no log; and run printed no next command.
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    code = main(["run", "examples/experiment.toml", "--max-items", "2", "--no-progress"])
    out, err = capsys.readouterr()
    assert code in (0, 3), err
    assert (tmp_path / "experiments.duckdb").is_file()
    assert not (tmp_path / "examples" / "experiments.duckdb").exists()
    command = _next_command(out)
    assert command[:4] == ["aigw-lab", "report", "--db", "experiments.duckdb"]
    assert command[command.index("--out") + 1] == "report.html"

    assert main(command[1:]) == 0
    assert (tmp_path / "report.html").stat().st_size > 0
    # The README's own command (no --experiment) reads the same log.
    assert main(["report", "--db", "experiments.duckdb", "--out", "readme.html"]) == 0


def test_the_next_command_names_a_log_outside_the_directory_absolutely(
    tmp_path, capsys, monkeypatch
):
    spec = tmp_path / "exp" / "e.toml"
    spec.parent.mkdir()
    spec.write_text(
        '[experiment]\nname = "elsewhere"\ndataset = "bundled:mixed_v1"\nsample = 2\n'
        '[[targets]]\nmodel = "sim-openai/sim-nano"\n'
        '[gateway]\ndb = "logs/my log.duckdb"\n[gateway.simulated]\ntime_scale = 0\n'
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code = main(["run", str(spec), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    command = _next_command(out)
    db = command[command.index("--db") + 1]
    assert Path(db) == (spec.parent / "logs" / "my log.duckdb").resolve()  # quoted: a space
    experiment = command[command.index("--experiment") + 1]
    assert f"experiment_id = {experiment!r}" in out
