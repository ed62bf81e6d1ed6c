"""`aigw-lab run` checks what is cheap to check before it sends anything (issue 10 §2)."""

from __future__ import annotations

import duckdb
import pytest

from aigw_lab.cli.main import main

SPEC = """
scorers = [{{ type = "{kind}", model = "{model}" }}]

[experiment]
name = "cheap checks"
dataset = "bundled:mixed_v1"
sample = 3

[[targets]]
model = "sim-openai/sim-nano"

[gateway.simulated]
time_scale = 0
"""


def _calls(db) -> int:
    if not db.exists():
        return 0
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM calls").fetchone()[0]


@pytest.mark.parametrize(
    "model, message",
    [
        ("sim-openai/sim-nope", "provider 'sim-openai' has no model 'sim-nope'"),
        ("nope/x", "unknown provider 'nope'"),
    ],
)
def test_a_judge_model_the_gateway_cannot_reach_stops_the_run_before_any_call(
    tmp_path, capsys, model, message
):
    # Failed before: the run sent every unit, every judgement failed, and it exited 0.
    spec = tmp_path / "e.toml"
    spec.write_text(SPEC.format(kind="judge", model=model))
    db = tmp_path / "e.duckdb"
    code = main(["run", str(spec), "--db", str(db), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "scorers[0]: model = " in err and message in err and "fix:" in err
    assert _calls(db) == 0


def test_an_embedding_scorers_model_is_not_taken_for_an_address(tmp_path, capsys):
    spec = tmp_path / "e.toml"
    spec.write_text(SPEC.format(kind="embedding", model="not/a-gateway-address"))
    code = main(["run", str(spec), "--db", str(tmp_path / "e.duckdb"), "--no-progress"])
    _, err = capsys.readouterr()
    assert "scorers[0]: model" not in err
    assert code in (0, 2, 3)  # whatever the embedding scorer makes of it, not our check


CONFIGURED = """
[experiment]
name = "log settings"
dataset = "bundled:mixed_v1"
sample = 2

[[targets]]
model = "sim-openai/sim-nano"

[gateway]
config = "gateway.toml"
"""


def test_the_gateway_configs_log_settings_apply_to_the_experiments_log(tmp_path, capsys):
    # Failed before: `run` built its gateway without the config's [log] table, so a config
    # asking for bodies = "none" (or encryption) got full plaintext bodies in the log.
    (tmp_path / "gateway.toml").write_text(
        '[log]\nbodies = "none"\n[providers.sim-openai]\nkind = "simulated"\ntime_scale = 0\n'
    )
    spec = tmp_path / "e.toml"
    spec.write_text(CONFIGURED)
    db = tmp_path / "e.duckdb"
    code = main(["run", str(spec), "--db", str(db), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0, err
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT bodies, response_text FROM calls").fetchall()
    assert rows == [("none", None)]


def test_an_encrypted_log_of_the_config_is_encrypted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOC_TEST_LOG_KEY", "k" * 64)
    (tmp_path / "gateway.toml").write_text(
        '[log]\nencryption_key_env = "DOC_TEST_LOG_KEY"\nencryption_crypto = "builtin"\n'
        '[providers.sim-openai]\nkind = "simulated"\ntime_scale = 0\n'
    )
    spec = tmp_path / "e.toml"
    spec.write_text(CONFIGURED)
    db = tmp_path / "e.duckdb"
    assert main(["run", str(spec), "--db", str(db), "--no-progress"]) == 0, capsys.readouterr()
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM calls")
