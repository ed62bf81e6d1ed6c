"""``aigw-lab serve``: a real subprocess (start, SDK call, SIGTERM, log flushed), and the
user's mistakes reported as one line with exit status 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from aigw_lab.cli.main import main
from tests._sdks import openai

from .helpers import BASE_CONFIG, ENV, KEY_A


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``aigw-lab serve``; returns the process, its root URL and its banner."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    banner = []
    for line in process.stdout:  # the banner is printed once the port is bound
        banner.append(line)
        if "stops it." in line:  # the banner's last line
            text = "".join(banner)
            url = text.split("listening on", 1)[1].split()[0]
            return process, url, text
    process.kill()
    raise AssertionError("no banner:\n" + "".join(banner) + process.stderr.read())


def test_serve_subprocess_answers_sdk_calls_and_flushes_its_log_on_sigterm(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(BASE_CONFIG)
    db = tmp_path / "served.duckdb"
    env = {**os.environ, **ENV}
    process, url, _ = _start(["--config", str(config), "--db", str(db), "--port", "0"], env)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
        completion = client.chat.completions.create(
            model="sim-openai/sim-small", messages=[{"role": "user", "content": "hello"}]
        )
        assert completion.choices[0].message.content
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "call log flushed" in stderr
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("SELECT request_model, status, tenant_id FROM calls").fetchall()
    assert rows == [("sim-small", "ok", "a")]


def test_serve_without_config_says_the_fleet_is_simulated(tmp_path: Path) -> None:
    env = dict(os.environ)
    args = ["--no-auth", "--port", "0", "--db", str(tmp_path / "c.duckdb")]
    process, url, banner = _start(args, env)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert url.startswith("http://127.0.0.1:")
    assert "SIMULATED fleet" in banner and "authentication: OFF" in banner
    assert process.returncode == 0


def _first_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[0]


def test_refuses_to_start_without_keys(tmp_path: Path, capsys) -> None:
    config = tmp_path / "nokeys.toml"
    config.write_text(BASE_CONFIG.split("[server]")[0])
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "no gateway keys are configured" in _first_line_error(capsys)
    assert main(["serve", "--port", "0"]) == 2  # the simulated default has no keys either


def test_an_unset_key_variable_is_a_one_line_error(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(BASE_CONFIG)
    monkeypatch.delenv("AIGW_KEY_TEAM_A", raising=False)
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "AIGW_KEY_TEAM_A is unset" in _first_line_error(capsys)


def test_a_bad_server_table_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(BASE_CONFIG.replace('tenant = "a"', 'tennant = "a"'))
    assert main(["serve", "--config", str(config)]) == 2
    line = _first_line_error(capsys)
    assert "unknown key 'tennant'" in line


def test_a_taken_port_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--no-auth", "--port", str(port), "--db", str(tmp_path / "x.db")])
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in _first_line_error(capsys)


def test_a_policy_trained_on_the_command_line_is_served_to_both_sdks(tmp_path: Path) -> None:
    """The whole path: `aigw-lab policy train` on real recorded outputs, then `aigw-lab serve`
    loading it through [policies] (a subprocess), called by name from both official SDKs."""
    import anthropic

    from aigw_lab.datasets.shared import shared_data_dir_or_none
    from aigw_lab.sim.replay import load_recording

    if shared_data_dir_or_none() is None:
        pytest.skip("shared data folder absent: set AIGW_LAB_SHARED_DATA to run this test")
    policy = tmp_path / "policies" / "cheap-or-strong.json"
    trained = main(
        [
            "policy", "train", "--data", "routellm/gsm8k", "--router", "knn",
            "--name", "cheap-or-strong", "--strong-share", "0.5", "--out", str(policy),
            "--embedder", "hashing-256-3", "--n-boot", "50",
            "--cache-dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    assert trained == 0
    config = tmp_path / "gateway.toml"
    config.write_text(
        BASE_CONFIG
        + '\n[providers.rec]\nkind = "replay"\nrecorded = "routellm/gsm8k"\n'
        + '\n[policies]\ncheap-or-strong = "policies/cheap-or-strong.json"\n'
    )
    prompts = [item.prompt for item in load_recording("routellm/gsm8k").dataset.items[:6]]
    db = tmp_path / "served.duckdb"
    process, url, _ = _start(
        ["--config", str(config), "--db", str(db), "--port", "0"], {**os.environ, **ENV}
    )
    try:
        oai = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
        ant = anthropic.Anthropic(base_url=url, api_key=KEY_A, max_retries=0)
        for prompt in prompts[:3]:
            answer = oai.chat.completions.create(
                model="cheap-or-strong", messages=[{"role": "user", "content": prompt}]
            )
            assert answer.choices[0].message.content
        for prompt in prompts[3:]:
            message = ant.messages.create(
                model="cheap-or-strong",
                max_tokens=512,
                messages=[{"role": "user", "content": prompt}],
            )
            assert message.content[0].text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql(
            "SELECT provider_name, request_model, tags_json->>'$.aigw_policy' FROM calls"
        ).fetchall()
    assert len(rows) == 6
    assert {r[0] for r in rows} == {"rec"} and {r[2] for r in rows} == {"cheap-or-strong"}
    assert {r[1] for r in rows} <= {"gpt-4-1106-preview", "Mixtral-8x7B-Instruct-v0.1"}


_CRASH = """
import os, sys
from aigw_lab import Gateway
gw = Gateway.simulated_fleet(time_scale=0, log=sys.argv[1])
gw.chat("sim-openai/sim-small", "hello")
os._exit(0)  # no flush, no finalizer: the row exists only in the crash spool
"""


def test_serve_says_how_many_rows_it_recovered_from_a_crashed_process(tmp_path: Path) -> None:
    """An operator restarting a killed gateway sees that rows came back from the spool."""
    db = tmp_path / "c.duckdb"
    script = tmp_path / "crash.py"
    script.write_text(_CRASH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, str(script), str(db)], env=env, check=True, timeout=120)
    process, _, banner = _start(["--no-auth", "--port", "0", "--db", str(db)], env)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert "recovered 1 rows from the crash spool" in banner
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.sql("SELECT status FROM calls").fetchall() == [("ok",)]
