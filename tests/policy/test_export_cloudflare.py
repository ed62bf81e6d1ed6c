"""The Cloudflare AI Gateway exporter, checked against our JSON Schema of the documented
dynamic-route JSON (tests/policy/schemas/cloudflare-route.schema.json: written by us from
Cloudflare's docs and API reference, not published by Cloudflare) and as a graph: unique
ids, every reference resolves, every element is reachable from ``start``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export import cloudflare_route, export

from ._export_cases import (
    FALLBACK,
    HAIKU,
    PROVIDERS,
    RULES,
    SPECS,
    STRONG,
    WEAK,
    learned_evaluation,
)

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "cloudflare-route.schema.json").read_text("utf-8")
)
CF = {"cloudflare_providers": {"groq": "groq"}}


def validate(route: dict) -> dict[str, dict]:
    jsonschema.Draft202012Validator(SCHEMA).validate(route)
    elements = {e["id"]: e for e in route["elements"]}
    assert len(elements) == len(route["elements"]), "element ids must be unique"
    assert [e["type"] for e in route["elements"]].count("start") == 1
    seen, todo = set(), ["start"]
    while todo:
        element = elements[todo.pop()]  # KeyError: a reference to a missing element
        if element["id"] not in seen:
            seen.add(element["id"])
            todo += [out["elementId"] for out in element.get("outputs", {}).values()]
    assert seen == set(elements), f"unreachable: {set(elements) - seen}"
    return elements


def split_shares(elements: dict[str, dict], element_id: str, share: float = 1.0) -> dict:
    """Model -> the share of traffic a percentage tree sends it."""
    element = elements[element_id]
    if element["type"] == "model":
        return {element["properties"]["model"]: share}
    named = {k: float(k[:-1]) / 100 for k in element["outputs"] if k != "else"}
    shares: dict[str, float] = {}
    for key, out in element["outputs"].items():
        part = 1.0 - sum(named.values()) if key == "else" else named[key]
        for model, value in split_shares(elements, out["elementId"], share * part).items():
            shares[model] = shares.get(model, 0.0) + value
    return shares


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_export_matches_the_schema_and_is_a_sound_graph(kind: str) -> None:
    options = {"evaluation": learned_evaluation()} if kind == "learned" else {}
    result = export(SPECS[kind], "cloudflare", providers=PROVIDERS, **CF, **options)
    validate(json.loads(result.text))


def test_the_checks_can_fail() -> None:
    route = cloudflare_route(FALLBACK, providers=PROVIDERS)
    del route["elements"][1]["properties"]["retries"]
    with pytest.raises(jsonschema.ValidationError):
        validate(route)
    route = cloudflare_route(FALLBACK, providers=PROVIDERS)
    route["elements"][1]["outputs"]["fallback"]["elementId"] = "nowhere"
    with pytest.raises(KeyError):
        validate(route)


def test_fallback_chain_links_model_fallbacks_in_order() -> None:
    elements = validate(cloudflare_route(FALLBACK, providers=PROVIDERS, retries=1))
    chain, current = [], elements["start"]["outputs"]["next"]["elementId"]
    while current != "end":
        properties = elements[current]["properties"]
        chain.append((properties["provider"], properties["model"], properties["retries"]))
        assert elements[current]["outputs"]["success"] == {"elementId": "end"}
        current = elements[current]["outputs"]["fallback"]["elementId"]
    assert chain == [
        ("anthropic", "claude-3-5-haiku-latest", 1),
        ("openai", "gpt-4o", 1),
        ("workers-ai", "@cf/meta/llama-3.1-8b-instruct", 1),
    ]


@pytest.mark.parametrize(
    "weights",
    [
        [1, 1],  # two equal shares: the second cannot reuse the name "50%"
        [1, 2, 3, 4, 5, 6, 7],  # more branches than one element's five named outputs
        [0.125, 0.375, 0.5],
    ],
)
def test_percentage_trees_send_each_target_its_share(weights: list[float]) -> None:
    addresses = [f"openai/m{i}" for i in range(len(weights))]
    spec = {
        "kind": "split",
        "name": "s",
        "targets": [{"target": a, "weight": w} for a, w in zip(addresses, weights, strict=True)],
        "sticky": None,
        "seed": 0,
    }
    elements = validate(cloudflare_route(spec))
    shares = split_shares(elements, elements["start"]["outputs"]["next"]["elementId"])
    total = sum(weights)
    for i, weight in enumerate(weights):
        # Shares are written with two decimals of a percent; ``else`` absorbs the rounding.
        assert shares[f"m{i}"] == pytest.approx(weight / total, abs=2e-4)


def test_rules_are_a_first_match_chain_of_conditionals() -> None:
    result = export(RULES, "cloudflare", providers=PROVIDERS, **CF)
    elements = validate(result.config)
    first = elements[elements["start"]["outputs"]["next"]["elementId"]]
    assert first["properties"] == {"conditions": {"metadata.category": {"$eq": "arithmetic"}}}
    models = {e["id"]: e["properties"]["model"] for e in elements.values() if e["type"] == "model"}
    assert models[first["outputs"]["true"]["elementId"]] == WEAK.split("/", 1)[1]
    second = elements[first["outputs"]["false"]["elementId"]]
    assert second["properties"]["conditions"] == {"metadata.category": {"$in": ["code", "sql"]}}
    assert models[second["outputs"]["true"]["elementId"]] == STRONG.split("/", 1)[1]
    third = elements[second["outputs"]["false"]["elementId"]]
    assert third["properties"]["conditions"] == {"metadata.tier": {"$eq": "free"}}
    assert models[third["outputs"]["false"]["elementId"]] == HAIKU.split("/", 1)[1]  # default


def test_condition_key_can_follow_the_docs_example_instead() -> None:
    route = cloudflare_route(
        {
            "kind": "rules",
            "name": "r",
            "rules": [{"when": {"category": "a"}, "target": STRONG}],
            "default": HAIKU,
        },
        condition_key="condition",
    )
    assert validate(route)["condition_1"]["properties"] == {
        "condition": {"metadata.category": {"$eq": "a"}}
    }


def test_openai_compatible_targets_need_a_slug() -> None:
    spec = {"kind": "fallback", "name": "g", "targets": [WEAK]}
    with pytest.raises(ConfigError, match="no AI Gateway provider slug"):
        cloudflare_route(spec, providers=PROVIDERS)
