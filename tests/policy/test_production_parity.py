"""The same decisions in production as in the notebook: a learned router trained and
evaluated offline, saved as a policy file, loaded by `Gateway.from_config` through
``[policies]``, and the held-out evaluation set replayed through both."""

import numpy as np
import pytest

from aigw_lab.datasets.shared import shared_data_dir_or_none
from aigw_lab.embeddings import HashingEmbedder

pytestmark = pytest.mark.skipif(
    shared_data_dir_or_none() is None,
    reason="shared data folder absent: set AIGW_LAB_SHARED_DATA to run this test",
)


@pytest.mark.parametrize("router", ["knn", "classifier"])
def test_the_gateway_makes_the_offline_evaluations_decisions(tmp_path, router):
    from aigw_lab import Gateway
    from aigw_lab.policy.learned import Decision, train_router
    from aigw_lab.policy.policyfile import save_policy
    from aigw_lab.sim.replay import load_recording

    data = load_recording("routellm/gsm8k")
    data = data.subset(data.dataset.ids[:240])
    train, test = data.split(0.25, seed=0)
    embedder = HashingEmbedder(256)
    trained = train_router(train, router, name="cheap-or-strong", embedder=embedder)
    # Offline, as the notebook evaluates it: batch scores, then a threshold at the median,
    # so that both targets get a real share of the held-out items.
    prompts = [item.prompt for item in test.dataset.items]
    scores = trained.scores(prompts)
    policy = trained.with_decision(Decision("threshold", float(np.median(scores))))
    offline = np.where(scores >= policy.decision.value, policy.strong, policy.weak)
    assert 0 < (offline == policy.strong).sum() < len(offline)

    save_policy(policy, tmp_path / "policies" / "cheap-or-strong.json")
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[providers.rec]\nkind = "replay"\nrecorded = "routellm/gsm8k"\n\n'
        '[policies]\ncheap-or-strong = "policies/cheap-or-strong.json"\n'
    )
    with Gateway.from_config(config, log=tmp_path / "prod.duckdb") as gateway:
        served = [gateway.chat("cheap-or-strong", p).model for p in prompts]
        logged = gateway.log.query(
            "SELECT provider_name || '/' || request_model AS target FROM calls ORDER BY call_id"
        )
    assert [f"rec/{model}" for model in served] == list(offline)
    assert logged.target.tolist() == list(offline)
