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


#: The prompt `train_save_and_serve` sends; a math prompt, so the router sends it to STRONG.
SERVED_PROMPT = "compute the integral of x^7 times sin(x) and simplify the derivative"


def train_save_and_serve(tmp_path, embedder_name: str):
    """Train a kNN policy on `synthetic` with the embedder ``embedder_name``, save it, load it
    as `aigw-lab serve` does for a ``[policies]`` file, and send `SERVED_PROMPT` through a real
    server over the simulated fleet. Returns the loaded policy and the HTTP reply."""
    import json

    import httpx

    from aigw_lab.gateway import Gateway
    from aigw_lab.policy.learned import train_router
    from aigw_lab.policy.learned.features import make_embedder
    from aigw_lab.policy.policyfile import load_policy, save_policy
    from aigw_lab.server.app import GatewayApp
    from aigw_lab.server.runner import BackgroundServer

    router = train_router(
        synthetic(15),
        "knn",
        name="cheap-or-strong",
        embedder=make_embedder(embedder_name),
        targets={STRONG: "sim-openai/sim-large", WEAK: "sim-openai/sim-nano"},
        params={"k": 5},
    )
    path = save_policy(router, tmp_path / "p.json")
    assert json.loads(path.read_text())["policy"]["embedder"] == embedder_name
    served = load_policy(path)
    assert served.embedder_name == embedder_name
    gateway = Gateway.simulated_fleet(policies=[served], time_scale=0.0)
    with BackgroundServer(GatewayApp(gateway, None, close_gateway=True)) as server:
        reply = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "cheap-or-strong",
                "messages": [{"role": "user", "content": SERVED_PROMPT}],
            },
            timeout=60,
        )
    return served, reply
