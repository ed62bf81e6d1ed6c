"""`aigw-lab health --config F` on a config whose providers list no models (the README's):
each is probed at its kind's cheap default model; a provider of a kind without one is one
message naming what to add, before any probe (issue 10 §2)."""

from __future__ import annotations

from aigw_lab.cli.main import main

README_CONFIG = """
[gateway]
db = "calls.duckdb"

[providers.openai]
kind = "openai"
api_key_env = "DOC_TEST_OPENAI_KEY"

[providers.claude]
kind = "anthropic"
api_key_env = "DOC_TEST_ANTHROPIC_KEY"
"""


def _rows(out: str) -> dict[str, str]:
    return {
        line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if "/" in line.split()[0]
    }


def test_providers_without_models_are_probed_at_their_default_model(tmp_path, capsys, monkeypatch):
    # Failed before: "no targets to probe" and exit 2, whatever the config's providers.
    monkeypatch.delenv("DOC_TEST_OPENAI_KEY", raising=False)
    monkeypatch.delenv("DOC_TEST_ANTHROPIC_KEY", raising=False)
    config = tmp_path / "gateway.toml"
    config.write_text(README_CONFIG)
    code = main(["health", "--config", str(config), "--db", str(tmp_path / "probes.duckdb")])
    out, err = capsys.readouterr()
    assert code == 1, err  # probed, and failed: no keys in this environment
    assert _rows(out) == {
        "openai/gpt-4o-mini": "FAILED",
        "claude/claude-3-5-haiku-latest": "FAILED",
    }
    assert out.count("missing_api_key") == 2 and "DOC_TEST_OPENAI_KEY" in out


def test_listed_models_are_probed_and_policies_are_not_targets(tmp_path, capsys):
    from aigw_lab.policy import Rules, save_policy

    save_policy(Rules("by-rule", [], default="sim/sim-nano"), tmp_path / "by-rule.json")
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[providers.sim]\nkind = "simulated"\ntime_scale = 0\nmodels = ["sim-nano"]\n'
        '[policies]\nby-rule = "by-rule.json"\n'
    )
    code = main(["health", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert _rows(out) == {"sim/sim-nano": "ok"}


def test_a_provider_without_models_or_default_says_what_to_add(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[providers.local]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    code = main(["health", "--config", str(config), "--db", str(tmp_path / "p.duckdb")])
    out, err = capsys.readouterr()
    assert code == 2
    assert "'local'" in err and 'models = ["MODEL"] to [providers.local]' in err
    assert "--targets local/MODEL" in err
    assert not (tmp_path / "p.duckdb").exists() or "local/" not in out  # nothing probed
    assert "Traceback" not in err


def test_empty_targets_option_is_a_usage_error(capsys):
    code = main(["health", "--targets", " , "])
    _, err = capsys.readouterr()
    assert code == 2 and "names no target" in err and "fix:" in err
