"""Fixtures for the HTTP gateway: a real uvicorn server on a free 127.0.0.1 port in a thread,
in front of a gateway over the simulated fleet (no latency) with a DuckDB log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aigw_lab.config import load_config
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.server import BackgroundServer, GatewayApp, KeyRing

from .helpers import BASE_CONFIG, ENV, Served


def _start(folder: Path, name: str, extra: str = "", gateway: Gateway | None = None) -> Served:
    path = folder / f"{name}.toml"
    path.write_text(BASE_CONFIG + extra)
    db = folder / f"{name}.duckdb"
    config = load_config(path, env=ENV)
    assert config.server is not None
    keys = KeyRing.from_specs(config.server.keys, ENV)
    gw = gateway or Gateway.from_config(path, env=ENV, log=str(db))
    server = BackgroundServer(GatewayApp(gw, keys)).start()
    return Served(server, gw, db)


def _stop(served: Served) -> None:
    served.server.stop()
    served.gateway.close()


@pytest.fixture
def serve_config(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a server for a config (BASE_CONFIG plus ``extra`` TOML), or for a ready
    ``gateway`` with the config's keys; stopped after the test."""
    running: list[Served] = []

    def start(extra: str = "", *, gateway: Gateway | None = None) -> Served:
        running.append(_start(tmp_path, f"gateway{len(running)}", extra, gateway))
        return running[-1]

    yield start
    for served in running:
        _stop(served)


@pytest.fixture
def served(serve_config: Callable[..., Served]) -> Served:
    """The base config's server, with an empty log."""
    return serve_config()


@pytest.fixture(scope="module")
def shared_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One base-config server for a module's tests that do not read the log."""
    served = _start(tmp_path_factory.mktemp("shared"), "gateway")
    yield served
    _stop(served)
