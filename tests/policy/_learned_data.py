"""A small synthetic recorded dataset for the learned-router tests: arithmetic prompts the
strong model gets right and the weak one wrong, chit-chat both get right."""

from __future__ import annotations

import pandas as pd

from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.datasets.recorded import RecordedDataset
from aigw_lab.providers.base import Price

STRONG, WEAK = "big-model", "small-model"
PRICES = {STRONG: Price(10.0, 30.0), WEAK: Price(0.5, 1.0)}


def math_prompt(i: int) -> str:
    return f"compute the integral of x^{i} times sin(x) and simplify the derivative {i}"


def chat_prompt(i: int) -> str:
    return f"hello there friend, how is your weekend going, tell me about lunch {i}"


def synthetic(n_per_kind: int = 30) -> RecordedDataset:
    """2 x ``n_per_kind`` items: ``math/i`` (strong 1, weak 0) and ``chat/i`` (both 1)."""
    items, rows = [], []
    for i in range(n_per_kind):
        for kind, prompt, weak_score in (
            ("math", math_prompt(i), 0.0),
            ("chat", chat_prompt(i), 1.0),
        ):
            item_id = f"{kind}/{i}"
            items.append(DatasetItem(id=item_id, prompt=prompt, category=kind))
            rows.append({"item_id": item_id, "model": STRONG, "output": "x" * 40, "score": 1.0})
            rows.append(
                {"item_id": item_id, "model": WEAK, "output": "y" * 40, "score": weak_score}
            )
    return RecordedDataset.from_outputs(
        Dataset("synthetic", tuple(items), "tests"),
        pd.DataFrame(rows),
        score_name="correct",
        score_scale=(0.0, 1.0),
        source="tests",
        prices=PRICES,
        models=(STRONG, WEAK),
    )
