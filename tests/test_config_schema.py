"""The config schema validator (`aigw_lab.config_schema`): one way to report an unknown key, a
wrong value, a missing key, at the table's path, for every table a component declares."""

import math

import pytest

from aigw_lab.config import parse_config
from aigw_lab.config_schema import NUMBER, TABLE, Key, Table, nested
from aigw_lab.config_tables import CONFIG_TABLE, key_rows
from aigw_lab.errors import ConfigError

RULE = Table(
    keys=(
        Key(name="name", types=(str,), what="a string"),
        Key(name="per_minute", types=NUMBER, low=0, low_open=True, what="a number > 0"),
    )
)
TOP = Table(
    keys=(
        Key(name="mode", choices=("wait", "reject"), what="a mode"),
        Key(name="timeout", types=NUMBER, low=0, high=60, what="seconds from 0 to 60"),
        Key(name="strict", types=(bool,), what="true or false"),
        Key(name="count", types=(int,), what="an integer", hint="e.g. count = 3"),
        Key(name="tags", types=TABLE, items=(str,), what="a table of strings"),
        Key(name="models", types=(list,), items=(str,), what="a list of model names"),
        Key(name="env", types=(str,), pattern=r"\w+", what="a variable name"),
        Key(name="path", types=(str,), nonempty=True, what="a file path string"),
        Key(name="inner", types=TABLE, what="a table", table=RULE),
        Key(name="rule", types=(list, TABLE[0]), array=True, table=RULE, what="a list"),
        Key(name="id", types=(str,), required=True, what="a string", hint="name it"),
    )
)


def error(value, where="f.toml: [limits]", table=TOP):
    with pytest.raises(ConfigError) as info:
        table.validate(value, where)
    return info.value


def test_a_valid_table_passes():
    TOP.validate(
        {
            "id": "x",
            "mode": "wait",
            "timeout": 0,
            "strict": False,
            "count": 3,
            "tags": {"team": "a"},
            "models": ["m"],
            "env": "AIGW_KEY",
            "inner": {"name": "n"},
            "rule": [{"per_minute": 1}, {"per_minute": 2.5}],
        },
        "f.toml: [limits]",
    )


def test_an_unknown_key_names_the_closest_known_one_and_lists_them_all():
    caught = error({"id": "x", "timout": 3})
    assert caught.message == "f.toml: [limits]: unknown key 'timout'"
    assert caught.hint.startswith("did you mean 'timeout'? known keys: count, env, id, inner")


def test_an_unknown_key_far_from_every_known_one_only_lists_them():
    caught = error({"id": "x", "zzzzzz": 3})
    assert caught.hint.startswith("known keys: ")


def test_unknown_keys_are_reported_before_missing_and_wrong_ones():
    assert "unknown key 'nope'" in error({"nope": 1, "timeout": "x"}).message


def test_a_missing_required_key_says_what_it_needs():
    caught = error({})
    assert caught.message == "f.toml: [limits] has no 'id'; it needs id = a string"
    assert caught.hint == "name it"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("timeout", "3", "timeout = '3' must be seconds from 0 to 60"),
        ("timeout", True, "timeout = True must be seconds from 0 to 60"),  # not a number
        ("timeout", -1, "timeout = -1 must be seconds from 0 to 60"),
        ("timeout", 60.5, "timeout = 60.5 must be seconds from 0 to 60"),
        ("timeout", math.nan, "timeout = nan must be seconds from 0 to 60"),
        ("strict", 1, "strict = 1 must be true or false"),
        ("count", 2.0, "count = 2.0 must be an integer"),
        ("tags", {"team": 5}, "tags = {'team': 5} must be a table of strings"),
        ("tags", "team", "tags = 'team' must be a table of strings"),
        ("models", "gpt", "models = 'gpt' must be a list of model names"),
        ("models", ["a", 1], "models = ['a', 1] must be a list of model names"),
        ("env", "NOT A NAME", "env = 'NOT A NAME' must be a variable name"),
        ("path", "", "path = '' must be a file path string"),
    ],
)
def test_a_wrong_value_names_the_key_the_value_and_what_it_must_be(key, value, message):
    caught = error({"id": "x", key: value})
    assert caught.message == f"f.toml: [limits]: {message}"


def test_a_keys_hint_is_the_fix():
    assert error({"id": "x", "count": "3"}).hint == "e.g. count = 3"


def test_a_value_outside_the_choices_lists_them():
    caught = error({"id": "x", "mode": "later"})
    assert caught.message == "f.toml: [limits]: mode = 'later' is not a mode"
    assert caught.hint == "use one of 'wait', 'reject'"


def test_a_long_value_is_cut_in_the_message():
    caught = error({"id": "x", "count": "9" * 500})
    assert len(caught.message) < 120


def test_a_nested_table_is_checked_at_its_own_path():
    caught = error({"id": "x", "inner": {"nam": "n"}})
    assert caught.message == "f.toml: [limits.inner]: unknown key 'nam'"
    assert "did you mean 'name'" in caught.hint
    caught = error({"id": "x", "inner": {"per_minute": 0}})
    assert caught.message == "f.toml: [limits.inner]: per_minute = 0 must be a number > 0"


def test_each_table_of_an_array_is_checked_and_numbered():
    caught = error({"id": "x", "rule": [{"per_minute": 1}, {"per_minut": 1}]})
    assert caught.message == "f.toml: [limits.rule] #2: unknown key 'per_minut'"
    caught = error({"id": "x", "rule": [{"per_minute": 1}, 3]})
    assert caught.message == "f.toml: [limits.rule] #2 must be a table, not 3"


def test_an_array_key_takes_one_table_when_its_types_allow():
    TOP.validate({"id": "x", "rule": {"per_minute": 1}}, "[limits]")
    assert error({"id": "x", "rule": {"per_minute": -1}}, "[limits]").message == (
        "[limits.rule]: per_minute = -1 must be a number > 0"
    )


def test_a_value_that_is_not_a_table_at_all():
    caught = error(3, "f.toml: [limits]")
    assert caught.message == "f.toml: [limits] must be a table, not 3"


def test_keys_a_table_does_not_name_are_checked_by_its_other_schema():
    prices = Table(keys=(), other=Key(name="", types=TABLE, what="a table", table=RULE))
    prices.validate({"openai/gpt-4o": {"per_minute": 1}}, "f.toml: [prices]")
    caught = error({"openai/gpt-4o": {"per_minute": "x"}}, "f.toml: [prices]", prices)
    assert caught.message == ('f.toml: [prices."openai/gpt-4o"]: per_minute = \'x\' must be a '
                              "number > 0")  # fmt: skip
    assert "must be a table" in error({"a/b": 1}, "f.toml: [prices]", prices).message


def test_paths_nest_like_toml_tables():
    assert nested("", "gateway") == "[gateway]"
    assert nested("gw.toml", "gateway") == "gw.toml: [gateway]"
    assert nested("gw.toml: [gateway]", "retry") == "gw.toml: [gateway.retry]"
    assert nested("[prices]", "a/b") == '[prices."a/b"]'


def test_a_config_file_reports_a_nested_array_error_with_the_file_and_path(tmp_path):
    caught = pytest.raises(
        ConfigError,
        parse_config,
        {
            "providers": {"a": {"kind": "simulated"}},
            "rate_limits": {"rule": [{"requests_per_minute": 1}, {"request_per_minute": 1}]},
        },
        source="gw.toml",
    ).value
    assert caught.message == "gw.toml: [rate_limits.rule] #2: unknown key 'request_per_minute'"
    assert "did you mean 'requests_per_minute'" in caught.hint


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"gateway": {"experiment_id": 3}},
            "gw.toml: [gateway]: experiment_id = 3 must be a string",
        ),
        ({"gateway": {"tags": {"team": 1}}}, "[gateway]: tags = {'team': 1} must be a table of"),
        ({"gateway": {"db": ""}}, "gw.toml: [gateway]: db = '' must be a file path string"),
        ({"gateway": {"log": "no"}}, "gw.toml: [gateway]: log = 'no' must be true or false"),
        ({"cache": {"coalesce": "yes"}}, "gw.toml: [cache]: coalesce = 'yes' must be true or"),
        ({"semantic_cache": {"index": {"nprobe": 0}}}, "[semantic_cache.index]: nprobe = 0"),
        ({"policies": {"p": 3}}, "gw.toml: [policies]: p = 3 must be a policy file path"),
        ({"log": {"bodies": "some"}}, "gw.toml: [log]: bodies = 'some' is not a body mode"),
        ({"log": {"hash_key_env": "A B"}}, "hash_key_env = 'A B' must be the name of an env"),
        ({"server": {"keys": [{"key_env": "K"}]}}, "[server.keys] #1 has no 'name'"),
        ({"providers": {"a": 3}}, "gw.toml: [providers.a] must be a table, not 3"),
        ({"providers": {"a": {"kind": "openai", "account_id": 5}}}, "account_id = 5 must be a"),
        ({"providers": {"a": {"kind": "simulated", "seed": "x"}}}, "[providers.a]: seed = 'x'"),
    ],
)
def test_every_table_of_a_config_goes_through_the_validator(data, message):
    data = {"providers": {"a": {"kind": "simulated"}}, **data}
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="gw.toml")
    assert message in info.value.message


def test_a_providers_own_prices_are_checked_at_their_path():
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"providers": {"a": {"kind": "openai", "prices": {"m": {"input_per_mtok": 1}}}}},
            source="gw.toml",
        )
    assert info.value.message.startswith("gw.toml: [providers.a.prices.m] has no 'output_per_mtok'")


def test_the_key_listing_covers_every_table_the_parser_knows():
    rows = list(key_rows())
    tables = {table for table, _, _ in rows}
    assert {"[gateway]", "[gateway.retry]", "[[budgets.limit]]", "[[rate_limits.rule]]",
            "[[server.keys]]", "[log]", "[providers.NAME]", '[prices.NAME]'} <= tables  # fmt: skip
    # Each top-level table of the listing is one the parser accepts, and the other way round.
    top = {name for name in CONFIG_TABLE.names()}
    assert {t.strip("[]").split(".")[0] for t in tables} == top
    assert len(rows) == len(set(rows))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"key_file": 3}, "gw.toml: [server]: key_file = 3 must be a file path string"),
        ({"signing_window": 0}, "gw.toml: [server]: signing_window = 0 must be a number of"),
    ],
)
def test_the_server_extras_alone_are_checked_too(table, message):
    # `aigw-lab keys --config` reads [server] key_file without the rest of the file.
    from aigw_lab.config_security import parse_server_extras

    with pytest.raises(ConfigError) as info:
        parse_server_extras(table, "gw.toml: [server]", None)
    assert info.value.message.startswith(message)


def test_gateway_from_config_is_the_config_layers_builder(tmp_path):
    # The gateway names the builder by module path (no upward import); a subclass's
    # from_config builds that subclass, with the caller's keyword arguments.
    from aigw_lab import Gateway
    from aigw_lab.config import build_gateway
    from aigw_lab.gateway.gateway import CONFIG_BUILDER

    assert CONFIG_BUILDER == "aigw_lab.config:build_gateway"

    class Mine(Gateway):
        pass

    path = tmp_path / "gw.toml"
    path.write_text("[gateway]\ndb = 'calls.duckdb'\n[providers.sim]\nkind = 'simulated'\n")
    with Mine.from_config(path, log=None) as gw:
        assert type(gw) is Mine and gw.log is None
    with build_gateway(path) as gw:
        assert type(gw) is Gateway
        gw.chat("sim/sim-small", "hi", max_tokens=3)
    assert (tmp_path / "calls.duckdb").exists()


def test_docs_config_lists_every_key_the_schemas_declare():
    from pathlib import Path

    from aigw_lab.config_tables import keys_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    section = doc.split("## Every key\n", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|")) + "\n"
    assert table == keys_markdown(), "regenerate docs/config.md's 'Every key' table"


def test_the_gateway_imports_the_config_layer_only_when_from_config_is_called(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "gw.toml"
    # time_scale 0: the call's simulated latency (1.3 s) is not what this checks.
    path.write_text("[gateway]\nlog = false\n[providers.sim]\nkind = 'simulated'\ntime_scale = 0\n")
    probe = (
        "import sys\n"
        "from aigw_lab.gateway import Gateway\n"
        "assert 'aigw_lab.config' not in sys.modules, 'the gateway imported the config layer'\n"
        f"with Gateway.from_config({str(path)!r}) as gw:\n"
        "    assert gw.chat('sim/sim-small', 'hi', max_tokens=3).text\n"
        "assert 'aigw_lab.config' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)
