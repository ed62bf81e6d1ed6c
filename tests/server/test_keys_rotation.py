"""Gateway keys rotate without downtime: several secrets per key name in a key file, each with
an optional expiry, re-read by the running server when the file changes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.server import BackgroundServer, ClientIdentity, GatewayApp, KeyRing
from aigw_lab.server.keyfile import KeyFile
from tests._sdks import openai

from .helpers import KEY_A

PROMPT = [{"role": "user", "content": "Hello"}]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key_file(tmp_path: Path, clock: Clock) -> KeyFile:
    return KeyFile(tmp_path / "keys.json", clock=clock)


def test_a_new_secret_works_beside_the_old_one_and_revoking_stops_only_that_one(key_file, clock):
    old, first = key_file.create("team-a", tenant="a")
    ring = KeyRing({}, key_file=key_file, clock=clock)
    assert ring.identify(old) == ClientIdentity("team-a", tenant="a", user=None, signing="off")

    new, second = key_file.rotate("team-a")  # the same ring: no restart
    assert ring.identify(new).name == "team-a" and ring.identify(old).name == "team-a"

    assert key_file.revoke("team-a", secret_ids=(first.id,)) == [first.id]
    assert ring.identify(old) is None
    assert ring.identify(new).name == "team-a"


def test_secrets_expire_by_the_injected_clock(key_file, clock):
    secret, _ = key_file.create("batch", expires_at=clock.now + 60)
    ring = KeyRing({}, key_file=key_file, clock=clock)
    assert ring.identify(secret) is not None
    clock.now += 61
    assert ring.identify(secret) is None


def test_rotate_can_expire_the_old_secrets_after_a_grace_period(key_file, clock):
    old, _ = key_file.create("svc")
    new, _ = key_file.rotate("svc", old_expire_at=clock.now + 3600)
    ring = KeyRing({}, key_file=key_file, clock=clock)
    clock.now += 3599
    assert ring.identify(old) is not None
    clock.now += 2
    assert ring.identify(old) is None and ring.identify(new) is not None


def test_the_file_holds_no_secret_and_is_owner_only(key_file):
    secret, stored = key_file.create("team-a")
    text = key_file.path.read_text()
    # The random part may itself hold "_" (URL-safe base64): split only the two prefixes off.
    assert secret not in text and secret.split("_", 2)[2] not in text
    assert stat.S_IMODE(os.stat(key_file.path).st_mode) == 0o600
    assert json.loads(text)["keys"][0]["secrets"][0]["id"] == stored.id


def test_wrong_or_forged_secrets_are_refused(key_file, clock):
    secret, stored = key_file.create("team-a")
    ring = KeyRing({}, key_file=key_file, clock=clock)
    forged = f"aigw_{stored.id}_{'A' * 43}"  # right id, wrong secret
    assert ring.identify(forged) is None
    assert ring.identify(secret[:-1] + ("B" if secret[-1] != "B" else "C")) is None
    assert ring.identify("") is None and ring.identify("aigw_zz") is None


def test_a_broken_edit_keeps_the_previous_keys(key_file, clock, caplog):
    secret, _ = key_file.create("team-a")
    ring = KeyRing({}, key_file=key_file, clock=clock)
    assert ring.identify(secret) is not None
    key_file.path.write_text("{ not json")
    assert ring.identify(secret) is not None  # still served with the keys read last
    assert "not reloaded" in caplog.text


def test_env_keys_keep_working_beside_the_key_file(key_file, clock):
    secret, _ = key_file.create("team-b")
    ring = KeyRing({KEY_A: ClientIdentity("team-a", tenant="a")}, key_file=key_file, clock=clock)
    assert ring.identify(KEY_A).name == "team-a" and ring.identify(secret).name == "team-b"
    assert sorted(ring.names) == ["team-a", "team-b"]


def test_editing_errors_name_the_fix(key_file):
    key_file.create("team-a")
    with pytest.raises(ConfigError, match="already exists"):
        key_file.create("team-a")
    with pytest.raises(ConfigError, match="no key 'nobody'"):
        key_file.rotate("nobody")
    with pytest.raises(ConfigError, match="has no secret deadbeef"):
        key_file.revoke("team-a", secret_ids=("deadbeef",))
    with pytest.raises(ConfigError, match="must be 1-64"):
        key_file.create("has space")


def test_a_malformed_key_file_is_a_config_error(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"format": "aigw-keys/1", "keys": [{"name": "a", "secrets": [
        {"id": "zz", "salt": "00", "sha256": "0" * 64, "created_at": "2026-01-01T00:00:00"}
    ]}]}))  # fmt: skip
    with pytest.raises(ConfigError, match="bad or repeated id"):
        KeyFile(path).load()
    path.write_text("[]")
    with pytest.raises(ConfigError, match="not an aigw-lab key file"):
        KeyFile(path).load()


def test_rotation_through_the_running_server_with_the_openai_sdk(key_file, tmp_path):
    old, first = key_file.create("team-a", tenant="a")
    gateway = Gateway.simulated_fleet(time_scale=0, log=str(tmp_path / "calls.duckdb"))
    ring = KeyRing({}, key_file=key_file)
    with BackgroundServer(GatewayApp(gateway, ring)) as server:

        def ask(key: str) -> str:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
            reply = client.chat.completions.create(model="sim-openai/sim-small", messages=PROMPT)
            return reply.choices[0].message.content

        assert ask(old)
        new, _ = key_file.rotate("team-a")
        assert ask(new) and ask(old)  # both valid while clients move over
        key_file.revoke("team-a", secret_ids=(first.id,))
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            ask(old)
        assert ask(new)
    tenants = gateway.query("SELECT DISTINCT tenant_id FROM calls")["tenant_id"].tolist()
    gateway.close()
    assert tenants == ["a"]


def test_concurrent_edits_lose_nothing(key_file):
    import threading

    key_file.create("svc")
    start = threading.Barrier(8)
    made: list[str] = []

    def rotate() -> None:
        start.wait()
        made.append(key_file.rotate("svc")[1].id)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ids = {s.id for s in key_file.load().get("svc").secrets}
    assert len(made) == 8 and set(made) <= ids and len(ids) == 9
