"""`aigw-lab demo`: runs offline, logs every call, and prints numbers that come from the log."""

import re
import subprocess
import sys

import duckdb
import pytest

from aigw_lab.cli.main import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out):
    """target -> (calls, errors) parsed from the demo's per-target table."""
    rows = {}
    for line in out.splitlines():
        match = re.match(r"\s+(sim-[\w-]+/sim-[\w-]+)\s+(\d+)\s+(\d+)\s", line)
        if match:
            rows[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return rows


def test_demo_offline_numbers_come_from_the_log(tmp_path, capsys):
    db = tmp_path / "demo.duckdb"
    code, out, err = run_cli(capsys, "demo", "--db", str(db), "--calls", "140", "--time-scale", "0")
    assert code == 0, err
    assert "SIMULATED" in out
    printed = table_rows(out)
    assert len(printed) == 7  # every model of the fleet got calls

    with duckdb.connect(str(db), read_only=True) as con:
        logged = {
            target: (calls, errors)
            for target, calls, errors in con.execute(
                "SELECT provider_name || '/' || request_model, count(*), "
                "count(*) FILTER (WHERE status = 'error') FROM calls GROUP BY 1"
            ).fetchall()
        }
        assert con.execute("SELECT bool_and(simulated) FROM calls").fetchone()[0] is True
        assert con.execute("SELECT count(*) FILTER (WHERE stream) FROM calls").fetchone()[0] == 28
        faults = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT error_type FROM calls WHERE status='error'"
            ).fetchall()
        }
    assert printed == logged
    assert sum(calls for calls, _ in logged.values()) == 140
    assert faults, "the demo injects faults, so some calls must have failed"
    assert "140 log rows for 140 calls" in out


def test_demo_is_deterministic_for_a_seed(tmp_path, capsys):
    outs = []
    for name in ("a", "b"):
        code, out, _ = run_cli(
            capsys,
            "demo",
            "--db",
            str(tmp_path / f"{name}.duckdb"),
            "--calls",
            "70",
            "--time-scale",
            "0",
            "--seed",
            "5",
        )
        assert code == 0
        outs.append(table_rows(out))
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--db", "{tmp}"], "is a directory"),
        (["--db", "{tmp}/file.txt/x.duckdb"], "cannot create the directory"),
        (["--calls", "0"], "--calls 0 must be at least 1"),
        (["--providers", "opneai"], "unknown provider 'opneai'"),
        (["--providers", "openai"], "OPENAI_API_KEY"),
        (["--config", "{tmp}/missing.toml"], "does not exist"),
        (["--config", "{tmp}/bad.toml"], "unknown key 'knd'"),
    ],
)
def test_demo_user_errors_are_one_clear_message_without_traceback(
    tmp_path, capsys, monkeypatch, argv, fragment
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "bad.toml").write_text("[providers.x]\nknd = 'openai'\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--db" not in argv:
        argv += ["--db", str(tmp_path / "d.duckdb")]
    code, out, err = run_cli(capsys, "demo", *argv)
    assert code == 2
    assert fragment in err
    assert "fix:" in err
    assert "Traceback" not in err + out


def test_console_script_runs_and_reports_errors_without_traceback(tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "aigw_lab.cli.main",
            "demo",
            "--db",
            str(tmp_path / "x.duckdb"),
            "--calls",
            "14",
            "--time-scale",
            "0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "sim-openai/sim-nano" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "aigw_lab.cli.main", "demo", "--db", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "is a directory" in bad.stderr


def test_no_command_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "demo" in out and "simulate" in out
