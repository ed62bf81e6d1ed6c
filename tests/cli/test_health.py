"""`aigw-lab health`: one tiny probe per target, status and latency, exit code for scripts."""

from aigw_lab.cli.main import main


def test_health_probes_every_simulated_target(capsys, monkeypatch):
    code = main(
        [
            "health",
            "--targets",
            "sim-openai/sim-nano,sim-anthropic/sim-haikuish,sim-workers/sim-llamaish-8b",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("sim-")]
    assert len(lines) == 3 and all(" ok " in line for line in lines)
    assert "simulated fleet" in out


def test_health_reports_each_failure_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HEALTH_TEST_KEY", raising=False)
    config = tmp_path / "h.toml"
    config.write_text(
        '[providers.openai]\nkind = "openai"\napi_key_env = "HEALTH_TEST_KEY"\nmodels = ["gpt-4o-mini"]\n'
        '[providers.sim]\nkind = "simulated"\ntime_scale = 0\nfaults = { server_error = 1.0 }\n'
        '[providers.good]\nkind = "simulated"\ntime_scale = 0\n'
    )
    db = tmp_path / "probes.duckdb"
    code = main(
        [
            "health",
            "--config",
            str(config),
            "--db",
            str(db),
            "--targets",
            "openai/gpt-4o-mini,sim/sim-nano,sim/nope,good/sim-small",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1, err
    status = {
        line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if "/" in line.split()[0]
    }
    assert status == {
        "openai/gpt-4o-mini": "FAILED",
        "sim/sim-nano": "FAILED",
        "sim/nope": "FAILED",
        "good/sim-small": "ok",
    }
    assert "missing_api_key" in out and "server_error" in out and "unknown_model" in out

    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        assert (
            con.execute("SELECT count(*) FROM calls WHERE tags_json LIKE '%probe%'").fetchone()[0]
            == 4
        )


def test_health_config_mistake_exits_2(tmp_path, capsys):
    code = main(["health", "--config", str(tmp_path / "missing.toml")])
    _, err = capsys.readouterr()
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def test_a_configs_shadow_table_does_not_shadow_the_probes(tmp_path, capsys):
    # [shadow] with share 1.0 would send every probe to the candidate too (a paid call per
    # probe in production): health builds its gateway with shadow=None, as `shadow` does.
    config = tmp_path / "h.toml"
    config.write_text(
        '[providers.sim]\nkind = "simulated"\ntime_scale = 0\n'
        '[shadow]\ntarget = "sim/sim-large"\nshare = 1.0\nbudget_usd = 5.0\nseed = 0\n'
    )
    db = tmp_path / "probes.duckdb"
    argv = ["health", "--config", str(config), "--db", str(db), "--targets", "sim/sim-nano"]
    assert main(argv) == 0, capsys.readouterr().err

    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        models = [r[0] for r in con.execute("SELECT request_model FROM calls").fetchall()]
    assert models == ["sim-nano"]  # the probe alone: no shadow call to sim-large
