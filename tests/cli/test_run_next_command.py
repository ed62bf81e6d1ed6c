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


def test_an_encrypted_log_is_reported_with_the_config_the_next_command_names(
    tmp_path, capsys, monkeypatch
):
    # Failed before: `report` had no way to take the key (its fix said encryption=..., a
    # Python argument), and run's gateway ignored the config's [log] table anyway.
    monkeypatch.setenv("NEXT_TEST_LOG_KEY", "k" * 64)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\ndb = "enc.duckdb"\n'
        '[log]\nencryption_key_env = "NEXT_TEST_LOG_KEY"\nencryption_crypto = "builtin"\n'
        '[providers.sim-openai]\nkind = "simulated"\ntime_scale = 0\n'
    )
    (tmp_path / "e.toml").write_text(
        'scorers = ["auto"]\n[experiment]\nname = "enc"\ndataset = "bundled:mixed_v1"\n'
        'sample = 2\n[[targets]]\nmodel = "sim-openai/sim-nano"\n'
        '[gateway]\nconfig = "gateway.toml"\n'
    )
    code = main(["run", "e.toml", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    command = _next_command(out)
    assert command[command.index("--config") + 1] == "gateway.toml"

    code = main(["report", "--db", "enc.duckdb", "--out", "plain.html"])  # no key: one message
    _, err = capsys.readouterr()
    assert code == 2 and "encrypted" in err and "--config" in err

    assert main(command[1:]) == 0
    assert (tmp_path / "report.html").stat().st_size > 0
    # --db defaults to the config's [gateway] db; --scorer is checked with the key too.
    argv = ["report", "--config", "gateway.toml", "--scorer", "auto", "--out", "c.html"]
    assert main(argv) == 0
    assert (tmp_path / "c.html").is_file()


def test_report_without_a_log_to_read_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nolog.toml").write_text('[providers.s]\nkind = "simulated"\n')
    for argv in (["report"], ["report", "--config", "nolog.toml"]):
        assert main(argv) == 2
        _, err = capsys.readouterr()
        assert "no call log to read" in err and "fix: pass --db" in err
