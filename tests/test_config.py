import textwrap

import pytest

from aigw_lab.config import load_config, parse_config
from aigw_lab.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_full_config_parses(tmp_path):
    path = write(
        tmp_path,
        """
        [gateway]
        db = "logs/calls.duckdb"
        default_provider = "sim"
        tags = { team = "research" }

        [providers.sim]
        kind = "simulated"
        format = "anthropic"
        seed = 3
        faults = { rate_limited = 0.1 }

        [providers.openai]
        kind = "openai"
        api_key_env = "OPENAI_API_KEY"
        timeout = 30
        models = ["gpt-4o-mini"]
        [providers.openai.prices.gpt-4o-mini]
        input_per_mtok = 0.15
        output_per_mtok = 0.6

        [providers.cf]
        kind = "workers-ai"
        account_id_env = "CF_ACCOUNT"
        api_key_env = "CF_TOKEN"
        cf_gateway = "gw1"
        cf_headers = { cache-ttl = "3600" }

        [prices."openai/gpt-4.1"]
        input_per_mtok = 2
        output_per_mtok = 8
        cache_read_per_mtok = 0.5
        """,
    )
    config = load_config(path, env={"CF_ACCOUNT": "acct123"})
    assert config.db == str(tmp_path / "logs/calls.duckdb")
    assert config.default_provider == "sim"
    specs = {s.name: s for s in config.providers}
    assert specs["sim"].options == {
        "format": "anthropic",
        "seed": 3,
        "faults": {"rate_limited": 0.1},
    }
    assert specs["openai"].timeout == 30.0
    assert specs["openai"].prices["gpt-4o-mini"].output_per_mtok == 0.6
    assert specs["cf"].account_id == "acct123"
    assert specs["cf"].cf_headers == {"cache-ttl": "3600"}
    assert config.prices["openai/gpt-4.1"].cache_read_per_mtok == 0.5
    assert config.tags == {"team": "research"}


@pytest.mark.parametrize(
    ("text", "fragment", "hint"),
    [
        (
            "[providers.a]\nkind = 'openai'\napi_key_var = 'X'\n",
            "unknown key 'api_key_var'",
            "api_key_env",
        ),
        ("[providers.a]\nkind = 'openia'\n", "kind = 'openia'", "openai"),
        ("[gateway]\ndb = 'x.duckdb'\n", "no providers configured", "simulated"),
        ("[providers.a]\nkind = 'openai'\ntimeout = -1\n", "timeout = -1 must be a positive", None),
        (
            "[providers.a]\nkind = 'openai'\n[prices.gpt4]\ninput_per_mtok = 1\noutput_per_mtok = 1\n",
            "not a model address",
            "provider/model",
        ),
        (
            "[providers.a]\nkind = 'openai'\n[prices.'a/m']\ninput_per_mtok = 1\n",
            "has no 'output_per_mtok'",
            None,
        ),
        (
            "[providers.a]\nkind = 'openai'\n[prices.'a/m']\ninput_per_mtok = 'cheap'\noutput_per_mtok = 1\n",
            "non-negative number",
            None,
        ),
        (
            "[gateway]\ndefault_provider = 'b'\n[providers.a]\nkind = 'openai'\n",
            "default_provider = 'b'",
            "'a'",
        ),
        ("[providers.a]\nkind = 'openai'\nseed = 3\n", "only apply to kind", None),
        ("[gatway]\n", "unknown key 'gatway'", "gateway"),
        ("providers = 3\n", "providers = 3 must be a table", "[providers]"),
        ("[providers.a\nkind=1", "not valid TOML", None),
    ],
)
def test_invalid_configs_name_the_problem_and_fix(tmp_path, text, fragment, hint):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert fragment in str(info.value)
    if hint:
        assert hint in (info.value.hint or "")


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_memory_db_is_not_resolved_against_the_folder():
    config = parse_config(
        {"gateway": {"db": ":memory:"}, "providers": {"s": {"kind": "simulated"}}}, base_dir="/x"
    )
    assert config.db == ":memory:"


def test_retry_fallbacks_and_health_tables_build_the_retry_middleware(tmp_path):
    from aigw_lab import Gateway

    path = write(
        tmp_path,
        """
        [gateway]
        log = false
        retry = { max_attempts = 2, base_delay = 0.0 }

        [providers.a]
        kind = "simulated"
        time_scale = 0
        faults = { server_error = 1.0 }

        [providers.b]
        kind = "simulated"
        format = "anthropic"
        time_scale = 0

        [fallbacks]
        "a/sim-nano" = ["b/sim-haikuish"]

        [health]
        failure_threshold = 3
        cooldown = 10
        """,
    )
    config = load_config(path)
    assert config.retry == {"max_attempts": 2, "base_delay": 0.0}
    assert config.fallbacks == {"a/sim-nano": ["b/sim-haikuish"]}
    (retry,) = config.reliability_middleware()
    assert retry.policy.max_attempts == 2 and retry.health is not None
    with Gateway.from_config(path) as gw:
        assert gw.pipeline[0] == "retry"
        response = gw.chat("a/sim-nano", "hi", max_tokens=5)
    assert (response.provider, response.attempts) == ("b", 3)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[gateway]\nretry = { max_atempts = 3 }\n", "did you mean 'max_attempts'"),
        ("[health]\ncooldwn = 3\n", "cooldown"),
        ("[gateway]\nretry = { max_attempts = 0 }\n", "max_attempts"),
    ],
)
def test_reliability_typos_fail_at_load_naming_the_file(tmp_path, text, fragment):
    path = write(tmp_path, text + "[providers.a]\nkind = 'simulated'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_cache_table_builds_the_exact_cache(tmp_path):
    from aigw_lab import Gateway

    path = write(
        tmp_path,
        """
        [gateway]
        log = false

        [cache]
        store = "duckdb"
        path = "cache/answers.duckdb"
        ttl = 3600

        [providers.sim]
        kind = "simulated"
        time_scale = 0
        """,
    )
    with Gateway.from_config(path) as gw:
        assert gw.pipeline[0] == "cache"
        first = gw.chat("sim/sim-small", "Tell me about tides", max_tokens=16)
        second = gw.chat("sim/sim-small", "Tell me about tides", max_tokens=16)
    assert (first.cache_status, second.cache_status) == ("miss", "hit")
    assert second.text == first.text and second.cost_usd == 0.0
    assert (tmp_path / "cache" / "answers.duckdb").exists()


def test_cache_table_mistakes_name_the_file(tmp_path):
    from aigw_lab import Gateway

    path = write(tmp_path, "[cache]\nstroe = 'memory'\n[providers.a]\nkind = 'simulated'\n")
    with pytest.raises(ConfigError) as info:
        Gateway.from_config(path)
    assert str(path) in str(info.value) and "store" in str(info.value)


def test_budgets_table_refuses_over_budget_calls(tmp_path):
    from aigw_lab import Gateway
    from aigw_lab.errors import BudgetExceededError

    path = write(
        tmp_path,
        """
        [gateway]
        db = "calls.duckdb"

        [budgets]
        [[budgets.limit]]
        scope = "tenant"
        id = "acme"
        usd = 0.000001
        period = "day"

        [providers.sim]
        kind = "simulated"
        time_scale = 0

        [prices."sim/sim-large"]
        input_per_mtok = 100
        output_per_mtok = 100
        """,
    )
    with Gateway.from_config(path) as gw:
        assert gw.pipeline[0] == "budget"
        with pytest.raises(BudgetExceededError, match="tenant:acme"):
            gw.chat("sim/sim-large", "hello", tenant="acme", max_tokens=100)
        assert gw.chat("sim/sim-large", "hello", tenant="other", max_tokens=5).text
        rows = gw.query(
            "SELECT tenant_id, status, coalesce(error_type, '-') AS error_type, attempt "
            "FROM calls ORDER BY tenant_id"
        )
    assert rows.values.tolist() == [
        ["acme", "error", "budget_exceeded", 0],
        ["other", "ok", "-", 1],
    ]


def test_budgets_typo_fails_at_load(tmp_path):
    path = write(
        tmp_path,
        "[budgets]\n[[budgets.limit]]\nscop = 'tenant'\nusd = 1\n[providers.a]\nkind = 'simulated'\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "scope" in str(info.value)


def test_semantic_cache_table_builds_the_cache_after_the_exact_one(tmp_path):
    from aigw_lab import Gateway

    path = write(
        tmp_path,
        """
        [cache]
        store = "memory"

        [semantic_cache]
        threshold = 0.92
        max_entries = 500

        [providers.sim]
        kind = "simulated"
        """,
    )
    with Gateway.from_config(path, log=None) as gw:
        assert gw.pipeline[:2] == ["cache", "cache"]
        kinds = [type(m).__name__ for m in gw.middleware]
    assert kinds == ["ExactCache", "SemanticCache"]


def test_semantic_cache_typo_fails_at_load(tmp_path):
    path = write(
        tmp_path, "[semantic_cache]\nthreshhold = 0.9\n[providers.a]\nkind = 'simulated'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "threshold" in str(info.value)


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (None, "NumpyIndex"),
        ('"exact"', "NumpyIndex"),
        ('"ivf"', "BackgroundIVFIndex"),
        ('{ kind = "ivf", exact_below = 10, nprobe = 4 }', "BackgroundIVFIndex"),
    ],
)
def test_semantic_cache_index_is_chosen_in_the_config(tmp_path, index, expected):
    from aigw_lab import Gateway

    line = f"index = {index}\n" if index else ""
    path = write(tmp_path, f"[semantic_cache]\n{line}[providers.sim]\nkind = 'simulated'\n")
    with Gateway.from_config(path, log=None) as gw:
        (cache,) = gw.middleware
        built = cache._index_factory(8)
    assert type(built).__name__ == expected
    if "nprobe" in (index or ""):
        assert built.exact_below == 10 and built.nprobe == 4


@pytest.mark.parametrize(
    ("lines", "deep"),
    [
        ('index = "ivf"\n', (32, 0.9)),
        ('threshold = 0.85\nindex = "ivf"\n', (32, 0.85)),
        ('threshold = 0.85\nindex = { kind = "ivf", deep_below = 0.8 }\n', (32, 0.8)),
        ('index = { kind = "ivf", nprobe = 4, deep_nprobe = 16 }\n', (16, 0.9)),
    ],
)
def test_an_ivf_index_searches_deeper_below_the_cache_threshold(tmp_path, lines, deep):
    from aigw_lab import Gateway

    path = write(tmp_path, f"[semantic_cache]\n{lines}[providers.sim]\nkind = 'simulated'\n")
    with Gateway.from_config(path, log=None) as gw:
        (cache,) = gw.middleware
        built = cache._index_factory(8)
    assert (built.deep_nprobe, built.deep_below) == deep


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        ('{ kind = "ivf", deep_below = 0 }', "deep_below"),
        ('{ kind = "ivf", deep_nprobe = 0 }', "deep_nprobe"),
        ('"hnsw"', "unknown kind 'hnsw'"),
        ("3", "must be a string or a table"),
        ('{ kind = "exact", nprobe = 4 }', 'only apply to kind = "ivf"'),
        ('{ kind = "ivf", nprob = 4 }', "did you mean 'nprobe'"),
    ],
)
def test_semantic_cache_index_mistakes_are_named(tmp_path, index, fragment):
    from aigw_lab import Gateway

    path = write(
        tmp_path, f"[semantic_cache]\nindex = {index}\n[providers.sim]\nkind = 'simulated'\n"
    )
    with pytest.raises(ConfigError) as info:
        Gateway.from_config(path, log=None)
    assert fragment in str(info.value)
