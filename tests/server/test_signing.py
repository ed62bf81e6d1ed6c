"""HMAC request signing: the official openai and anthropic SDKs sign through an httpx2 event
hook against the real server; tampering, staleness and replays are refused with a 401 in the
caller's format naming the fix."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.server import BackgroundServer, ClientIdentity, GatewayApp, KeyRing
from aigw_lab.server.keyfile import KeyFile
from aigw_lab.server.signing import (
    SignatureChecker,
    async_signing_hook,
    canonical,
    sign_request,
    signature,
    signing_hook,
)
from tests._sdks import anthropic, openai

ENV_SECRET = "svc-billing-secret-0123456789abcdef"
PROMPT = [{"role": "user", "content": "Explain how a rainbow forms"}]
BODY = json.dumps({"model": "sim-openai/sim-small", "messages": PROMPT}).encode()
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _headers(signed: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in signed.items()}


# --- the signature itself ------------------------------------------------------------------


@pytest.fixture
def ring() -> KeyRing:
    identity = ClientIdentity("billing", tenant="fin", user=None, signing="required")
    return KeyRing({ENV_SECRET: identity}, clock=Clock())


def check(ring: KeyRing, signed: dict[str, str], *, path="/v1/chat/completions", body=BODY):
    return ring.authenticate(_headers(signed), "POST", path, body)


def test_a_signed_request_is_accepted_once(ring):
    signed = sign_request(ENV_SECRET, "POST", "/v1/chat/completions", BODY, key_id="billing",
                          timestamp=T0)  # fmt: skip
    assert check(ring, signed) == ClientIdentity(
        "billing", tenant="fin", user=None, signing="required"
    )
    assert "replay" in check(ring, signed)
    fresh = sign_request(ENV_SECRET, "POST", "/v1/chat/completions", BODY, key_id="billing",
                         timestamp=T0)  # fmt: skip
    assert isinstance(check(ring, fresh), ClientIdentity)  # same second, new nonce: a retry


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY.replace(b"rainbow", b"rainbov")},
        {"path": "/v1/messages"},
    ],
)
def test_a_changed_body_or_path_breaks_the_signature(ring, change):
    signed = sign_request(ENV_SECRET, "POST", "/v1/chat/completions", BODY, key_id="billing",
                          timestamp=T0)  # fmt: skip
    assert "signature does not match" in check(ring, signed, **change)


def test_stale_and_future_timestamps_are_refused_outside_the_window(ring):
    for offset, accepted in ((-300, True), (301, False), (-301, False), (299, True)):
        signed = sign_request(ENV_SECRET, "POST", "/p", BODY, key_id="billing",
                              timestamp=T0 + offset)  # fmt: skip
        result = check(ring, signed, path="/p")
        assert isinstance(result, ClientIdentity) is accepted, (offset, result)
        if not accepted:
            assert "away from the gateway's clock" in result


def test_a_signing_required_key_is_refused_as_a_bearer_token(ring):
    result = ring.authenticate({b"authorization": f"Bearer {ENV_SECRET}".encode()}, "POST", "/",
                               BODY)  # fmt: skip
    assert "requires signed requests" in result


def test_the_wrong_secret_or_an_unknown_key_id_is_refused(ring):
    wrong = sign_request("not-the-secret", "POST", "/p", BODY, key_id="billing", timestamp=T0)
    assert "signature does not match" in check(ring, wrong, path="/p")
    unknown = sign_request(ENV_SECRET, "POST", "/p", BODY, key_id="nobody", timestamp=T0)
    assert "unknown, expired or revoked signing key id" in check(ring, unknown, path="/p")


def test_nonces_are_forgotten_after_the_window():
    clock = Clock()
    checker = SignatureChecker(window=10, clock=clock)
    key = b"k" * 32

    def signed(nonce: str) -> dict[bytes, bytes]:
        stamp = str(int(clock.now))
        sent = signature(key, canonical("GET", "/", stamp, nonce, b""))
        return {b"x-aigw-timestamp": stamp.encode(), b"x-aigw-nonce": nonce.encode(),
                b"x-aigw-signature": sent.encode()}  # fmt: skip

    first = signed("n" * 16)
    assert checker.check(key, "id", "GET", "/", first, b"") is None
    clock.now += 5
    assert "replay" in checker.check(key, "id", "GET", "/", first, b"")
    clock.now += 30  # outside the window: the stale timestamp refuses it now
    assert "away from" in checker.check(key, "id", "GET", "/", first, b"")
    assert checker.check(key, "id", "GET", "/", signed("m" * 16), b"") is None
    assert len(checker) == 1  # the first nonce was forgotten, the memory stays bounded


# --- the official SDKs against the real server ---------------------------------------------


@pytest.fixture
def server(tmp_path: Path):
    key_file = KeyFile(tmp_path / "keys.json")
    secret, stored = key_file.create("svc-batch", tenant="research", signing="required")
    env_identity = ClientIdentity("billing", tenant="fin", user=None, signing="required")
    ring = KeyRing({ENV_SECRET: env_identity}, key_file=key_file)
    gateway = Gateway.simulated_fleet(time_scale=0, log=str(tmp_path / "calls.duckdb"))
    with BackgroundServer(GatewayApp(gateway, ring)) as running:
        yield running, gateway, secret, stored.id
    gateway.close()


def _openai(url: str, secret: str, key_id: str | None = None) -> openai.OpenAI:
    hook = signing_hook(secret, key_id=key_id)
    http_client = openai.DefaultHttpxClient(event_hooks={"request": [hook]})
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key_id or "signed", max_retries=0,
                         http_client=http_client)  # fmt: skip


def test_the_openai_sdk_signs_chats_streams_and_model_lists(server):
    running, gateway, secret, key_id = server
    client = _openai(running.url, secret)
    reply = client.chat.completions.create(model="sim-openai/sim-small", messages=PROMPT)
    assert "rainbow" in reply.choices[0].message.content
    chunks = client.chat.completions.create(model="sim-openai/sim-small", messages=PROMPT,
                                            stream=True)  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert client.models.list().data
    # An env-var key signs with its name as the key id.
    billing = _openai(running.url, ENV_SECRET, key_id="billing")
    assert billing.chat.completions.create(model="sim-openai/sim-small", messages=PROMPT)
    rows = gateway.query("SELECT tenant_id, count(*) AS n FROM calls GROUP BY 1 ORDER BY 1")
    assert rows.to_dict("list") == {"tenant_id": ["fin", "research"], "n": [1, 2]}


def test_the_async_openai_sdk_signs_too(server):
    running, _, secret, _ = server

    async def main() -> str:
        http_client = openai.DefaultAsyncHttpxClient(
            event_hooks={"request": [async_signing_hook(secret)]}
        )
        client = openai.AsyncOpenAI(base_url=f"{running.url}/v1", api_key="signed",
                                    max_retries=0, http_client=http_client)  # fmt: skip
        reply = await client.chat.completions.create(model="sim-openai/sim-small",
                                                     messages=PROMPT)  # fmt: skip
        await client.close()
        return reply.choices[0].message.content

    assert "rainbow" in asyncio.run(main())


def test_the_anthropic_sdk_signs_and_gets_anthropic_shaped_refusals(server):
    running, _, secret, key_id = server
    hook = signing_hook(secret)
    http_client = anthropic.DefaultHttpxClient(event_hooks={"request": [hook]})
    client = anthropic.Anthropic(base_url=running.url, api_key=key_id, max_retries=0,
                                 http_client=http_client)  # fmt: skip
    message = client.messages.create(model="sim-anthropic/sim-haikuish", max_tokens=64,
                                     messages=PROMPT)  # fmt: skip
    assert message.content[0].text
    # The same SDK without signing: the key's secret as x-api-key is refused, in its format.
    plain = anthropic.Anthropic(base_url=running.url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError, match="requires signed requests") as exc:
        plain.messages.create(model="sim-anthropic/sim-haikuish", max_tokens=64, messages=PROMPT)
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "authentication_error"


def test_a_captured_request_cannot_be_replayed_or_altered(server):
    running, _, secret, _ = server
    captured: list[httpx.Request] = []

    def keep(request: httpx.Request) -> None:
        captured.append(request)

    client = httpx.Client(event_hooks={"request": [signing_hook(secret), keep]})
    url = f"{running.url}/v1/chat/completions"
    assert client.post(url, content=BODY, headers={"content-type": "application/json"}).is_success
    original = {k: v for k, v in captured[0].headers.items() if k != "content-length"}
    again = httpx.post(url, content=BODY, headers=original)
    assert again.status_code == 401 and "replay" in again.json()["error"]["message"]
    changed = original | {"x-aigw-nonce": "f" * 32}
    altered = httpx.post(url, content=BODY.replace(b"rainbow", b"sunset"), headers=changed)
    assert altered.status_code == 401
    assert "signature does not match" in altered.json()["error"]["message"]
    assert altered.json()["error"]["code"] == "invalid_api_key"
    client.close()


def test_a_revoked_signing_secret_stops_at_once(server, tmp_path):
    running, _, secret, key_id = server
    KeyFile(tmp_path / "keys.json").revoke("svc-batch")
    with pytest.raises(openai.AuthenticationError, match="expired or revoked"):
        _openai(running.url, secret).chat.completions.create(
            model="sim-openai/sim-small", messages=PROMPT
        )


# --- configuration -------------------------------------------------------------------------


def _server_config(server: dict, tmp_path: Path):
    from aigw_lab.config import parse_config

    data = {"providers": {"sim": {"kind": "simulated"}}, "server": server}
    return parse_config(data, base_dir=tmp_path, source="gw.toml", env={})


def test_server_config_takes_signing_key_file_and_window(tmp_path):
    server = {
        "keys": [{"key_env": "K", "name": "billing", "signing": "required"}],
        "key_file": "keys.json",
        "signing_window": 60,
    }
    settings = _server_config(server, tmp_path).server
    assert settings.keys[0].signing == "required"
    assert settings.key_file == str(tmp_path / "keys.json")
    assert settings.signing_window == 60.0
    ring = KeyRing.from_specs(settings.keys, {"K": ENV_SECRET}, clock=Clock(),
                              signing_window=settings.signing_window)  # fmt: skip
    late = sign_request(ENV_SECRET, "GET", "/v1/models", key_id="billing", timestamp=T0 - 61)
    assert "allowed: 60 s" in ring.authenticate(_headers(late), "GET", "/v1/models", b"")


@pytest.mark.parametrize(
    ("server", "needle"),
    [
        (
            {"keys": [{"key_env": "K", "name": "a", "signing": "yes"}]},
            "signing = 'yes' is not a signing mode",
        ),
        ({"key_file": 3}, "key_file = 3 must be a file path"),
        ({"signing_window": 0}, "signing_window = 0"),
        ({"signing_window": True}, "signing_window = True"),
    ],
)
def test_bad_server_security_settings_are_config_errors(tmp_path, server, needle):
    from aigw_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        _server_config(server, tmp_path)


def test_the_query_string_is_part_of_the_signed_target(server):
    running, _, secret, _ = server
    client = httpx.Client(event_hooks={"request": [signing_hook(secret)]})
    assert client.get(f"{running.url}/v1/models?limit=2").is_success
    headers = sign_request(secret, "GET", "/v1/models")  # signed without the query
    moved = httpx.get(f"{running.url}/v1/models?limit=2", headers=headers)
    assert moved.status_code == 401
    assert "signature does not match" in moved.json()["error"]["message"]
    client.close()
