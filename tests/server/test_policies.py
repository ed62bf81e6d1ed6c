"""Routing policies through the server: an SDK addresses a policy by its name, as a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigw_lab.policy import policy_from_dict
from aigw_lab.policy.policyfile import save_policy
from aigw_lab.types import ChatRequest

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


def test_a_served_adaptive_split_logs_the_snapshot_probability_it_drew_with(
    serve_config, tmp_path: Path
) -> None:
    # Past min_samples, nano far ahead: Thompson sampling's snapshot, no feedback meanwhile.
    spec = {
        "kind": "adaptive",
        "name": "ab",
        "targets": ["sim-openai/sim-nano", "sim-anthropic/sim-sonnetish"],
        "min_samples": 5,
        "explore": 0.5,
        "confidence": 0.999,
        "refresh_seconds": None,
        "state": {
            "arms": {
                "sim-openai/sim-nano": {"n": 12, "sum": 8.0},
                "sim-anthropic/sim-sonnetish": {"n": 12, "sum": 5.0},
            }
        },
    }
    save_policy(policy_from_dict(spec), tmp_path / "policies" / "ab.json")
    served = serve_config('\n[policies]\nab = "policies/ab.json"\n')
    expected = policy_from_dict(spec).probabilities(ChatRequest.create("ab", "hi"))
    assert 0.5 < expected["sim-openai/sim-nano"] < 0.95
    client = served.openai()
    for _ in range(16):
        client.chat.completions.create(model="ab", messages=SHORT)
    rows = served.rows("SELECT provider_name, request_model, route_policy, propensity FROM calls")
    assert len(rows) == 16 and {r[2] for r in rows} == {"ab"}
    for provider, model, _, propensity in rows:
        assert propensity == pytest.approx(expected[f"{provider}/{model}"], abs=1e-12)
