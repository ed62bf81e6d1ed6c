"""The demo against a "real" provider: an OpenAI-format config pointed at a loopback fake."""

import duckdb

from aigw_lab.cli.main import main
from aigw_lab.testing.fake_upstream import FakeUpstream

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
}


def test_demo_with_a_config_calls_the_configured_server_and_logs_real_costs(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("DEMO_KEY", "sk-demo-secret-value")
    with FakeUpstream() as fake:
        for _ in range(4):
            fake.reply_json(COMPLETION)
        config = tmp_path / "gw.toml"
        config.write_text(
            f'[providers.openai]\nkind = "openai"\nbase_url = "{fake.url}/v1"\n'
            'api_key_env = "DEMO_KEY"\nmodels = ["gpt-4o-mini"]\n'
        )
        code = main(
            [
                "demo",
                "--config",
                str(config),
                "--db",
                str(tmp_path / "d.duckdb"),
                "--calls",
                "4",
                "--quiet",
            ]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert len(fake.requests) == 4
        assert all(
            r.headers["authorization"] == "Bearer sk-demo-secret-value" for r in fake.requests
        )
    assert "SIMULATED" not in out
    with duckdb.connect(str(tmp_path / "d.duckdb"), read_only=True) as con:
        simulated, cost = con.execute(
            "SELECT bool_or(simulated), sum(cost_usd) FROM calls"
        ).fetchone()
    assert simulated is False
    # genai-prices, offline: gpt-4o-mini at 0.15 / 0.60 USD per million tokens.
    assert abs(cost - 4 * (20 * 0.15 + 1 * 0.60) / 1e6) < 1e-12


ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": "42"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 20, "output_tokens": 1},
}


def test_demo_providers_flag_uses_the_sdk_base_url_variables(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeUpstream() as openai_fake, FakeUpstream() as anthropic_fake:
        for _ in range(2):
            openai_fake.reply_json(COMPLETION)
            anthropic_fake.reply_json(ANTHROPIC_MESSAGE)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{openai_fake.url}/v1")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_fake.url)
        db = tmp_path / "real.duckdb"
        code = main(
            ["demo", "--providers", "openai,anthropic", "--db", str(db), "--calls", "4", "--quiet"]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert [r.path for r in openai_fake.requests] == ["/v1/chat/completions"] * 2
        assert [r.path for r in anthropic_fake.requests] == ["/v1/messages"] * 2
        assert anthropic_fake.requests[0].headers["x-api-key"] == "sk-ant-test"
    assert "openai/gpt-4o-mini" in out and "anthropic/claude-3-5-haiku-latest" in out
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT provider_name, count(*), bool_or(simulated), count(cost_usd) FROM calls GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert rows == [("anthropic", 2, False, 2), ("openai", 2, False, 2)]
