"""The gateway over real adapters: the simulated fleet in every wire format, a loopback fake
provider for secrets, and the call log read back from the DuckDB file."""

import json

import duckdb
import pytest

from aigw_lab import Gateway, ProviderSpec
from aigw_lab.errors import AuthenticationError, MissingAPIKeyError, RateLimitedError
from aigw_lab.store import CallLog
from aigw_lab.testing.fake_upstream import FakeUpstream

SECRET = "sk-live-THIS-MUST-NEVER-BE-LOGGED-1234"


@pytest.mark.parametrize(
    "target", ["sim-openai/sim-small", "sim-anthropic/sim-haikuish", "sim-workers/sim-llamaish-8b"]
)
def test_simulated_fleet_in_each_wire_format_chat_and_stream(tmp_path, target):
    db = tmp_path / "calls.duckdb"
    with Gateway.simulated_fleet(time_scale=0, log=str(db)) as gw:
        resp = gw.chat(target, "What is 12 + 30?", max_tokens=64, temperature=0)
        assert resp.simulated and resp.cost_usd is not None and resp.cost_usd > 0
        assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
        with gw.stream(target, "Name a colour.", max_tokens=32) as stream:
            text = "".join(stream)
        assert text == stream.response.text
        assert stream.response.usage.output_tokens > 0
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT provider_name, request_model, stream, status, simulated, api_format, cost_usd > 0 FROM calls ORDER BY stream"
        ).fetchall()
    provider, model = target.split("/")
    fmt = {"sim-openai": "openai", "sim-anthropic": "anthropic", "sim-workers": "workers-ai"}[
        provider
    ]
    assert rows == [
        (provider, model, False, "ok", True, fmt, True),
        (provider, model, True, "ok", True, fmt, True),
    ]


def test_faults_from_the_fleet_are_typed_and_logged(tmp_path):
    with Gateway.simulated_fleet(
        time_scale=0, faults={"rate_limited": 1.0}, log=str(tmp_path / "c.duckdb")
    ) as gw:
        with pytest.raises(RateLimitedError) as info:
            gw.chat("sim-openai/sim-nano", "hi")
        assert info.value.retry_after is not None
        row = gw.query("SELECT status, error_type, http_status_code, simulated FROM calls").iloc[0]
    assert (row.status, row.error_type, int(row.http_status_code), bool(row.simulated)) == (
        "error",
        "rate_limited",
        429,
        True,
    )


def test_api_keys_never_reach_the_log(tmp_path):
    db = tmp_path / "calls.duckdb"
    error_body = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    ok_body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    with FakeUpstream() as fake:
        fake.reply_json(ok_body)
        fake.reply_json(error_body, status=401)
        spec = ProviderSpec(
            name="openai", kind="openai", base_url=f"{fake.url}/v1", api_key_env="TEST_OPENAI_KEY"
        )
        with CallLog(db) as log:
            gw = Gateway([spec], log=log, env={"TEST_OPENAI_KEY": SECRET})
            assert gw.chat("openai/gpt-4o-mini", "hi").text == "hello"
            with pytest.raises(AuthenticationError) as info:
                gw.chat("openai/gpt-4o-mini", "hi again")
            assert SECRET not in str(info.value)
            gw.close()
        assert fake.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT * FROM calls").fetchall()
    assert len(rows) == 2
    assert SECRET not in json.dumps(rows, default=str)
    assert SECRET.encode() not in db.read_bytes()


def test_missing_key_fails_only_the_provider_that_needs_it(tmp_path):
    specs = [
        ProviderSpec(name="openai", kind="openai", api_key_env="NOT_SET_ANYWHERE_KEY"),
        *Gateway.simulated_fleet()._specs.values(),
    ]
    with Gateway(specs, log=str(tmp_path / "c.duckdb"), env={}) as gw:
        with pytest.raises(MissingAPIKeyError) as info:
            gw.chat("openai/gpt-4o-mini", "hi")
        assert "NOT_SET_ANYWHERE_KEY" in str(info.value) and info.value.hint
        assert gw.chat("sim-openai/sim-nano", "hi", max_tokens=8).simulated  # others still work
        errors = gw.query("SELECT provider_name, error_type FROM calls WHERE status = 'error'")
    assert errors.values.tolist() == [["openai", "missing_api_key"]]


def test_config_file_gateway_end_to_end(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\ndb = "logs/calls.duckdb"\ntags = { team = "lab" }\n'
        '[providers.sim]\nkind = "simulated"\nformat = "anthropic"\ntime_scale = 0\nseed = 3\n'
        '[prices."sim/sim-haikuish"]\ninput_per_mtok = 1000\noutput_per_mtok = 1000\n'
    )
    with Gateway.from_config(config) as gw:
        resp = gw.chat("sim/sim-haikuish", "hello", max_tokens=16)
        assert resp.cost_usd == pytest.approx(
            (resp.usage.input_tokens + resp.usage.output_tokens) * 1000 / 1e6
        )
    with duckdb.connect(str(tmp_path / "logs/calls.duckdb"), read_only=True) as con:
        tags, api_format = con.execute("SELECT tags_json, api_format FROM calls").fetchone()
    assert json.loads(tags) == {"team": "lab"} and api_format == "anthropic"


@pytest.mark.parametrize("ending", ["normal exit", "uncaught exception"])
def test_calls_are_in_the_file_after_the_process_ends_without_close(tmp_path, ending):
    """A notebook or script that never closes its gateway still leaves every call in the log."""
    import subprocess
    import sys

    db = tmp_path / "calls.duckdb"
    script = (
        "from aigw_lab import Gateway\n"
        f"gw = Gateway.simulated_fleet(time_scale=0, log={str(db)!r})\n"
        "for i in range(25):\n"
        "    gw.chat('sim-openai/sim-nano', f'question {i}', max_tokens=8)\n"
        + ("raise RuntimeError('the user code failed')\n" if ending != "normal exit" else "")
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode == 0) == (ending == "normal exit"), done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == 25
