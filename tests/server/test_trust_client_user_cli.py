"""``[server] trust_client_user`` through ``aigw-lab serve`` (a real subprocess): the config
switch reaches the served app, and without it the key, not the body, names the user."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests._sdks import openai

from .helpers import BASE_CONFIG, ENV, KEY_A


def _serve_and_call(tmp_path: Path, extra_server_lines: str) -> list[tuple]:
    config = tmp_path / "gateway.toml"
    config.write_text(BASE_CONFIG + extra_server_lines)  # [server] is BASE_CONFIG's last table
    db = tmp_path / "served.duckdb"
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config),
         "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:  # the banner is printed once the port is bound
            if "listening on" in line:
                url = line.split("listening on", 1)[1].split()[0]
            if "stops it." in line:
                break
        assert url is not None, process.stderr.read() if process.stderr else ""
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
        client.chat.completions.create(
            model="sim-openai/sim-nano",
            messages=[{"role": "user", "content": "hello"}],
            user="alice",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql("SELECT tenant_id, user_id FROM calls").fetchall()


@pytest.mark.parametrize("lines, user", [("", "team-a"), ("trust_client_user = true\n", "alice")])
def test_the_config_switch_decides_whose_user_a_call_is(
    tmp_path: Path, lines: str, user: str
) -> None:
    assert _serve_and_call(tmp_path, lines) == [("a", user)]
