"""The ``[server]`` timeout and limit keys and the ``aigw-lab serve`` flags that override
them: parsed strictly, and applied by a real ``aigw-lab serve`` subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aigw_lab.cli.main import main
from aigw_lab.config import load_config
from aigw_lab.errors import ConfigError
from aigw_lab.server_limits import ServerLimits

from .helpers import BASE_CONFIG, ENV


def test_server_limit_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        BASE_CONFIG + "header_timeout = 2.5\nmax_requests_in_flight = 8\nmax_json_depth = 16\n"
    )
    config = load_config(path, env=ENV)
    assert config.server is not None
    assert config.server.limits == ServerLimits(
        header_timeout=2.5, max_requests_in_flight=8, max_json_depth=16
    )


@pytest.mark.parametrize(
    "line",
    ["body_timeout = 0", "header_timeout = -1", "max_connections = 1.5", 'retry_after = "1"',
     "max_body_bytes = true", "keepalive_timeout = inf"],
)  # fmt: skip
def test_bad_limits_are_config_errors(tmp_path: Path, line: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE_CONFIG + line + "\n")
    key = line.split(" =")[0]
    with pytest.raises(ConfigError, match=rf"\[server\]: {key} = .* must be a positive"):
        load_config(path, env=ENV)


def test_a_bad_flag_value_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--no-auth", "--header-timeout", "0"])
    assert info.value.code == 2
    assert "must be a positive number of seconds" in capsys.readouterr().err


def test_serve_applies_the_header_timeout_flag(tmp_path: Path) -> None:
    """A connection that sends nothing is closed by ``--header-timeout 1`` (the default is
    10 s, longer than this test's socket guard)."""
    args = ["--no-auth", "--port", "0", "--db", str(tmp_path / "c.duckdb"),
            "--header-timeout", "1", "--max-requests-in-flight", "4"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if "listening on" in line:
                url = line.split("listening on", 1)[1].split()[0]
                break
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=8.0) as silent:
            assert silent.recv(1024) == b"", "closed by the server, before the socket guard"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
