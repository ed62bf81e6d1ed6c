"""Over a real loopback connection (`FakeUpstream`): a stream the caller abandons lets go of
its upstream connection at once, whatever primitives stand in front of the provider.

The gateway's pool holds one connection and gives up waiting for it after 0.2 s, so three
abandoned streams followed by a whole call only succeed when each abandoned stream closed
its connection when the caller walked away (not when the garbage collector found it: the
collector is off meanwhile). It runs over each upstream transport (httpx's pool and the
lean one, ``[gateway] transport``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aigw_lab.providers.base import TRANSPORTS, PoolSettings, ProviderSpec
from aigw_lab.testing.fake_upstream import FakeUpstream

from .conftest import modes, stacks
from .modes import Mode, no_gc
from .stacks import Stack, build

CHUNK = 'data: {"choices": [{"index": 0, "delta": {"content": "tok "}}]}\n\n'
BODY = CHUNK * 50 + "data: [DONE]\n\n"
HTTP_STACKS = ("none", "budget", "ratelimit-wait", "exact-cache", "retry", "route-split", "full")


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(params=[t for t in TRANSPORTS if t != "auto"])  # auto is one of these
def http_stack(
    stack_name: str, new_log_path: Path, fake: FakeUpstream, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    spec = ProviderSpec("up", "openai-compatible", base_url=f"{fake.url}/v1", timeout=30.0)
    built = build(
        stack_name,
        new_log_path,
        upstream=spec,
        pool=PoolSettings(
            max_connections=1, max_keepalive=1, pool_timeout=0.2, transport=request.param
        ),
    )
    try:
        yield built
    finally:
        built.gateway.close()


@pytest.mark.parametrize("mode", modes("stream", "astream"), ids=str)
@pytest.mark.parametrize("stack_name", stacks(*HTTP_STACKS))
def test_an_abandoned_stream_gives_its_connection_back_at_once(
    mode: Mode, http_stack: Stack, fake: FakeUpstream
) -> None:
    for _ in range(4):
        fake.reply_sse(BODY, chunk_size=64)
    held = []  # every abandoned stream stays referenced until the end
    with no_gc():
        for i in range(3):
            seen = mode.abandon(
                http_stack.gateway,
                http_stack.address,
                f"question {i}",
                check=lambda: [r["status"] for r in http_stack.rows()],
            )
            assert seen.pieces == ["tok "]
            assert seen.checked == ["cancelled"] * (i + 1)  # logged when the close returned
            held.append(seen)
        whole = mode.call(http_stack.gateway, http_stack.address, "question 3")
    assert whole.error is None, whole.error
    assert whole.text == "tok " * 50
    assert len(fake.requests) == 4
    statuses = [r["status"] for r in http_stack.rows()]
    assert statuses == ["cancelled"] * 3 + ["ok"]
