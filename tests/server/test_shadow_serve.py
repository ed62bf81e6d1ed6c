"""Shadow traffic through ``aigw-lab serve``: a ``[shadow]`` table in the config makes the
HTTP gateway send each sampled call also to the candidate, after answering the SDK client,
and the rows are linked in the log (also when the server is stopped by SIGTERM)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import duckdb

from tests._sdks import openai

from .helpers import BASE_CONFIG, ENV, KEY_A

SHADOW = """
[shadow]
target = "sim-anthropic/sim-sonnetish"
share = 1.0
budget_usd = 1.0
seed = 0
"""
HELLO = [{"role": "user", "content": "hello"}]


def test_sdk_calls_are_answered_and_shadowed_with_linked_rows(serve_config) -> None:
    served = serve_config(SHADOW)
    client = served.openai()
    completion = client.chat.completions.create(model="sim-openai/sim-nano", messages=HELLO)
    assert completion.choices[0].message.content
    chunks = client.chat.completions.create(
        model="sim-openai/sim-nano", messages=HELLO, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    with served.anthropic().messages.stream(
        model="sim-openai/sim-nano", max_tokens=64, messages=HELLO
    ) as stream:
        assert stream.get_final_message().content[0].text
    shadow = served.gateway.shadow
    assert shadow.close(timeout=30) == 0  # drain before reading the log
    rows = served.rows(
        "SELECT l.call_id, l.stream, s.provider_name, s.request_model, s.stream, "
        "s.route_policy, s.tenant_id, s.status FROM calls s JOIN calls l "
        "ON l.call_id = s.shadow_of ORDER BY l.timestamp"
    )
    assert [r[1:] for r in rows] == [
        (False, "sim-anthropic", "sim-sonnetish", False, "shadow", "a", "ok"),
        (True, "sim-anthropic", "sim-sonnetish", True, "shadow", "a", "ok"),
        (True, "sim-anthropic", "sim-sonnetish", True, "shadow", "a", "ok"),
    ]
    assert served.rows("SELECT count(*) FROM calls WHERE shadow_of IS NULL") == [(3,)]
    stats = shadow.stats()
    assert (stats.sent, stats.completed) == (3, 3)


def test_serve_subprocess_drains_shadows_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(BASE_CONFIG + SHADOW)
    db = tmp_path / "served.duckdb"
    env = {**os.environ, **ENV}
    from .test_cli import _start  # here: test_cli.py (slow lane) imports the SDKs at its top

    process, url, _ = _start(["--config", str(config), "--db", str(db), "--port", "0"], env)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="sim-openai/sim-small", messages=HELLO)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    with duckdb.connect(str(db), read_only=True) as con:
        pairs = con.sql(
            "SELECT count(*), count(DISTINCT s.shadow_of) FROM calls s JOIN calls l "
            "ON l.call_id = s.shadow_of WHERE s.request_model = 'sim-sonnetish'"
        ).fetchall()
    assert pairs == [(3, 3)]
