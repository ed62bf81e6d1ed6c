"""``aigw-lab keys``: create (secret shown once), list (no secrets), rotate, revoke, mistakes
as one line with exit status 2; and a real ``aigw-lab serve`` subprocess picking up a
rotation and a revocation from the key file without a restart."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aigw_lab.cli.main import main
from tests._sdks import openai

PROMPT = [{"role": "user", "content": "hello"}]

CONFIG = """
[providers.sim-openai]
kind = "simulated"
format = "openai"
time_scale = 0.0

[server]
key_file = "keys.json"
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["keys", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_create_prints_the_secret_once_and_stores_only_its_hash(tmp_path, capsys):
    keys = tmp_path / "secrets" / "keys.json"
    code, out, err = run(capsys, "create", "team-a", "--tenant", "a", "--file", str(keys))
    secret = out.strip()
    assert code == 0 and secret.startswith("aigw_") and "shown only now" in err
    assert secret not in keys.read_text()
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys.parent).st_mode) == 0o700

    code, out, _ = run(capsys, "list", "--file", str(keys))
    assert code == 0 and "team-a" in out and "active" in out and secret not in out


def test_rotate_and_revoke_change_the_states_listed(tmp_path, capsys):
    keys = str(tmp_path / "keys.json")
    run(capsys, "create", "svc", "--file", keys)
    first_id = json.loads(Path(keys).read_text())["keys"][0]["secrets"][0]["id"]
    code, out, err = run(capsys, "rotate", "svc", "--file", keys)
    assert code == 0 and out.startswith("aigw_") and "stay valid" in err
    code, out, _ = run(capsys, "revoke", "svc", "--id", first_id, "--file", keys)
    assert code == 0 and first_id in out
    _, listing, _ = run(capsys, "list", "--file", keys)
    states = {line.split()[3]: line.split()[4] for line in listing.splitlines()[2:]}
    assert states[first_id] == "revoked" and sorted(states.values()) == ["active", "revoked"]


def test_rotate_with_a_grace_period_sets_the_old_expiry(tmp_path, capsys):
    keys = str(tmp_path / "keys.json")
    run(capsys, "create", "svc", "--file", keys)
    run(capsys, "rotate", "svc", "--old-expires-in", "2h", "--file", keys)
    secrets = json.loads(Path(keys).read_text())["keys"][0]["secrets"]
    assert secrets[0]["expires_at"] is not None and secrets[1]["expires_at"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["rotate", "ghost"], "no key 'ghost'"),
        (["revoke", "ghost"], "no key 'ghost'"),
        (["create", "bad name"], "must be 1-64"),
        (["list"], "which key file?"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path, capsys, args, needle):
    where = [] if args == ["list"] else ["--file", str(tmp_path / "keys.json")]
    code, _, err = run(capsys, *args, *where)
    assert code == 2 and needle in err.splitlines()[0]


def test_config_names_the_key_file(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    # The log's key variable is unset in this shell: keys only needs [server] key_file.
    config.write_text(CONFIG + '\n[log]\nencryption_key_env = "AIGW_UNSET_LOG_KEY"\n')
    code, _, _ = run(capsys, "create", "team-a", "--config", str(config))
    assert code == 0 and (tmp_path / "keys.json").exists()  # relative to the config


def test_serve_picks_up_rotation_and_revocation_without_a_restart(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    keys = str(tmp_path / "keys.json")
    _, old, _ = run(capsys, "create", "team-a", "--tenant", "a", "--file", keys)
    old = old.strip()
    old_id = old.split("_")[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config),
         "--db", str(tmp_path / "calls.duckdb"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if "listening on" in line:
                url = line.split("listening on", 1)[1].split()[0]
            if "stops it." in line:
                break
        assert url, process.stderr.read() if process.stderr else ""

        def ask(key: str) -> str:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            reply = client.chat.completions.create(model="sim-openai/sim-small", messages=PROMPT)
            return reply.choices[0].message.content

        assert ask(old)
        _, new, _ = run(capsys, "rotate", "team-a", "--file", keys)
        assert ask(new.strip()) and ask(old)
        run(capsys, "revoke", "team-a", "--id", old_id, "--file", keys)
        with pytest.raises(openai.AuthenticationError):
            ask(old)
        assert ask(new.strip())
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr


def test_create_with_signing_required_prints_the_key_id_to_sign_with(tmp_path, capsys):
    keys = tmp_path / "keys.json"
    code, out, err = run(capsys, "create", "svc", "--signing", "required", "--file", str(keys))
    secret_id = out.strip().split("_")[1]
    assert code == 0 and f"sign requests with key id {secret_id}" in err
    stored = json.loads(keys.read_text())["keys"][0]
    assert stored["signing"] == "required" and stored["secrets"][0]["signing_key"]
    _, listing, _ = run(capsys, "list", "--file", str(keys))
    assert "required" in listing
