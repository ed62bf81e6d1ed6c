"""The LiteLLM exporter, validated by LiteLLM itself: every exported config.yaml is loaded
back and handed to ``litellm.Router``, which checks each deployment (pydantic
``LiteLLM_Params``), the routing strategy and the fallbacks. (The proxy's own config loader,
``litellm.proxy.proxy_server.ProxyConfig``, needs the proxy extras, which are not installed
here; the Router is what that loader builds from ``model_list`` + ``router_settings``.)
"""

from __future__ import annotations

import asyncio

import pytest
import yaml

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export import export, litellm_config

from ._export_cases import (
    FALLBACK,
    HAIKU,
    LITELLM_GROUP,
    PROVIDERS,
    RULES,
    SPECS,
    SPLIT,
    STRONG,
    WEAK,
    WORKERS,
    learned_evaluation,
)

# One worker imports LiteLLM for all of this file's tests (and test_export_policies.py's).
pytestmark = pytest.mark.xdist_group(LITELLM_GROUP)


@pytest.fixture(scope="module")
def litellm():
    # Without this LiteLLM fetches its model cost map from GitHub at import (the network
    # tripwire would fail the test); the variable matters only while importing.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        return pytest.importorskip("litellm")


def _router_from_yaml(litellm, text: str):
    config = yaml.safe_load(text)
    assert set(config) == {"model_list", "router_settings"}
    return litellm.Router(model_list=config["model_list"], **config["router_settings"])


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_litellm_router_accepts_every_export(litellm, kind: str) -> None:
    options = {"evaluation": learned_evaluation()} if kind == "learned" else {}
    result = export(SPECS[kind], "litellm", providers=PROVIDERS, **options)
    router = _router_from_yaml(litellm, result.text)
    groups = router.settings().fallbacks if kind in ("fallback", "cascade") else None
    names = {entry["model_name"] for entry in yaml.safe_load(result.text)["model_list"]}
    assert SPECS[kind]["name"] in names
    if groups is not None:
        assert groups  # the chain survived LiteLLM's own parsing


def test_litellm_rejects_a_broken_export(litellm) -> None:
    # The validation above can fail: a deployment without a model is refused by LiteLLM.
    config = litellm_config(SPLIT, providers=PROVIDERS)
    del config["model_list"][0]["litellm_params"]["model"]
    with pytest.raises(Exception, match="model"):
        litellm.Router(model_list=config["model_list"], **config["router_settings"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_litellm_tag_routing_picks_the_rule_targets(litellm) -> None:
    # LiteLLM's own deployment selection, offline: tags pick the rule's deployment, untagged
    # and unknown-category requests reach the "default" one (the policy's default).
    config = export(RULES, "litellm", providers=PROVIDERS).config
    router = litellm.Router(model_list=config["model_list"], **config["router_settings"])

    async def chosen(tags: list[str] | None) -> str:
        kwargs = {"metadata": {"tags": tags}} if tags else {}
        deployment = await router.async_get_available_deployment(
            model="by-task", request_kwargs=kwargs, messages=[{"role": "user", "content": "x"}]
        )
        return deployment["litellm_params"]["model"]

    async def all_choices() -> list[str]:
        return [await chosen(t) for t in (["code"], ["sql"], ["arithmetic"], None, ["poetry"])]

    assert asyncio.run(all_choices()) == [
        "openai/gpt-4o",
        "openai/gpt-4o",
        "openai/llama-3.1-8b-instant",
        "anthropic/claude-3-5-haiku-latest",
        "anthropic/claude-3-5-haiku-latest",
    ]


def test_split_becomes_weighted_deployments_of_one_group() -> None:
    config = litellm_config(SPLIT, providers=PROVIDERS)
    assert [e["model_name"] for e in config["model_list"]] == ["ab-test", "ab-test"]
    assert [e["litellm_params"]["weight"] for e in config["model_list"]] == [0.2, 0.8]
    assert config["router_settings"]["routing_strategy"] == "simple-shuffle"


def test_zero_weight_targets_are_left_out() -> None:
    spec = {**SPLIT, "targets": [{"target": STRONG, "weight": 0.0}, {"target": HAIKU, "weight": 1}]}
    config = litellm_config(spec, providers=PROVIDERS)
    assert [e["litellm_params"]["model"] for e in config["model_list"]] == [
        "anthropic/claude-3-5-haiku-latest"
    ]


def test_fallback_chain_names_each_later_target_as_its_own_group() -> None:
    config = litellm_config(FALLBACK, providers=PROVIDERS, context_window_fallbacks=True)
    names = [e["model_name"] for e in config["model_list"]]
    assert names == ["reliable", STRONG, WORKERS]
    chain = [{"reliable": [STRONG, WORKERS]}]
    assert config["router_settings"]["fallbacks"] == chain
    assert config["router_settings"]["context_window_fallbacks"] == chain


def test_provider_kinds_map_to_litellm_model_strings_and_env_keys() -> None:
    spec = {"kind": "fallback", "name": "all", "targets": [STRONG, HAIKU, WEAK, WORKERS]}
    params = [e["litellm_params"] for e in litellm_config(spec, providers=PROVIDERS)["model_list"]]
    assert params[0] == {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}
    assert params[1] == {
        "model": "anthropic/claude-3-5-haiku-latest",
        "api_key": "os.environ/ANTHROPIC_API_KEY",
    }
    assert params[2]["model"] == "openai/llama-3.1-8b-instant"
    assert params[2]["api_base"] == "https://api.groq.com/openai/v1"
    assert params[3] == {
        "model": "cloudflare/@cf/meta/llama-3.1-8b-instruct",
        "api_base": "https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1",
        "api_key": "os.environ/CF_AI_TOKEN",
    }


def test_rules_on_anything_but_category_need_the_approximating_export() -> None:
    with pytest.raises(ConfigError, match="tests the category alone"):
        litellm_config(RULES, providers=PROVIDERS)
    result = export(RULES, "litellm", providers=PROVIDERS)
    tags = [e["litellm_params"]["tags"] for e in result.config["model_list"]]
    assert tags == [["arithmetic"], ["code", "sql"], ["default"]]
    assert not result.report.exact
    assert "rule 3 dropped" in result.text and "rule 4 dropped" in result.text


def test_providers_may_be_a_gateway_configs_spec_sequence() -> None:
    as_sequence = litellm_config(FALLBACK, providers=list(PROVIDERS.values()))
    assert as_sequence == litellm_config(FALLBACK, providers=PROVIDERS)


def test_unknown_provider_is_a_config_error_naming_the_fix() -> None:
    spec = {"kind": "fallback", "name": "x", "targets": ["replay/gpt-4-1106-preview"]}
    with pytest.raises(ConfigError, match="provider 'replay' is unknown"):
        litellm_config(spec)
    mapped = litellm_config(spec, address_map={"replay/gpt-4-1106-preview": "openai/gpt-4"})
    assert mapped["model_list"][0]["litellm_params"]["model"] == "openai/gpt-4"


def test_offline_provider_kinds_cannot_be_exported() -> None:
    spec = {"kind": "fallback", "name": "x", "targets": ["sim/small"]}
    with pytest.raises(ConfigError, match="runs only inside aigw_lab"):
        litellm_config(spec, providers={"sim": {"kind": "simulated"}})
