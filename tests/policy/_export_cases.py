"""Fixed policy dicts (the `Policy.to_dict()` shapes of docs/notes issue 5) and production
providers shared by the exporter tests."""

from __future__ import annotations

import pandas as pd

from aigw_lab.policy.export import Evaluation
from aigw_lab.providers.base import ProviderSpec

#: The xdist group of the tests that import LiteLLM (about 2.5 s of CPU per process): slow tests
#: are each a work unit of their own, so without it every worker imported LiteLLM for one test.
LITELLM_GROUP = "litellm"

STRONG = "openai/gpt-4o"
WEAK = "groq/llama-3.1-8b-instant"
HAIKU = "anthropic/claude-3-5-haiku-latest"
WORKERS = "workers/@cf/meta/llama-3.1-8b-instruct"

#: Production providers as a gateway config would declare them.
PROVIDERS = {
    "openai": ProviderSpec(name="openai", kind="openai", api_key_env="OPENAI_API_KEY"),
    "anthropic": ProviderSpec(name="anthropic", kind="anthropic"),
    "groq": ProviderSpec(
        name="groq",
        kind="openai-compatible",
        base_url="https://api.groq.com/openai/v1",
        api_key_env="GROQ_API_KEY",
    ),
    "workers": ProviderSpec(
        name="workers", kind="workers-ai", account_id="acc123", api_key_env="CF_AI_TOKEN"
    ),
}

#: Options per target, beyond ``providers``.
TARGET_OPTIONS = {
    "litellm": {},
    "portkey": {"portkey_providers": {"openai": "@openai-prod", "groq": "vk-groq-123"}},
    "cloudflare": {"cloudflare_providers": {"groq": "groq"}},
}

RULES = {
    "kind": "rules",
    "name": "by-task",
    "rules": [
        {"when": {"category": "arithmetic"}, "target": WEAK},
        {"when": {"category": ["code", "sql"]}, "target": STRONG},
        {"when": {"tags": {"tier": "free"}}, "target": WORKERS},
        {"when": {"regex": "(?i)translate"}, "target": HAIKU},
    ],
    "default": HAIKU,
}
SPLIT = {
    "kind": "split",
    "name": "ab-test",
    "targets": [{"target": STRONG, "weight": 0.2}, {"target": HAIKU, "weight": 0.8}],
    "sticky": "user",
    "seed": 7,
}
FALLBACK = {"kind": "fallback", "name": "reliable", "targets": [HAIKU, STRONG, WORKERS]}
ADAPTIVE = {
    "kind": "adaptive",
    "name": "bandit",
    "targets": [STRONG, HAIKU],
    "metric": "exact_match",
    "confidence": 0.95,
    "min_samples": 100,
    "state": {
        "arms": {STRONG: {"n": 40, "sum": 32.0}, HAIKU: {"n": 38, "sum": 26.6}},
        "winner": None,
    },
}
CASCADE = {
    "kind": "cascade",
    "name": "frugal",
    "steps": [
        {"target": WEAK, "accept": {"scorer": {"kind": "self_consistency"}, "threshold": 0.7}},
        {"target": STRONG},
    ],
}
LEARNED = {
    "kind": "learned",
    "name": "cheap-or-strong",
    "router": "knn",
    "targets": [STRONG, WEAK],
    "strong": STRONG,
    "weak": WEAK,
    "decision": {"mode": "threshold", "threshold": 0.42},
    "prices": {STRONG: [2.5, 10.0], WEAK: [0.05, 0.08]},
    "embedder": "all-MiniLM-L6-v2",
    "artifact": "cheap-or-strong.npz",
    "train": {"source": "routellm:gsm8k", "items": 800, "seed": 0},
}

SPECS = {
    "rules": RULES,
    "split": SPLIT,
    "fallback": FALLBACK,
    "adaptive": ADAPTIVE,
    "cascade": CASCADE,
    "learned": LEARNED,
}

# Recorded outcomes of the two learned-router targets on six items, and the router's choices.
# Scores and costs are round numbers so tests can state the expected means by hand.
_ROWS = [
    # item, category, strong score, strong cost, weak score, weak cost
    ("i1", "math", 1.0, 0.010, 0.0, 0.001),
    ("i2", "math", 1.0, 0.010, 1.0, 0.001),
    ("i3", "code", 1.0, 0.020, 0.0, 0.002),
    ("i4", "code", 0.0, 0.020, 1.0, 0.002),
    ("i5", "chat", 1.0, 0.010, 1.0, 0.001),
    ("i6", "chat", 0.0, 0.010, 1.0, 0.001),
]
LEARNED_DECISIONS = {"i1": STRONG, "i2": STRONG, "i3": STRONG, "i4": WEAK, "i5": WEAK, "i6": WEAK}


def outcomes_frame() -> pd.DataFrame:
    """`RecordedDataset.outcomes`-shaped rows joined with categories (bare model names)."""
    records = []
    for item, category, s_score, s_cost, w_score, w_cost in _ROWS:
        records.append((item, category, "gpt-4o", s_score, s_cost))
        records.append((item, category, "llama-3.1-8b-instant", w_score, w_cost))
    return pd.DataFrame(records, columns=["item_id", "category", "model", "score", "cost_usd"])


def learned_evaluation() -> Evaluation:
    return Evaluation(outcomes_frame(), LEARNED_DECISIONS)
