"""Fixtures for the simulated fleet's tests: the real HTTP server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aigw_lab.sim.fleet import SimulatedFleet
from aigw_lab.sim_server import BackgroundServer


@pytest.fixture(scope="module")
def clean_server() -> Iterator[BackgroundServer]:
    """The real server (uvicorn on 127.0.0.1, free port), no faults, no latency."""
    with BackgroundServer(SimulatedFleet(seed=0, time_scale=0.0)) as server:
        yield server
