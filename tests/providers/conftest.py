"""Fixtures of the provider tests: a scripted upstream server and shared HTTP clients, over
each upstream transport (httpx's own pool and the lean one, ``[gateway] transport``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from aigw_lab.providers.base import TRANSPORTS, HttpClients, PoolSettings
from aigw_lab.testing.fake_upstream import FakeUpstream


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def loopback_clients(transport: str = "httpx") -> HttpClients:
    """Shared clients for plain-HTTP loopback: without TLS verification set-up, which costs
    ~15 ms per client and has nothing to verify here (the lean transport sets TLS up only
    for an https origin)."""
    if transport == "lean":
        return HttpClients(pool=PoolSettings(transport="lean"))
    return HttpClients(
        transport=httpx.HTTPTransport(verify=False),
        async_transport=httpx.AsyncHTTPTransport(verify=False),
    )


@pytest.fixture(params=[t for t in TRANSPORTS if t != "auto"])  # auto is one of these
def upstream_transport(request: pytest.FixtureRequest) -> str:
    """The upstream transport a test's clients use: every provider test runs over each."""
    return str(request.param)


@pytest.fixture
def clients(upstream_transport: str) -> Iterator[HttpClients]:
    shared = loopback_clients(upstream_transport)
    yield shared
    shared.close()


@pytest.fixture
async def aclients(upstream_transport: str) -> AsyncIterator[HttpClients]:
    shared = loopback_clients(upstream_transport)
    yield shared
    await shared.aclose()
