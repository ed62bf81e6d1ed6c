"""One Redis connection pool per config, closed with the gateway built from it: `[state]`
stores built by `GatewayConfig.middleware` share one `SharedState` however often it is
called, and `Gateway.close` (the context manager, `aclose`) closes it, so the server sees
the connections go."""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab import Gateway
from aigw_lab.config import load_config

CONFIG = """
[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0
models = ["sim-small"]

[state]
backend = "redis"
url_env = "AIGW_REDIS_URL"
prefix = "{prefix}"

[[rate_limits.rule]]
requests_per_minute = 1000

[budgets]
seed_from_log = false
[[budgets.limit]]
scope = "gateway"
usd = 100.0
period = "day"

[cache]

[health]
failure_threshold = 5
"""


@pytest.fixture
def config_path(tmp_path, request):
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.format(prefix=f"life{abs(hash(request.node.name)) % 10**8}:"))
    return path


def clients(redis_server) -> int:
    """Connections the server holds now, besides this question's own."""
    import redis

    with redis.Redis.from_url(redis_server.url) as probe:
        return int(probe.info("clients")["connected_clients"]) - 1


def test_middleware_built_many_times_shares_one_pool(redis_server, config_path):
    config = load_config(config_path, env={"AIGW_REDIS_URL": redis_server.url})
    stacks = [config.middleware() for _ in range(4)]
    executors = {id(mw.io) for stack in stacks for mw in stack if getattr(mw, "io", None)}
    assert len(executors) == 1  # one SharedState (its threads and its client) for all
    assert config.shared_stores() is config.shared_stores()
    config.shared_stores().state.close()


@pytest.mark.parametrize("how", ["close", "with", "aclose"])
def test_closing_the_gateway_closes_its_pool(redis_server, config_path, how):
    env = {"AIGW_REDIS_URL": redis_server.url}
    before = clients(redis_server)
    gw = Gateway.from_config(config_path, env=env, log=None)
    if how == "aclose":

        async def run():
            await asyncio.gather(*(gw.achat("sim/sim-small", f"hi {i}") for i in range(8)))
            await gw.aclose()

        asyncio.run(run())
    elif how == "with":
        with gw:
            for i in range(3):
                gw.chat("sim/sim-small", f"hi {i}")
            assert clients(redis_server) > before
    else:
        gw.chat("sim/sim-small", "hi")
        assert clients(redis_server) > before
        gw.close()
    assert clients(redis_server) == before
    gw.close()  # a second close does nothing


def test_a_closed_config_pool_is_made_again_for_the_next_gateway(redis_server, config_path):
    config = load_config(config_path, env={"AIGW_REDIS_URL": redis_server.url})
    first = config.shared_stores()
    first.state.close()
    second = config.shared_stores()
    assert second is not first and not second.state.closed
    second.state.close()
