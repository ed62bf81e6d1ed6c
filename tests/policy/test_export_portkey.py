"""The Portkey exporter, checked against our JSON Schema of Portkey's documented config
(tests/policy/schemas/portkey-config.schema.json: written by us from Portkey's docs, not
published by Portkey) plus the cross-references a schema cannot state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export import export, portkey_config

from ._export_cases import FALLBACK, PROVIDERS, RULES, SPECS, SPLIT, learned_evaluation

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "portkey-config.schema.json").read_text("utf-8")
)


def validate(config: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    strategy = config.get("strategy", {})
    if strategy.get("mode") == "conditional":
        names = [t["name"] for t in config["targets"]]
        assert len(set(names)) == len(names), "target names must be unique"
        for ref in [c["then"] for c in strategy["conditions"]] + [strategy["default"]]:
            assert ref in names, f"condition names unknown target {ref!r}"


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_export_matches_the_schema(kind: str) -> None:
    options = {"evaluation": learned_evaluation()} if kind == "learned" else {}
    result = export(SPECS[kind], "portkey", providers=PROVIDERS, **options)
    validate(json.loads(result.text))


def test_the_schema_can_fail() -> None:
    config = portkey_config(SPLIT, providers=PROVIDERS)
    config["strategy"]["mode"] = "round-robin"
    with pytest.raises(jsonschema.ValidationError):
        validate(config)
    config = portkey_config(FALLBACK, providers=PROVIDERS)
    config["retry"]["attempts"] = 9
    with pytest.raises(jsonschema.ValidationError):
        validate(config)


def test_split_is_a_weighted_loadbalance() -> None:
    config = portkey_config(SPLIT, providers=PROVIDERS, retry_attempts=0)
    assert config == {
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {"provider": "@openai", "override_params": {"model": "gpt-4o"}, "weight": 0.2},
            {
                "provider": "@anthropic",
                "override_params": {"model": "claude-3-5-haiku-latest"},
                "weight": 0.8,
            },
        ],
    }


def test_fallback_keeps_order_and_optional_status_codes() -> None:
    config = portkey_config(
        FALLBACK, providers=PROVIDERS, fallback_on_status_codes=[429, 503], retry_attempts=3
    )
    assert config["strategy"] == {"mode": "fallback", "on_status_codes": [429, 503]}
    models = [t["override_params"]["model"] for t in config["targets"]]
    assert models == ["claude-3-5-haiku-latest", "gpt-4o", "@cf/meta/llama-3.1-8b-instruct"]
    assert config["retry"] == {"attempts": 3, "on_status_codes": [429, 500, 502, 503, 504]}


def test_rule_conditions_become_metadata_queries() -> None:
    spec = {
        "kind": "rules",
        "name": "r",
        "rules": [
            {"when": {"category": "math", "tags": {"tier": "paid"}}, "target": "openai/gpt-4o"}
        ],
        "default": "anthropic/claude-3-5-haiku-latest",
    }
    config = portkey_config(spec, providers=PROVIDERS)
    assert config["strategy"]["conditions"] == [
        {
            "query": {
                "$and": [
                    {"metadata.category": {"$eq": "math"}},
                    {"metadata.tier": {"$eq": "paid"}},
                ]
            },
            "then": "openai/gpt-4o",
        }
    ]
    validate(config)


def test_prompt_text_rules_are_refused_directly_and_dropped_by_export() -> None:
    with pytest.raises(ConfigError, match="cannot test 'regex'"):
        portkey_config(RULES, providers=PROVIDERS)
    result = export(RULES, "portkey", providers=PROVIDERS)
    assert len(result.config["strategy"]["conditions"]) == 3
    assert any("rule 4 dropped" in note for note in result.report.notes)


def test_retry_attempts_beyond_portkeys_limit_are_refused() -> None:
    with pytest.raises(ConfigError, match="out of Portkey's range"):
        portkey_config(SPLIT, providers=PROVIDERS, retry_attempts=6)
