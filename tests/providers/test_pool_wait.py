"""The wait for a pooled upstream connection has its own short timeout (issue 9, section 5).

Before, httpx's ``Timeout(read)`` also bounded the pool wait, so with the pool exhausted a
call queued for up to the read timeout (60 s): 1,000 concurrent clients queued ~100 s and
82% failed. Now a waiter gives up after ``pool_timeout`` with a `ProviderTimeoutError`.
The tests use a pool of one connection held by a slow upstream answer; the second caller
must fail while the first is still waiting for its answer (an ordering, not a duration).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from aigw_lab.errors import ConfigError, ProviderTimeoutError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, PoolSettings, ProviderSpec
from aigw_lab.testing.fake_upstream import FakeUpstream

ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip
HOLD_S = 3.0  # the longest the slow answer holds the pool's only connection


def from_kwargs(fake: FakeUpstream, tmp_path: Path) -> Gateway:
    spec = ProviderSpec("up", "openai-compatible", base_url=f"{fake.url}/v1", timeout=30.0)
    pool = PoolSettings(max_connections=1, max_keepalive=1, pool_timeout=0.2)
    return Gateway([spec], pool=pool, log=None)


def from_config(fake: FakeUpstream, tmp_path: Path) -> Gateway:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
log = false
pool_max_connections = 1
pool_timeout = 0.2

[providers.up]
kind = "openai-compatible"
base_url = "{fake.url}/v1"
timeout = 30.0
"""
    )
    return Gateway.from_config(path)


BUILDERS = [from_kwargs, from_config]


def wait_for_request(fake: FakeUpstream) -> None:
    while not fake.requests:  # the first call holds the connection from here on
        time.sleep(0.005)


@pytest.mark.parametrize("build", BUILDERS, ids=["kwargs", "config"])
def test_a_second_caller_fails_fast_when_the_pool_is_full(
    fake: FakeUpstream, tmp_path: Path, build: Callable[..., Gateway]
) -> None:
    # Held until the second caller has failed (HOLD_S at most), so the test does not sleep.
    release = threading.Event()
    fake.reply_json(ANSWER, delay=HOLD_S, release=release)
    gateway = build(fake, tmp_path)
    first_done = threading.Event()

    def first() -> None:
        gateway.chat("up/m", "hi")
        first_done.set()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        wait_for_request(fake)
        with pytest.raises(ProviderTimeoutError) as info:
            gateway.chat("up/m", "hi")
        assert not first_done.is_set(), "failed after the pool timeout, not the read timeout"
        assert isinstance(info.value.__cause__, httpx.PoolTimeout)
    finally:
        release.set()
        thread.join()
        gateway.close()
    assert first_done.is_set(), "the call holding the connection is unaffected"


def test_the_async_pool_fails_fast_too(fake: FakeUpstream, tmp_path: Path) -> None:
    release = threading.Event()
    fake.reply_json(ANSWER, delay=HOLD_S, release=release)
    gateway = from_kwargs(fake, tmp_path)

    async def scenario() -> None:
        first = asyncio.ensure_future(gateway.achat("up/m", "hi"))
        while not fake.requests:
            await asyncio.sleep(0.005)
        with pytest.raises(ProviderTimeoutError) as info:
            await gateway.achat("up/m", "hi")
        assert not first.done()
        assert isinstance(info.value.__cause__, httpx.PoolTimeout)
        release.set()
        assert (await first).text == "ok"
        await gateway.aclose()

    asyncio.run(scenario())


def test_a_request_timeout_shorter_than_the_pool_timeout_still_wins() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ANSWER)

    clients = HttpClients(transport=httpx.MockTransport(answer), pool=PoolSettings(pool_timeout=2))
    request = httpx.Request("GET", "http://x/", extensions={"timeout": {"pool": 0.5}})
    clients.sync().send(request)
    request = httpx.Request("GET", "http://x/", extensions={"timeout": {"pool": 60.0}})
    clients.sync().send(request)
    clients.close()
    assert [r.extensions["timeout"]["pool"] for r in seen] == [0.5, 2]


@pytest.mark.parametrize(
    ("key", "value"),
    [("pool_max_connections", 0), ("pool_max_keepalive", 1.5), ("pool_timeout", 0),
     ("pool_timeout", "5"), ("pool_timeout", True)],
)  # fmt: skip
def test_bad_pool_settings_are_config_errors(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "gateway.toml"
    literal = f'"{value}"' if isinstance(value, str) else str(value).lower()
    path.write_text(f'[gateway]\n{key} = {literal}\n[providers.s]\nkind = "simulated"\n')
    with pytest.raises(ConfigError, match=key.removeprefix("pool_")):
        Gateway.from_config(path)


@pytest.mark.parametrize("status", [200, 500])
def test_every_answer_gives_its_connection_back(fake: FakeUpstream, status: int) -> None:
    """A gate permit is released when the body is closed, whatever the answer: more calls
    than the pool has connections all go through, one after another."""
    spec = ProviderSpec("up", "openai-compatible", base_url=f"{fake.url}/v1", timeout=30.0)
    gateway = Gateway([spec], pool=PoolSettings(max_connections=2, pool_timeout=0.2), log=None)
    for _ in range(6):
        if status == 200:
            fake.reply_json(ANSWER)
        else:
            fake.reply_json({"error": {"message": "boom"}}, status=500)
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(gateway.chat("up/m", "hi").text)
        except Exception as exc:  # noqa: BLE001 - the type is what is checked
            outcomes.append(type(exc).__name__)
    gateway.close()
    assert outcomes == (["ok"] * 6 if status == 200 else ["ProviderServerError"] * 6)


def test_an_abandoned_stream_gives_its_connection_back(fake: FakeUpstream) -> None:
    spec = ProviderSpec("up", "openai-compatible", base_url=f"{fake.url}/v1", timeout=30.0)
    gateway = Gateway([spec], pool=PoolSettings(max_connections=1, pool_timeout=0.2), log=None)
    chunk = 'data: {"choices": [{"index": 0, "delta": {"content": "tok"}}]}\n\n'
    for _ in range(3):
        fake.reply_sse(chunk * 50 + "data: [DONE]\n\n", chunk_size=64)
    for _ in range(3):
        stream = gateway.stream("up/m", "hi")
        next(iter(stream))  # one token, then walk away
        stream.close()
    gateway.close()
