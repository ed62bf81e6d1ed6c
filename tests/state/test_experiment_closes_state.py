"""An experiment file's gateway closes the Redis pool its ``[state]`` opened: after a run
with rate limits, a budget, the exact and the semantic cache and circuit breakers all kept
in a real redis-server, closing the gateway leaves the server with no client of ours
(`CLIENT LIST`), as `Gateway.from_config` does (tests/state/test_state_lifecycle.py)."""

from __future__ import annotations

import pytest

from aigw_lab.errors import AigwError
from aigw_lab.experiments import parse_spec, run_experiment
from aigw_lab.gateway.state import SharedState

CONFIG = """
[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0

[state]
backend = "redis"
url_env = "AIGW_REDIS_URL"
prefix = "{prefix}"

[[rate_limits.rule]]
requests_per_minute = 10000

[budgets]
seed_from_log = false
[[budgets.limit]]
scope = "gateway"
usd = 100.0
period = "day"

[cache]

[semantic_cache]
model = "hashing-64-3"

[health]
failure_threshold = 5
"""


def _spec(tmp_path, prefix: str, extra: str = ""):
    """An experiment file whose gateway config keeps every primitive's state in Redis."""
    (tmp_path / "gw.toml").write_text(extra + CONFIG.format(prefix=prefix))
    data = {
        "experiment": {"name": "redis-run", "dataset": "bundled:mixed_v1", "sample": 4},
        "targets": [{"model": "sim/sim-small"}, {"model": "sim/sim-nano"}],
        "gateway": {"config": "gw.toml", "db": str(tmp_path / "runs.duckdb")},
    }
    return parse_spec(data, base_dir=tmp_path, source=str(tmp_path / "e.toml"))


def _clients(redis_server) -> list[str]:
    """The addresses of the server's clients, besides this question's own connection."""
    import redis

    with redis.Redis.from_url(redis_server.url) as probe:
        me = probe.client_id()
        return [c["addr"] for c in probe.client_list() if int(c["id"]) != me]


def test_an_experiment_gateway_closes_its_redis_pool(redis_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGW_REDIS_URL", redis_server.url)
    before = _clients(redis_server)
    spec = _spec(tmp_path, "exp-close:")
    with spec.build_gateway() as gateway:
        result = run_experiment(gateway, spec.build(gateway), progress=False)
        assert result.completed == 8
        assert len(_clients(redis_server)) > len(before)  # the stores did use the server
    assert _clients(redis_server) == before


def test_a_gateway_that_fails_to_build_closes_the_pool_it_opened(
    redis_server, tmp_path, monkeypatch
):
    # The pool connects lazily, so look at the SharedState, not at the connections: a call
    # log path that is a folder fails in the Gateway, after [state] made the SharedState
    # (its client and its threads).
    opened: list[SharedState] = []
    init = SharedState.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(SharedState, "__init__", recording_init)
    monkeypatch.setenv("AIGW_REDIS_URL", redis_server.url)
    spec = _spec(tmp_path, "exp-fail:")
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(AigwError):
        spec.build_gateway(db=tmp_path / "a-folder")
    assert len(opened) == 1 and opened[0].closed


def test_a_ray_workers_gateway_closes_its_redis_pool(redis_server, tmp_path, monkeypatch):
    """`WorkerGateway.build` (what each Ray task runs, here in-process: no cluster needed)
    builds from the same config, so it must close the same pool."""
    from aigw_lab.experiments.ray_worker import WorkerGateway
    from aigw_lab.types import ChatRequest, Message

    monkeypatch.setenv("AIGW_REDIS_URL", redis_server.url)
    (tmp_path / "gw.toml").write_text(CONFIG.format(prefix="ray-close:"))
    before = _clients(redis_server)
    with WorkerGateway(config=str(tmp_path / "gw.toml")).build([]) as gateway:
        request = ChatRequest.create(
            model="sim/sim-small", messages=[Message(role="user", content="hello")]
        )
        gateway.chat(request)
        assert len(_clients(redis_server)) > len(before)  # the stores did use the server
    assert _clients(redis_server) == before
