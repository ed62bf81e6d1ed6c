"""Routing policies through the server: an SDK addresses a policy by its name, as a model."""

from __future__ import annotations

import json
from pathlib import Path

from aigw_lab.policy import policy_from_dict
from aigw_lab.policy.policyfile import save_policy

from .helpers import Served

SHORT = [{"role": "user", "content": "hi"}]
LONG = [{"role": "user", "content": "Explain in detail how a rainbow forms after rain"}]
RULES = {
    "kind": "rules",
    "name": "by-length",
    "rules": [{"when": {"max_chars": 20}, "target": "sim-openai/sim-nano"}],
    "default": "sim-anthropic/sim-sonnetish",
}


def _served_with_policy(serve_config, tmp_path: Path) -> Served:
    save_policy(policy_from_dict(RULES), tmp_path / "policies" / "by-length.json")
    return serve_config('\n[policies]\nby-length = "policies/by-length.json"\n')


def test_sdks_address_a_policy_by_name(serve_config, tmp_path: Path) -> None:
    served = _served_with_policy(serve_config, tmp_path)
    client = served.openai()
    short = client.chat.completions.create(model="by-length", messages=SHORT)
    long = client.chat.completions.create(model="by-length", messages=LONG)
    # The answer names the target the policy chose.
    assert (short.model, long.model) == ("sim-openai/sim-nano", "sim-anthropic/sim-sonnetish")
    with served.anthropic().messages.stream(
        model="by-length", max_tokens=128, messages=SHORT
    ) as stream:
        message = stream.get_final_message()
    # A stream names the model asked for; the log has the target.
    assert message.model == "by-length" and message.content[0].text
    rows = served.rows("SELECT request_model, tenant_id, tags_json FROM calls ORDER BY timestamp")
    assert [r[0] for r in rows] == ["sim-nano", "sim-sonnetish", "sim-nano"]
    assert all(r[1] == "a" and json.loads(r[2])["aigw_policy"] == "by-length" for r in rows)


def test_models_list_names_the_policy(serve_config, tmp_path: Path) -> None:
    served = _served_with_policy(serve_config, tmp_path)
    models = {m.id: m.owned_by for m in served.openai().models.list()}
    assert models["by-length"] == "policy"
    assert "policy/by-length" not in models and "sim-openai/sim-nano" in models
