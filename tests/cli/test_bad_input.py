"""Every subcommand that reads a file, given a hostile one: one ``aigw-lab: error:`` line
(and a ``fix:`` line) on stderr, exit status 2, never a traceback. Also: hostile numbers on
the command line, and the safety net for errors nobody checked yet."""

from __future__ import annotations

import os

import pytest

from aigw_lab.cli.main import EXIT_UNEXPECTED, main

TOML_FILES: dict[str, bytes] = {
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "not UTF-8": 'name = "caf\u00e9"\n'.encode("latin-1"),
    "TOML syntax error": b"[experiment\nname = 1\n",
    "a JSON list": b"[1, 2, 3]\n",
    "a JSON number": b"42\n",
    "deeply nested": b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "a huge line": b'name = "' + b"x" * 2_000_000 + b'"\n',
    "providers not a table": b"providers = 5\n",
    "db a number": b'[gateway]\ndb = 5\n[providers.a]\nkind = "simulated"\n',
    "kind a number": b"[providers.a]\nkind = 3\n",
    "seed a string": b'[providers.a]\nkind = "simulated"\nseed = "x"\n',
    "time_scale a string": b'[providers.a]\nkind = "simulated"\ntime_scale = "fast"\n',
    "options a number": b'[providers.a]\nkind = "simulated"\noptions = 5\n',
    "faults a number": b'[providers.a]\nkind = "simulated"\nfaults = 3\n',
    "retry a number": b'[providers.a]\nkind = "simulated"\n[gateway]\nretry = 5\n',
    "retry delay a string": (
        b'[providers.a]\nkind = "simulated"\n[gateway]\nretry = { base_delay = "1" }\n'
    ),
    "health threshold a string": (
        b'[providers.a]\nkind = "simulated"\n[health]\nfailure_threshold = "5"\n'
    ),
    "context_windows a number": (
        b'[providers.a]\nkind = "simulated"\n[fallbacks]\ncontext_windows = 5\n'
    ),
    "context window a string": (
        b'[providers.a]\nkind = "simulated"\n[fallbacks]\n'
        b'context_windows = { "a/sim-nano" = "big" }\n'
    ),
    "unknown fallback": b'[providers.a]\nkind = "simulated"\n[fallbacks]\ndefault = ["b/x"]\n',
    "policies a number": b'[providers.a]\nkind = "simulated"\n[policies]\nx = 5\n',
}
JSON_FILES: dict[str, bytes] = {
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "not UTF-8": '{"name": "caf\u00e9"}'.encode("latin-1"),
    "a JSON list": b"[1, 2]",
    "a JSON number": b"42",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "a huge line": b'{"x": "' + b"x" * 2_000_000 + b'"}',
    "missing keys": b'{"format": "aigw-policy"}',
    "wrong types": b'{"format": "aigw-policy", "version": "one", "policy": 5}',
    "policy of wrong shape": (
        b'{"format": "aigw-policy", "version": 1, "policy": {"kind": "rules", "rules": 5}}'
    ),
}
DB_FILES: dict[str, bytes] = {
    "empty": b"",
    "text": b"not a database\n",
    "binary": bytes(range(256)) * 8,
}

GOOD_EXPERIMENT = """
[experiment]
name = "bad input"
dataset = "bundled:mixed_v1"
sample = 1

[[targets]]
model = "sim-openai/sim-nano"

[gateway.simulated]
time_scale = 0
"""


def commands(tmp_path, path: str) -> dict[str, list[str]]:
    """The subcommands that read a TOML file, each pointed at ``path``."""
    experiment = tmp_path / "good.toml"
    experiment.write_text(GOOD_EXPERIMENT)
    db = str(tmp_path / "log.duckdb")
    return {
        "run EXPERIMENT": ["run", path, "--no-progress", "--db", db],
        "run --config": ["run", str(experiment), "--config", path, "--no-progress", "--db", db],
        "health --config": ["health", "--config", path],
        "loadtest --config": ["loadtest", "--rps", "1", "--duration", "0.1", "--config", path],
        "demo --config": ["demo", "--config", path, "--calls", "1", "--quiet", "--db", db],
    }


def policy_commands(tmp_path, path: str) -> dict[str, list[str]]:
    out = str(tmp_path / "exported.yaml")
    return {
        "policy evaluate": ["policy", "evaluate", path],
        "policy export": ["policy", "export", path, "--to", "litellm", "--out", out],
    }


def check_user_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert lines[0].startswith("aigw-lab: error: "), err
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("  fix: ")), err
    assert len(lines[0]) < 1000  # a huge value is not pasted whole
    return lines[0]


COMMAND_NAMES = ["run EXPERIMENT", "run --config", "health --config", "loadtest --config"]
COMMAND_NAMES += ["demo --config"]


@pytest.mark.parametrize("command", COMMAND_NAMES)
@pytest.mark.parametrize("case", sorted(TOML_FILES))
def test_hostile_toml_files(tmp_path, capsys, command, case):
    path = tmp_path / "hostile.toml"
    path.write_bytes(TOML_FILES[case])
    check_user_error(capsys, commands(tmp_path, str(path))[command])


@pytest.mark.parametrize("command", COMMAND_NAMES)
@pytest.mark.parametrize("case", ["missing", "directory", "unreadable"])
def test_missing_directory_and_unreadable_paths(tmp_path, capsys, command, case):
    path = tmp_path / "target.toml"
    if case == "directory":
        path.mkdir()
    elif case == "unreadable":
        if not hasattr(os, "geteuid") or os.geteuid() == 0:
            pytest.skip("root reads a chmod 000 file")
        path.write_text('[providers.a]\nkind = "simulated"\n')
        path.chmod(0)
    try:
        line = check_user_error(capsys, commands(tmp_path, str(path))[command])
    finally:
        if case == "unreadable":
            path.chmod(0o600)
    assert str(path) in line


@pytest.mark.parametrize("command", ["policy evaluate", "policy export"])
@pytest.mark.parametrize("case", sorted(JSON_FILES) + ["missing", "directory"])
def test_hostile_policy_files(tmp_path, capsys, command, case):
    path = tmp_path / "policy.json"
    if case == "directory":
        path.mkdir()
    elif case != "missing":
        path.write_bytes(JSON_FILES[case])
    check_user_error(capsys, policy_commands(tmp_path, str(path))[command])


@pytest.mark.parametrize("case", sorted(DB_FILES) + ["missing", "directory"])
def test_report_on_a_file_that_is_not_a_call_log(tmp_path, capsys, case):
    path = tmp_path / "calls.duckdb"
    if case == "directory":
        path.mkdir()
    elif case != "missing":
        path.write_bytes(DB_FILES[case])
    check_user_error(capsys, ["report", "--db", str(path), "--out", str(tmp_path / "r.html")])


@pytest.mark.parametrize("case", ["text", "binary", "directory"])
def test_run_with_a_db_that_is_not_a_call_log(tmp_path, capsys, case):
    experiment = tmp_path / "good.toml"
    experiment.write_text(GOOD_EXPERIMENT)
    db = tmp_path / "calls.duckdb"
    if case == "directory":
        db.mkdir()
    else:
        db.write_bytes(DB_FILES[case])
    check_user_error(capsys, ["run", str(experiment), "--db", str(db), "--no-progress"])


# --- experiment files: bad datasets and targets ---------------------------------------------

DATASETS: dict[str, bytes] = {
    "not UTF-8": '{"id": "a", "prompt": "caf\u00e9"}\n'.encode("latin-1"),
    "a list line": b'{"id": "a", "prompt": "x"}\n[1, 2]\n',
    "a number line": b"42\n",
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "deeply nested": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "missing prompt": b'{"id": "a"}\n',
    "history a string": b'{"id": "a", "prompt": "x", "history": "hi"}\n',
}


@pytest.mark.parametrize("case", sorted(DATASETS))
def test_run_with_a_hostile_dataset_file(tmp_path, capsys, case):
    (tmp_path / "data.jsonl").write_bytes(DATASETS[case])
    experiment = tmp_path / "exp.toml"
    experiment.write_text(GOOD_EXPERIMENT.replace('"bundled:mixed_v1"', '"data.jsonl"'))
    line = check_user_error(capsys, ["run", str(experiment), "--db", str(tmp_path / "x.duckdb")])
    assert "data.jsonl" in line


def test_the_non_utf8_dataset_names_the_byte_and_the_fix(tmp_path, capsys):
    (tmp_path / "data.jsonl").write_bytes(DATASETS["not UTF-8"])
    experiment = tmp_path / "exp.toml"
    experiment.write_text(GOOD_EXPERIMENT.replace('"bundled:mixed_v1"', '"data.jsonl"'))
    main(["run", str(experiment), "--db", str(tmp_path / "x.duckdb")])
    err = capsys.readouterr().err
    assert "is not UTF-8 text (byte 0xe9 at offset 26, line 1)" in err
    assert "fix: re-save it as UTF-8" in err


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nope/sim-nano", "unknown provider 'nope'"),
        ("sim-openai/sim-nanoo", "provider 'sim-openai' has no model 'sim-nanoo'"),
        ("sim-nano", "does not name a provider"),
    ],
)
def test_a_target_the_gateway_cannot_reach_is_refused_before_sending(
    tmp_path, capsys, model, message
):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(GOOD_EXPERIMENT.replace('"sim-openai/sim-nano"', f'"{model}"'))
    db = tmp_path / "x.duckdb"
    line = check_user_error(capsys, ["run", str(experiment), "--db", str(db)])
    assert message in line and "[[targets]] 1" in line
    from aigw_lab.store import CallLog

    with CallLog(db) as log:  # refused before the run started: nothing sent or recorded
        assert log.execute("SELECT count(*) FROM calls") == [(0,)]
        assert log.execute("SELECT count(*) FROM experiment_runs") == [(0,)]


EXPERIMENT_VALUES = [
    ("budget_usd = nan", "budget_usd = nan is not a non-negative number"),
    ("repetitions = 100000000", "over the 10,000,000 one run lists in memory"),
    ("params = { user = 5 }", "user = 5 must be a string"),
    ("params = { tenant = [1] }", "tenant = [1] must be a string"),
    ("params = { seed = 1.5 }", "seed = 1.5 must be an integer"),
    ("params = { stop = 5 }", "stop = 5 must be a string or a list of strings"),
    ("params = { tags = { team = 5 } }", "must be a table of strings"),
    ("params = { extra = 5 }", "extra = 5 must be a table"),
    ("params = { timeout = inf }", "timeout = inf must be a positive number of seconds"),
    ("params = { max_tokens = nan }", "max_tokens"),
]


@pytest.mark.parametrize(("line", "message"), EXPERIMENT_VALUES)
def test_hostile_values_in_an_experiment_file(tmp_path, capsys, line, message):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(GOOD_EXPERIMENT.replace("sample = 1", f"sample = 1\n{line}"))
    db = tmp_path / "x.duckdb"
    line = check_user_error(capsys, ["run", str(experiment), "--db", str(db), "--no-progress"])
    assert message in line and not db.exists()  # refused before the log was opened


# --- hostile numbers on the command line ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["loadtest", "--rps", "nan", "--duration", "1"],
        ["loadtest", "--rps", "1", "--duration", "inf"],
        ["loadtest", "--rps", "1", "--duration", "1", "--timeout", "-inf"],
        ["demo", "--calls", "1", "--time-scale", "nan"],
        ["health", "--timeout", "nan"],
        ["simulate", "--port", "99999"],
        ["simulate", "--port", "-1"],
        ["policy", "train", "--data", "x", "--out", "p.json", "--strong-share", "nan"],
        ["run", "x.toml", "--max-items", "many"],
        ["policy", "train", "--data", "x", "--out", "p.json", "--seed", "-1"],
        ["policy", "train", "--data", "x", "--out", "p.json", "--n-boot", "0"],
        ["policy", "evaluate", "p.json", "--n-boot", "-5"],
    ],
)
def test_hostile_numbers_are_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "Traceback" not in err
    assert "error: argument" in err


def test_simulate_on_a_port_in_use_is_one_message(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = check_user_error(capsys, ["simulate", "--port", str(port), "--time-scale", "0"])
    assert f"cannot listen on 127.0.0.1:{port}" in line


@pytest.mark.parametrize("command", COMMAND_NAMES + ["report --db"])
def test_a_path_the_system_refuses_is_a_user_error(tmp_path, capsys, command):
    path = str(tmp_path / ("a" * 5000 + ".toml"))  # ENAMETOOLONG: an OSError with a filename
    argv = commands(tmp_path, path).get(command) or ["report", "--db", path]
    line = check_user_error(capsys, argv)
    assert "aaaa" in line and len(line) < 400


# --- the safety net ---------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_with_how_to_see_more(capsys, monkeypatch):
    def broken(args):
        raise ValueError("something nobody checked\nsecond line")

    monkeypatch.setattr("aigw_lab.cli.health.run", broken)
    monkeypatch.delenv("AIGW_LAB_DEBUG", raising=False)
    code = main(["health"])
    err = capsys.readouterr().err
    assert code == EXIT_UNEXPECTED and "Traceback" not in err
    first, second = err.strip().splitlines()
    assert first == "aigw-lab: unexpected error: ValueError: something nobody checked second line"
    assert "AIGW_LAB_DEBUG=1" in second

    monkeypatch.setenv("AIGW_LAB_DEBUG", "1")
    with pytest.raises(ValueError, match="nobody checked"):
        main(["health"])
