"""Integration: real policy objects from `aigw_lab.policy`, exported through their
``to_dict()`` and accepted by LiteLLM's Router and our Portkey/Cloudflare schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aigw_lab.policy.export import export

from ._export_cases import LITELLM_GROUP, PROVIDERS

policy = pytest.importorskip("aigw_lab.policy")
jsonschema = pytest.importorskip("jsonschema")
SCHEMAS = Path(__file__).parent / "schemas"


def real_policies() -> list:
    return [
        policy.Rules(
            "by-task",
            [
                {"when": {"category": ["arithmetic", "algebra"]}, "target": "openai/gpt-4o"},
                {"when": {"keywords": ["translate"]}, "target": "openai/gpt-4o-mini"},
            ],
            default="anthropic/claude-3-5-haiku-latest",
        ),
        policy.WeightedSplit(
            "ab", {"openai/gpt-4o": 1, "anthropic/claude-3-5-haiku-latest": 3}, sticky="user"
        ),
        policy.FallbackChain("reliable", ["anthropic/claude-3-5-haiku-latest", "openai/gpt-4o"]),
    ]


@pytest.mark.xdist_group(LITELLM_GROUP)  # with test_export_litellm.py's: one worker imports it
def test_real_policies_export_to_every_target() -> None:
    litellm = _import_litellm()
    portkey_schema = json.loads((SCHEMAS / "portkey-config.schema.json").read_text("utf-8"))
    cloudflare_schema = json.loads((SCHEMAS / "cloudflare-route.schema.json").read_text("utf-8"))
    for item in real_policies():
        spec = item.to_dict()
        config = yaml.safe_load(export(spec, "litellm", providers=PROVIDERS).text)
        litellm.Router(model_list=config["model_list"], **config["router_settings"])
        names = {e["model_name"] for e in config["model_list"]}
        assert item.name in names
        jsonschema.validate(
            json.loads(export(spec, "portkey", providers=PROVIDERS).text), portkey_schema
        )
        jsonschema.validate(
            json.loads(export(spec, "cloudflare", providers=PROVIDERS).text), cloudflare_schema
        )
    rules = export(real_policies()[0].to_dict(), "portkey", providers=PROVIDERS)
    assert len(rules.config["strategy"]["conditions"]) == 1  # the keyword rule is dropped
    assert not rules.report.exact


def _import_litellm():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        return pytest.importorskip("litellm")
