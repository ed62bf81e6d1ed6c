"""The policy file: versioned JSON with artifacts beside it; every kind round-trips to the
same decisions; a gateway config loads policies from [policies]."""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from aigw_lab.errors import ConfigError, ProviderServerError
from aigw_lab.gateway import Gateway
from aigw_lab.policy import (
    POLICY_FILE_VERSION,
    AdaptiveSplit,
    Cascade,
    FallbackChain,
    Policy,
    RouteDecision,
    Rules,
    WeightedSplit,
    load_policy,
    register_policy_kind,
    save_policy,
)
from aigw_lab.types import ChatRequest, ChatResponse, Usage

A = "sim-openai/sim-nano"
B = "sim-openai/sim-small"
C = "sim-anthropic/sim-sonnetish"


def requests(n=200, seed=0):
    rng = random.Random(seed)
    words = ["prove", "hello", "sum", "code", "story", "12 * 7", "translate"]
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        tags = {"category": rng.choice(["math", "chat", "code"])} if rng.random() < 0.7 else {}
        out.append(
            ChatRequest.create(
                "p", prompt, tags=tags, user=f"u{rng.randint(0, 40)}" if i % 3 else None
            )
        )
    return out


def scripted_send(seed):
    """A deterministic `send`: each target answers or fails by a seeded coin."""
    rng = random.Random(seed)
    trail: list[str] = []

    def send(target, request):
        trail.append(target)
        if rng.random() < 0.3:
            raise ProviderServerError("down", provider=target)
        provider, model = target.split("/")
        return ChatResponse(
            text=str(rng.randint(0, 3)),
            finish_reason="stop",
            usage=Usage(input_tokens=1, output_tokens=1),
            provider=provider,
            model=model,
        )

    return send, trail


def adaptive():
    policy = AdaptiveSplit("ad", [A, B, C], min_samples=3, seed=4)
    rng = random.Random(1)
    for _ in range(30):
        for target, p in ((A, 0.4), (B, 0.5), (C, 0.6)):
            policy.record(target, float(rng.random() < p))
    return policy


KINDS = {
    "rules": lambda: Rules(
        "r",
        [
            ({"keywords": ["prove"], "min_chars": 20}, C),
            ({"category": ["code", "math"], "regex": r"\d"}, B),
            ({"requires": ["tools"]}, C),
        ],
        default=A,
    ),
    "split": lambda: WeightedSplit("s", {A: 5, B: 3, C: 2}, seed=3),
    "sticky": lambda: WeightedSplit("s", {A: 1, B: 1}, sticky="user", seed=8),
    "adaptive": adaptive,
    "fallback": lambda: FallbackChain("f", [A, B, C]),
    "cascade": lambda: Cascade(
        "c",
        [
            {
                "target": A,
                "accept": {"scorer": {"type": "regex", "pattern": "^[12]$"}, "threshold": 1},
            },
            {
                "target": B,
                "accept": {"scorer": {"type": "self_consistency", "k": 2}, "threshold": 1},
            },
            {"target": C},
        ],
    ),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_to_the_same_decisions(tmp_path, kind):
    original = KINDS[kind]()
    path = save_policy(original, tmp_path / "policies" / f"{kind}.json")
    loaded = load_policy(path)
    assert type(loaded) is type(original)
    assert loaded.to_dict() == original.to_dict()
    batch = requests()
    assert [loaded.decide(r) for r in batch] == [original.decide(r) for r in batch]
    if not original.single_decision:
        # Multi-call policies: the same calls, in order, and the same answers.
        for i, request in enumerate(batch[:50]):
            send_a, trail_a = scripted_send(i)
            send_b, trail_b = scripted_send(i)
            outcome_a = _outcome(original, request, send_a)
            outcome_b = _outcome(loaded, request, send_b)
            assert (outcome_a, trail_a) == (outcome_b, trail_b)


def _outcome(policy, request, send):
    try:
        return policy.call(request, send).text
    except Exception as exc:  # noqa: BLE001 - the error type is the outcome compared
        return type(exc).__name__


def test_the_document_shape(tmp_path):
    path = save_policy(
        KINDS["fallback"](), tmp_path / "f.json", evaluation={"apgr": 0.61, "items": 300}
    )
    document = json.loads(path.read_text())
    assert document["format"] == "aigw-policy"
    assert document["version"] == POLICY_FILE_VERSION == 1
    assert document["name"] == "f"
    assert document["policy"] == {"kind": "fallback", "name": "f", "targets": [A, B, C]}
    assert document["evaluation"] == {"apgr": 0.61, "items": 300}
    assert document["created_at"] and document["aigw_lab_version"]
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"format": "aigw-policy", "version": 2, "policy": {}}, "newer than this aigw_lab"),
        ({"format": "something-else", "version": 1, "policy": {}}, "not an aigw policy file"),
        ({"format": "aigw-policy", "version": "1", "policy": {}}, "version '1' is invalid"),
        ({"format": "aigw-policy", "version": 1}, 'no "policy" object'),
        (
            {"format": "aigw-policy", "version": 1, "policy": {"kind": "nope"}},
            "unknown policy kind",
        ),
    ],
)
def test_bad_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_policy(tmp_path / "bad.json")


class TableRouter(Policy):
    """A policy with an artifact: a lookup table from prompt length to target, kept in a
    file beside the policy JSON (the way learned routers keep their weights)."""

    kind = "test-table"

    def __init__(self, name: str, table: dict[str, str], default: str) -> None:
        self.name, self.table, self.default = name, table, default

    def targets(self):
        return tuple(dict.fromkeys([*self.table.values(), self.default]))

    def decide(self, request):
        return RouteDecision(self.table.get(str(len(request.messages[-1].text)), self.default))

    def to_dict(self):
        return {
            "kind": self.kind,
            "name": self.name,
            "default": self.default,
            "artifact": "table.json",
        }

    def save_artifacts(self, folder: Path):
        path = folder / "table.json"
        path.write_text(json.dumps(self.table))
        return [path]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None):
        table = json.loads((artifacts / spec["artifact"]).read_text())
        return cls(spec["name"], table, spec["default"])


def test_artifacts_are_written_beside_the_json_and_read_back(tmp_path, monkeypatch):
    from aigw_lab.policy import base

    monkeypatch.setattr(base, "_KIND_CLASSES", dict(base._KIND_CLASSES))  # undone after
    register_policy_kind("test-table", TableRouter)
    policy = TableRouter("t", {"5": C, "2": B}, A)
    path = save_policy(policy, tmp_path / "out" / "t.json")
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.json", "table.json"]
    loaded = load_policy(path)
    batch = [ChatRequest.create("t", "x" * n) for n in range(8)]
    assert [loaded.decide(r).target for r in batch] == [policy.decide(r).target for r in batch]
    assert loaded.decide(batch[5]).target == C


def test_unsaveable_values_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be written as JSON"):
        save_policy(KINDS["fallback"](), tmp_path / "f.json", evaluation={"x": float("nan")})
    with pytest.raises(ConfigError, match="needs a Policy"):
        save_policy("not a policy", tmp_path / "x.json")  # type: ignore[arg-type]


def write_config(folder: Path, policies_table: str) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        textwrap.dedent(
            """
            [gateway]
            log = false

            [providers.sim-openai]
            kind = "simulated"
            format = "openai"
            time_scale = 0

            [providers.sim-anthropic]
            kind = "simulated"
            format = "anthropic"
            time_scale = 0
            """
        )
        + policies_table
    )
    return path


def test_gateway_from_config_loads_policies_relative_to_the_config(tmp_path):
    save_policy(KINDS["rules"](), tmp_path / "policies" / "r.json")
    config = write_config(tmp_path, '\n[policies]\ncheap-or-strong = "policies/r.json"\n')
    with Gateway.from_config(config) as gw:
        assert gw.list_models()["policy"] == ("cheap-or-strong",)
        response = gw.chat("cheap-or-strong", "prove this theorem about primes please")
        assert (response.provider, response.model) == ("sim-anthropic", "sim-sonnetish")
        assert gw.chat("policy/cheap-or-strong", "hi").model == "sim-nano"
    extra = FallbackChain("safe", [A, C])
    with Gateway.from_config(config, policies=[extra]) as gw:
        assert gw.list_models()["policy"] == ("cheap-or-strong", "safe")
    with pytest.raises(ConfigError, match="given twice"):
        Gateway.from_config(config, policies={"cheap-or-strong": extra})


def test_config_policy_mistakes_name_the_file(tmp_path):
    config = write_config(tmp_path, '\n[policies]\nmissing = "policies/missing.json"\n')
    with pytest.raises(ConfigError, match=r"\[policies\] missing: policy file .* does not exist"):
        Gateway.from_config(config)
    (tmp_path / "future.json").write_text(
        json.dumps({"format": "aigw-policy", "version": 99, "policy": {}})
    )
    config = write_config(tmp_path, '\n[policies]\nfuture = "future.json"\n')
    with pytest.raises(ConfigError, match=r"\[policies\] future: .*newer than this aigw_lab"):
        Gateway.from_config(config)
    config = write_config(tmp_path, "\n[policies]\nfuture = 3\n")
    with pytest.raises(ConfigError, match="must be a policy file path"):
        Gateway.from_config(config)
