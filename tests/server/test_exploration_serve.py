"""``aigw-lab serve`` runs an exploring policy from ``[exploration.NAME]``: SDK calls to the
policy are routed with exploration and every row logs the probability used."""

from __future__ import annotations

from pathlib import Path

from aigw_lab.policy import policy_from_dict
from aigw_lab.policy.policyfile import save_policy

from .helpers import Served

RULES = {
    "kind": "rules",
    "name": "router",
    "rules": [{"when": {"keywords": ["never-in-a-prompt"]}, "target": "sim-openai/sim-large"}],
    "default": "sim-openai/sim-nano",
}


def test_serve_explores_and_logs_propensities(serve_config, tmp_path: Path) -> None:
    save_policy(policy_from_dict(RULES), tmp_path / "policies" / "router.json")
    served: Served = serve_config(
        '\n[policies]\nrouter = "policies/router.json"\n'
        "\n[exploration.router]\nepsilon = 1.0\nseed = 2\n"
    )
    client = served.openai()
    for _ in range(12):
        client.chat.completions.create(model="router", messages=[{"role": "user", "content": "hi"}])
    rows = served.rows("SELECT request_model, route_policy, propensity FROM calls")
    # epsilon 1: uniform over the two targets, each logged with probability 0.5.
    assert {r[0] for r in rows} == {"sim-nano", "sim-large"}
    assert {(r[1], r[2]) for r in rows} == {("router", 0.5)}
