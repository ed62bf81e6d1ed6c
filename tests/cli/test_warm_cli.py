"""``aigw-lab warm``: the plan and its estimated cost before any call, ``--dry-run`` and the
confirmation sending nothing, free answers from a log, a persistent cache required, and every
mistake one line with exit status 2."""

from __future__ import annotations

import json

import duckdb
import pytest

from aigw_lab import Gateway
from aigw_lab.cli.main import main
from aigw_lab.testing.fake_upstream import FakeUpstream
from tests.cli.test_bad_input import TOML_FILES, check_user_error

SIM = """
[gateway]
db = "calls.duckdb"

[providers.sim-openai]
kind = "simulated"
time_scale = 0
"""
DUCKDB_CACHE = '\n[cache]\nstore = "duckdb"\npath = "cache.duckdb"\n'
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
}


def config(tmp_path, body=SIM + DUCKDB_CACHE):
    path = tmp_path / "gw.toml"
    path.write_text(body)
    return str(path)


def count(db, sql="SELECT count(*) FROM calls"):
    if not db.exists():
        return 0
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def cache_entries(tmp_path):
    return count(tmp_path / "cache.duckdb", "SELECT count(*) FROM cache_entries")


def test_dry_run_prints_the_plan_and_its_cost_and_sends_nothing(tmp_path, capsys):
    args = ["warm", config(tmp_path), "--from-dataset", "bundled:mixed_v1"]
    code = main([*args, "--target", "sim-openai/sim-small", "--top", "4", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "warming plan: 4 prompts from dataset 'mixed_v1' to sim-openai/sim-small" in out
    assert "to call: 4" in out and "estimated $" in out and "SIMULATED" in out
    assert out.rstrip().endswith("dry run: nothing was sent")
    assert count(tmp_path / "calls.duckdb") == 0 and cache_entries(tmp_path) == 0


def test_warming_from_a_dataset_fills_the_persistent_cache_and_logs_tagged_calls(tmp_path, capsys):
    path = config(tmp_path)
    args = ["warm", path, "--from-dataset", "mixed_v1", "--target", "sim-openai/sim-small"]
    assert main([*args, "--top", "3"]) == 0
    out, _ = capsys.readouterr()
    assert out.index("warming plan") < out.index("warmed: 3 exact")
    assert cache_entries(tmp_path) == 3
    tags = count(
        tmp_path / "calls.duckdb",
        "SELECT list(DISTINCT json_extract_string(tags_json, '$.aigw_role')) FROM calls",
    )
    assert tags == ["warm"]
    # A later process (a notebook, the server) gets them as hits.
    with Gateway.from_config(path) as gw:
        first = json.loads(gw.query("SELECT request_json FROM calls LIMIT 1").request_json[0])[
            "messages"
        ]
        assert gw.chat("sim-openai/sim-small", first).cache_status == "hit"
    # Warming again finds them cached and calls nothing.
    assert main([*args, "--top", "3"]) == 0
    out, _ = capsys.readouterr()
    assert "already cached: 3" in out
    assert count(tmp_path / "calls.duckdb", "SELECT count(*) FROM calls WHERE attempt >= 1") == 3


def test_a_configs_shadow_table_does_not_shadow_the_warming_calls(tmp_path, capsys):
    # [shadow] at share 1.0 would send every warming call to the candidate too (paid twice
    # in production): warm builds its gateway with shadow=None.
    shadow = '\n[shadow]\ntarget = "sim-openai/sim-large"\nshare = 1.0\nbudget_usd = 5.0\n'
    path = config(tmp_path, SIM + DUCKDB_CACHE + shadow)
    args = ["warm", path, "--from-dataset", "mixed_v1", "--target", "sim-openai/sim-small"]
    assert main([*args, "--top", "3"]) == 0, capsys.readouterr().err
    models = count(tmp_path / "calls.duckdb", "SELECT list(DISTINCT request_model) FROM calls")
    assert models == ["sim-small"]  # no shadow call to sim-large


@pytest.mark.slow  # a serve start-up, subprocess CLI runs or the real model: seconds each
def test_warming_from_a_log_uses_its_answers_without_a_call(tmp_path, capsys):
    prod = tmp_path / "prod.duckdb"
    with Gateway.simulated_fleet(log=str(prod), time_scale=0) as gw:  # no latency sleeps
        for prompt in ["What is DuckDB?"] * 3 + ["Name a prime."] * 2:
            gw.chat("sim-openai/sim-small", prompt, tenant="acme")
    code = main(["warm", config(tmp_path), "--from-log", str(prod), "--top", "5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "the top 2 of 2 distinct requests in 5 ok calls" in out
    assert "free (no call): 2" in out and "to call: 0" in out
    assert "warmed: 2 exact" in out and "2 answers free, 0 paid calls" in out
    assert count(tmp_path / "calls.duckdb") == 0  # nothing was called
    assert cache_entries(tmp_path) == 2


def test_a_real_provider_is_not_called_without_yes_and_is_with_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WARM_KEY", "sk-test")
    with FakeUpstream() as fake:
        body = (
            f'[gateway]\ndb = "calls.duckdb"\n[providers.openai]\nkind = "openai"\n'
            f'base_url = "{fake.url}/v1"\napi_key_env = "WARM_KEY"\n' + DUCKDB_CACHE
        )
        args = ["warm", config(tmp_path, body), "--from-dataset", "mixed_v1"]
        args += ["--target", "openai/gpt-4o-mini", "--top", "2"]
        assert main(args) == 1  # stdin is not a terminal: no one to ask, so no
        out, err = capsys.readouterr()
        assert "warming plan" in out and "estimated $" in out and "SIMULATED" not in out
        assert "not started: pass --yes to send the 2 paid calls" in err
        assert fake.requests == []
        fake.reply_json(COMPLETION)
        fake.reply_json(COMPLETION)
        assert main([*args, "--yes"]) == 0
        assert len(fake.requests) == 2
    assert cache_entries(tmp_path) == 2


def test_a_failed_warming_call_is_reported_with_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WARM_KEY", "sk-test")
    with FakeUpstream() as fake:
        body = (
            f'[gateway]\ndb = "calls.duckdb"\n[providers.openai]\nkind = "openai"\n'
            f'base_url = "{fake.url}/v1"\napi_key_env = "WARM_KEY"\n' + DUCKDB_CACHE
        )
        fake.reply_json(COMPLETION)
        fake.reply_json({"error": {"message": "bad", "type": "invalid_request_error"}}, status=400)
        args = ["warm", config(tmp_path, body), "--from-dataset", "mixed_v1"]
        code = main([*args, "--target", "openai/gpt-4o-mini", "--top", "2", "--yes"])
        out, _ = capsys.readouterr()
        assert len(fake.requests) == 2
    assert code == 3
    assert "1 paid calls" in out and "1 failed" in out
    assert cache_entries(tmp_path) == 1


def test_max_cost_below_the_estimate_refuses_before_any_call(tmp_path, capsys):
    args = ["warm", config(tmp_path), "--from-dataset", "mixed_v1"]
    code = main([*args, "--target", "sim-openai/sim-large", "--max-cost", "0"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "warming plan" in out
    assert "aigw-lab: error: warming is estimated at $" in err and "fix:" in err
    assert count(tmp_path / "calls.duckdb") == 0


@pytest.mark.parametrize(
    "body, words",
    [
        (SIM + '\n[cache]\nstore = "memory"\n', "the exact cache is in memory"),
        (SIM, "the exact cache is not configured"),
    ],
)
def test_a_cache_that_does_not_outlive_the_command_is_refused(tmp_path, capsys, body, words):
    args = ["warm", config(tmp_path, body), "--from-dataset", "mixed_v1"]
    code = main([*args, "--target", "sim-openai/sim-small"])
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert words in lines[0] and lines[1] == (
        '  fix: set [cache] store = "duckdb" and path = "cache.duckdb" in the config'
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--from-log", "{tmp}/nope.duckdb", "--top", "5"], "no call log at"),
        (["--from-log", "{tmp}/gw.toml"], "--from-log needs --top N"),
        (["--from-dataset", "nope", "--target", "sim-openai/sim-small"], "no bundled dataset"),
        (["--from-dataset", "mixed_v1"], "--from-dataset needs --target"),
        (["--from-dataset", "mixed_v1", "--target", "nope/x"], "unknown provider 'nope'"),
        (
            ["--from-dataset", "mixed_v1", "--target", "sim-openai/sim-small", "--since", "x"],
            "--since applies to --from-log only",
        ),
        (["--from-log", "{tmp}/calls.duckdb", "--top", "3", "--since", "soon"], "not an ISO"),
        (["--from-log", "{tmp}/gw.toml", "--top", "3"], "cannot open a snapshot"),
    ],
)
def test_mistakes_are_one_line_with_exit_2(tmp_path, capsys, extra, message):
    path = config(tmp_path)
    with Gateway.from_config(path) as gw:  # a log to read
        gw.chat("sim-openai/sim-small", "hi")
    code = main(["warm", path, *[e.replace("{tmp}", str(tmp_path)) for e in extra]])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("aigw-lab: error: ") and message in err.splitlines()[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--from-log", "x.duckdb", "--top", "0"], "argument --top: 0 must be at least 1"),
        (["--from-log", "x.duckdb", "--top", "many"], "argument --top: 'many' is not an integer"),
        (["--from-log", "x", "--from-dataset", "y"], "not allowed with argument"),
        ([], "one of the arguments --from-dataset --from-log is required"),
        (["--from-log", "x", "--top", "1", "--max-cost", "nan"], "not a finite number"),
    ],
)
def test_bad_options_are_usage_errors_with_exit_2(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as raised:
        main(["warm", config(tmp_path), *extra])
    _, err = capsys.readouterr()
    assert raised.value.code == 2
    assert message in err.splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize("case", sorted(TOML_FILES))
def test_hostile_config_files_are_one_line_with_exit_2(tmp_path, capsys, case):
    path = tmp_path / "hostile.toml"
    path.write_bytes(TOML_FILES[case])
    check_user_error(capsys, ["warm", str(path), "--from-log", str(path), "--top", "1"])


# --- aigw-lab serve warms at start-up ([cache] warm_from) ------------------------------------------


def serve_seeing_the_cache(monkeypatch):
    """Replace the server loop: record the exact cache's entries when serving would begin."""
    seen = {}

    def fake_serve(app, host, port, **kwargs):
        cache = next(m for m in app.gateway.middleware if m.kind == "cache")
        seen["entries"] = len(cache.store)

    monkeypatch.setattr("aigw_lab.server.serve", fake_serve)
    return seen


@pytest.mark.slow  # a serve start-up, subprocess CLI runs or the real model: seconds each
def test_serve_warms_a_memory_cache_from_its_own_log_before_it_listens(
    tmp_path, capsys, monkeypatch
):
    with Gateway.simulated_fleet(log=str(tmp_path / "calls.duckdb"), time_scale=0) as gw:
        for prompt in ["a"] * 3 + ["b"] * 2 + ["c"]:
            gw.chat("sim-openai/sim-small", prompt)
    body = SIM + '\n[cache]\nstore = "memory"\nwarm_from = "log"\nwarm_top = 2\n'
    seen = serve_seeing_the_cache(monkeypatch)
    assert main(["serve", "--config", config(tmp_path, body), "--no-auth"]) == 0
    out, _ = capsys.readouterr()
    assert seen == {"entries": 2}
    assert "cache warmed at start-up from the call log" in out
    assert "2 answers free, 0 paid calls" in out
    assert count(tmp_path / "calls.duckdb") == 6  # no call was added


def test_serve_pays_for_start_up_warming_only_within_warm_max_usd(tmp_path, capsys, monkeypatch):
    base = SIM + '\n[cache]\nwarm_from = "mixed_v1"\nwarm_target = "sim-openai/sim-small"\n'
    base += "warm_top = 3\n"
    seen = serve_seeing_the_cache(monkeypatch)
    assert main(["serve", "--config", config(tmp_path, base), "--no-auth"]) == 0
    out, _ = capsys.readouterr()
    assert seen == {"entries": 0} and "3 calls not made" in out
    assert count(tmp_path / "calls.duckdb") == 0
    paying = base + "warm_max_usd = 0.5\n"
    assert main(["serve", "--config", config(tmp_path, paying), "--no-auth"]) == 0
    out, _ = capsys.readouterr()
    assert seen == {"entries": 3} and "3 paid calls" in out
    assert count(tmp_path / "calls.duckdb") == 3


@pytest.mark.parametrize(
    "keys, message",
    [
        ("warm_top = 5\n", "warm_top is set without warm_from"),
        ('warm_from = "log"\n', 'warm_from = "log" needs warm_top'),
        ('warm_from = "mixed_v1"\n', "needs warm_target"),
        ('warm_from = "log"\nwarm_top = 0\n', "warm_top = 0 must be"),
        ('warm_from = ""\n', "warm_from"),
        ('warm_from = "nope"\nwarm_target = "sim-openai/sim-small"\n', "no bundled dataset"),
        ('warm_from = "log"\nwarm_top = 1\nwarm_max_usd = -1\n', "warm_max_usd = -1"),
    ],
)
def test_start_up_warming_mistakes_stop_serve_with_one_line(
    tmp_path, capsys, monkeypatch, keys, message
):
    seen = serve_seeing_the_cache(monkeypatch)
    body = SIM + "\n[cache]\n" + keys
    check_user_error(capsys, ["serve", "--config", config(tmp_path, body), "--no-auth"])
    assert seen == {}  # never listened


def test_an_encrypted_log_is_read_with_the_configs_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WARM_TEST_LOG_KEY", "k" * 64)
    key = '[log]\nencryption_key_env = "WARM_TEST_LOG_KEY"\nencryption_crypto = "builtin"\n'
    producer = config(tmp_path, SIM.replace("calls.duckdb", "prod.duckdb") + key)
    with Gateway.from_config(producer) as gw:
        gw.chat("sim-openai/sim-small", "What is DuckDB?")
    path = tmp_path / "warm.toml"
    path.write_text(SIM + DUCKDB_CACHE + key)
    code = main(["warm", str(path), "--from-log", str(tmp_path / "prod.duckdb"), "--top", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "free (no call): 1" in out and "warmed: 1 exact" in out
    assert "1 answers free, 0 paid calls" in out


@pytest.mark.slow  # a serve start-up, subprocess CLI runs or the real model: seconds each
def test_serve_warms_the_semantic_cache_too(tmp_path, capsys, monkeypatch, minilm):
    with Gateway.simulated_fleet(log=str(tmp_path / "calls.duckdb"), time_scale=0) as gw:
        for prompt in ["What is the capital of France?"] * 2 + ["Name a prime."]:
            gw.chat("sim-openai/sim-small", prompt)
    body = SIM + '\n[cache]\nwarm_from = "log"\nwarm_top = 5\n[semantic_cache]\nthreshold = 0.9\n'
    seen = {}

    def fake_serve(app, host, port, **kwargs):
        semantic = next(m for m in app.gateway.middleware if type(m).__name__ == "SemanticCache")
        seen["entries"] = len(semantic)
        seen["hit"] = app.gateway.chat(
            "sim-openai/sim-small", "Which city is the capital of France?"
        ).cache_status

    monkeypatch.setattr("aigw_lab.server.serve", fake_serve)
    assert main(["serve", "--config", config(tmp_path, body), "--no-auth"]) == 0
    out, _ = capsys.readouterr()
    assert seen == {"entries": 2, "hit": "hit"}
    assert "2 exact and 2 semantic entries added" in out
