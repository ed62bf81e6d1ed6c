"""``[log] backend = "postgres"``: checked at load time (a user's mistake is one message,
never the URL echoed); a gateway built from it writes every row to the team log too; and
``aigw-lab log sync`` fills a mirror, its mistakes one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigw_lab.cli.main import main
from aigw_lab.config import load_config
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.gateway import Gateway

from .conftest import psycopg

_CONFIG = """
[gateway]
db = "own.duckdb"

[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0

[log]
{log}
"""
_TEAM = 'backend = "postgres"\nurl_env = "TEAM_URL"'


def _config(tmp_path: Path, log: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(_CONFIG.format(log=log))
    return path


@pytest.mark.parametrize(
    ("log", "env", "message"),
    [
        ('backend = "postgres"', {}, 'backend = "postgres" needs url_env'),
        (_TEAM, {}, "url_env names TEAM_URL, which is unset or empty"),
        (_TEAM, {"TEAM_URL": "https://user:pw@db/x"}, "TEAM_URL does not hold a postgresql"),
        ('url_env = "TEAM_URL"', {"TEAM_URL": "postgresql://h/x"}, "url_env is set but backend"),
        ('backend = "sqlite"', {}, "backend"),
        ('backend = "postgres"\nurl_env = "NOT A NAME"', {}, "url_env"),
    ],
)
def test_a_bad_team_log_table_is_one_message(tmp_path, log, env, message):
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, log), env=env)
    assert message in str(info.value)
    assert "pw" not in str(info.value)  # the URL's secret is never echoed


def test_the_default_backend_adds_no_sink(tmp_path):
    assert load_config(_config(tmp_path, 'bodies = "full"'), env={}).team_log is None


def test_the_spool_defaults_beside_the_log_file_and_resolves_against_the_config(tmp_path):
    env = {"TEAM_URL": "postgresql://u@127.0.0.1/x"}
    team = load_config(_config(tmp_path, _TEAM), env=env).team_log
    assert team.spool_for(str(tmp_path / "own.duckdb"), None) == tmp_path / "own.duckdb.team-spool"
    assert team.spool_for(None, str(tmp_path)) == tmp_path / "aigw-team-log.spool"
    team = load_config(_config(tmp_path, _TEAM + '\nteam_spool = "sp"'), env=env).team_log
    assert team.spool == str(tmp_path / "sp")
    assert "postgresql" not in repr(team)


def test_a_gateway_from_the_config_writes_every_row_to_the_team_log(team_url, tmp_path):
    path = _config(tmp_path, _TEAM)
    gateway = Gateway.from_config(path, env={"TEAM_URL": team_url})
    for i in range(5):
        gateway.chat("sim/sim-small", f"question {i}")
    assert [h.name for h in gateway.sink_health()] == ["team_log"]
    local = sorted(gateway.query("SELECT call_id FROM calls")["call_id"])
    assert (tmp_path / "own.duckdb.team-spool").is_dir()  # the sink's, beside the own log
    gateway.close()  # the config's sink is closed with its gateway: every row sent
    with psycopg.connect(team_url) as conn:
        remote = sorted(r[0] for r in conn.execute("SELECT call_id FROM calls"))
    assert remote == local and len(local) == 5
    assert not (tmp_path / "own.duckdb.team-spool").exists()  # all sent: the spool is gone


def test_log_sync_fills_a_mirror_from_the_configs_team_log(team_url, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    gateway = Gateway.from_config(_config(tmp_path, _TEAM), env={"TEAM_URL": team_url})
    gateway.chat("sim/sim-small", "hello")
    gateway.close()
    monkeypatch.setenv("TEAM_URL", team_url)
    mirror = tmp_path / "team.duckdb"
    assert (
        main(["log", "sync", "--config", str(tmp_path / "gw.toml"), "--mirror", str(mirror)]) == 0
    )
    assert "synced 1 rows" in capsys.readouterr().out
    assert main(["log", "sync", "--url-env", "TEAM_URL", "--mirror", str(mirror)]) == 0
    assert "synced 0 rows" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url-env", "NO_SUCH_VARIABLE_X"], "NO_SUCH_VARIABLE_X is unset"),
        (["--url-env", "bad name"], "is not an environment variable name"),
        (["--url-env", "UNREACHABLE_URL"], "cannot reach the team log"),
    ],
)
def test_log_sync_mistakes_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("UNREACHABLE_URL", "postgresql://x:hunter2@127.0.0.1:9/none")
    code = main(["log", "sync", *args, "--mirror", str(tmp_path / "m.duckdb")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and "hunter2" not in err
