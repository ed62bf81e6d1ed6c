"""``[state]``: the table is checked at load time (the URL read from the environment and
never echoed), and a config with ``backend = "redis"`` gives every primitive a shared store,
so two gateways built from one file share their limits, budget, cache and breakers."""

from __future__ import annotations

import pytest

from aigw_lab.config import build_gateway, parse_config
from aigw_lab.errors import BudgetExceededError, ConfigError, RateLimitedError
from aigw_lab.gateway.state import StateSettings

PROVIDERS = {"providers": {"sim": {"kind": "simulated"}}}
ENV = {"AIGW_REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0"}


def parse(state, env=ENV):
    return parse_config({**PROVIDERS, "state": state}, env=env)


def test_a_redis_state_reads_its_url_from_the_environment_and_hides_it():
    config = parse({"backend": "redis", "url_env": "AIGW_REDIS_URL", "prefix": "team:"})
    assert config.state.url == ENV["AIGW_REDIS_URL"] and config.state.prefix == "team:"
    assert config.state.fail == {
        "rate_limits": "open", "budgets": "closed", "cache": "open", "health": "open",
    }  # fmt: skip
    assert "s3cret" not in repr(config.state) and "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("state", "env", "fragment"),
    [
        ({"backend": "redis"}, ENV, "needs url_env"),
        ({"backend": "redis", "url_env": "NOPE"}, ENV, "NOPE, which is not set"),
        ({"backend": "redis", "url_env": "A B"}, ENV, "not an environment variable name"),
        ({"backend": "redis", "url_env": "U"}, {"U": "http://:s3cret@h/0"}, "not a Redis one"),
        ({"backend": "redis", "url_env": "U"}, {"U": "redis://"}, "names no host"),
        ({"backend": "redis", "url_env": "U"}, {"U": "redis://h:99999"}, "not a valid URL"),
        ({"backend": "redis", "url_env": "U", "prefix": "a b*"}, {"U": "redis://h"}, "prefix"),
        ({"backend": "redis", "url_env": "U", "budgets": "maybe"}, {"U": "redis://h"}, "closed"),
        ({"backend": "disk"}, ENV, "memory"),
        ({"url_env": "AIGW_REDIS_URL"}, ENV, 'only to backend = "redis"'),
        ({"backend": "redis", "url": "redis://h"}, ENV, "url"),
    ],
)
def test_mistakes_are_config_errors_that_never_echo_the_url(state, env, fragment):
    with pytest.raises(ConfigError, match=fragment) as raised:
        parse(state, env)
    assert "s3cret" not in str(raised.value)


def test_the_memory_backend_is_the_default_and_builds_no_store():
    assert StateSettings().stores() is None
    assert parse({"backend": "memory"}).state.stores() is None


CONFIG = """
[providers.sim]
kind = "simulated"
time_scale = 0  # the calls' simulated latency (1.3 s each) is not what these tests check

[state]
backend = "redis"
url_env = "AIGW_TEST_REDIS_URL"
prefix = "{prefix}"

[rate_limits]
mode = "reject"
[[rate_limits.rule]]
requests_per_minute = 3

[budgets]
seed_from_log = false
[[budgets.limit]]
scope = "tenant"
id = "acme"
usd = 0.0001  # one call of 50 output tokens fits (about $0.00008), two do not
period = "day"

[cache]
ttl = 60

[health]
failure_threshold = 1
cooldown = 60

[fallbacks]
"sim/sim-small" = ["sim/sim-large"]
"""


def gateways(tmp_path, redis_server, count=2):
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(prefix=f"{tmp_path.name}:"))
    env = {"AIGW_TEST_REDIS_URL": redis_server.url}
    return [build_gateway(path, env=env, log=None) for _ in range(count)]


def test_two_gateways_from_one_file_share_a_rate_limit(tmp_path, redis_server):
    one, two = gateways(tmp_path, redis_server)
    results = []
    for i in range(5):
        gw = (one, two)[i % 2]
        try:
            results.append(gw.chat("sim/sim-small", f"question {i}").cache_status)
        except RateLimitedError:
            results.append("limited")
    assert results == ["miss", "miss", "miss", "limited", "limited"]


def test_two_gateways_from_one_file_share_a_cache_entry(tmp_path, redis_server):
    one, two = gateways(tmp_path, redis_server)
    assert one.chat("sim/sim-small", "same").cache_status == "miss"
    assert two.chat("sim/sim-small", "same").cache_status == "hit"


def test_two_gateways_from_one_file_share_a_budget(tmp_path, redis_server):
    one, two = gateways(tmp_path, redis_server)
    one.chat("sim/sim-small", "spend it", tenant="acme", max_tokens=50)
    with pytest.raises(BudgetExceededError):
        two.chat("sim/sim-small", "spend more", tenant="acme", max_tokens=50)


def test_without_redis_py_the_error_names_the_extra(monkeypatch):
    import sys

    from aigw_lab.errors import MissingExtraError

    settings = parse({"backend": "redis", "url_env": "AIGW_REDIS_URL"}).state
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match="redis") as raised:
        settings.stores()
    assert raised.value.hint == 'pip install "aigw-lab[redis]"'


def test_serve_with_an_unset_url_variable_exits_2_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "gateway.toml"
    path.write_text(
        '[providers.sim]\nkind = "simulated"\n[state]\nbackend = "redis"\n'
        'url_env = "AIGW_TEST_UNSET_REDIS_URL"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "AIGW_TEST_UNSET_REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = subprocess.run(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(path),
         "--no-auth", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "AIGW_TEST_UNSET_REDIS_URL, which is not set" in done.stderr.splitlines()[0]


def test_two_gateways_from_one_file_share_a_semantic_cache_entry(tmp_path, redis_server):
    """``[state] backend = "redis"`` puts ``[semantic_cache]``'s entries in Redis: a
    paraphrase one gateway answered is served by another process's gateway."""
    from aigw_lab.gateway.state.semantic import RedisSemanticStore

    path = tmp_path / "gateway.toml"
    path.write_text(
        '[providers.sim]\nkind = "simulated"\ntime_scale = 0\n\n'  # no simulated latency
        f'[state]\nbackend = "redis"\nurl_env = "AIGW_TEST_REDIS_URL"\n'
        f'prefix = "{tmp_path.name}:"\n\n'
        '[semantic_cache]\nmodel = "hashing-64-3"\nthreshold = 0.5\nmax_entries = 7\n'
        'verifier = "off"\n'
    )
    env = {"AIGW_TEST_REDIS_URL": redis_server.url}
    one, two = (build_gateway(path, env=env, log=None) for _ in range(2))
    for gw in (one, two):
        (cache,) = [m for m in gw.middleware if type(m).__name__ == "SemanticCache"]
        assert isinstance(cache.store, RedisSemanticStore) and cache.store.max_entries == 7
    assert one.chat("sim/sim-small", "what is the capital of france").cache_status == "miss"
    served = two.chat("sim/sim-small", "what is the capital of france?")
    # A paraphrase (no exact cache here): served from the entry the other gateway stored.
    assert served.cache_status == "hit"
