"""Fixtures of the provider tests: a scripted upstream server and shared HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from aigw_lab.providers.base import HttpClients
from aigw_lab.testing.fake_upstream import FakeUpstream


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def loopback_clients() -> HttpClients:
    """Shared clients for plain-HTTP loopback: without TLS verification set-up, which costs
    ~15 ms per client and has nothing to verify here."""
    return HttpClients(
        transport=httpx.HTTPTransport(verify=False),
        async_transport=httpx.AsyncHTTPTransport(verify=False),
    )


@pytest.fixture
def clients() -> Iterator[HttpClients]:
    shared = loopback_clients()
    yield shared
    shared.close()


@pytest.fixture
async def aclients() -> AsyncIterator[HttpClients]:
    shared = loopback_clients()
    yield shared
    await shared.aclose()
