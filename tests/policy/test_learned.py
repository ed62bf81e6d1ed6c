"""Learned routers: the quality models on synthetic data (HashingEmbedder, no model
download), the LearnedRouter policy contract, and its policy-file round trip."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.policy import load_policy, policy_from_dict, save_policy
from aigw_lab.policy.evaluate.offline import evaluate_router
from aigw_lab.policy.learned import (
    ROUTERS,
    Decision,
    LearnedRouter,
    SwRanking,
    from_dict,
    train_router,
)
from aigw_lab.policy.learned.features import embed_prompts
from aigw_lab.policy.learned.sw_ranking import pairwise_wins
from aigw_lab.types import ChatRequest
from tests.policy._learned_data import STRONG, WEAK, chat_prompt, math_prompt, synthetic

EMBEDDER = HashingEmbedder(256)


def trained(router: str = "knn", **kwargs) -> LearnedRouter:
    train, _ = synthetic(30).split(0.3, seed=0)
    params = {"k": 5} if router == "knn" else None
    return train_router(train, router, embedder=EMBEDDER, params=params, **kwargs)


def request(text: str) -> ChatRequest:
    return ChatRequest.create("learned", text)


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_every_router_scores_arithmetic_above_chit_chat(router):
    policy = trained(router)
    math = policy.scores([math_prompt(i) for i in range(100, 110)])
    chat = policy.scores([chat_prompt(i) for i in range(100, 110)])
    assert math.min() > chat.max()
    quality = policy.model.predict(policy.embed([math_prompt(200), chat_prompt(200)]))
    assert quality.shape == (2, 2)


def test_two_model_threshold_decision_routes_by_strong_win_score():
    policy = trained("knn").with_decision(Decision("threshold", 0.5))
    hard = policy.decide(request(math_prompt(500)))
    easy = policy.decide(request(chat_prompt(500)))
    assert hard.target == f"rec/{STRONG}" and easy.target == f"rec/{WEAK}"
    assert set(hard.scores) == set(policy.targets())
    assert ">=" in hard.reason and "<" in easy.reason


def test_lambda_decision_trades_quality_for_cost():
    policy = trained("regressor", decision=Decision("lambda", 0.0))
    assert policy.decision.mode == "lambda"
    quality_only = policy.with_decision(Decision("lambda", 0.0))
    cost_only = policy.with_decision(Decision("lambda", 1e9))
    assert quality_only.decide(request(math_prompt(7))).target == f"rec/{STRONG}"
    assert cost_only.decide(request(math_prompt(7))).target == f"rec/{WEAK}"


def test_sw_ranking_is_the_closed_form_weighted_bradley_terry_for_two_models():
    X = np.eye(3, dtype=np.float32)[:2]  # two orthogonal training prompts
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])  # strong wins the first, weak the second
    model = SwRanking(gamma=10.0, prior=0.5).fit(X, Y)
    query = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    # Weights 10**(1 + 1) and 10**(1 + 0), rescaled to sum to 2 comparisons.
    w_strong, w_weak = 2 * 100 / 110, 2 * 10 / 110
    expected = (w_strong + 0.5) / (w_strong + w_weak + 1.0)
    assert model.strong_score(query, 0, 1)[0] == pytest.approx(expected)


def test_sw_ranking_orders_many_models_by_weighted_wins():
    Y = np.array([[3.0, 2.0, 1.0]] * 5)
    X = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (5, 1))
    quality = SwRanking().fit(X, Y).predict(np.array([[1.0, 0.0]], dtype=np.float32))[0]
    assert quality[0] > quality[1] > quality[2]
    wins = pairwise_wins(np.array([[1.0, 1.0, np.nan]]))
    assert wins[0, 0, 1] == 0.5 and wins[0, 0, 2] == 0.0


def test_to_dict_has_the_contract_shape():
    spec = trained("classifier").to_dict()
    assert spec["kind"] == "learned" and spec["router"] == "classifier"
    assert spec["targets"] == [f"rec/{STRONG}", f"rec/{WEAK}"]
    assert spec["strong"] == f"rec/{STRONG}" and spec["weak"] == f"rec/{WEAK}"
    assert spec["decision"] == {"mode": "threshold", "threshold": 0.5}
    assert spec["prices"][f"rec/{STRONG}"] == [10.0, 30.0]
    assert spec["embedder"] == EMBEDDER.name
    assert spec["artifact"].endswith(".npz")
    assert spec["train"]["items"] == 42


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_policy_file_round_trip_makes_the_same_decisions(tmp_path, router):
    policy = trained(router).with_decision(Decision("threshold", 0.3))
    path = save_policy(policy, tmp_path / "p.json")
    loaded = load_policy(path)
    assert isinstance(loaded, LearnedRouter)
    assert loaded.train_ids == policy.train_ids
    prompts = [math_prompt(i) for i in range(50, 55)] + [chat_prompt(i) for i in range(50, 55)]
    np.testing.assert_allclose(loaded.scores(prompts), policy.scores(prompts), rtol=1e-6)
    for prompt in prompts:
        assert loaded.decide(request(prompt)).target == policy.decide(request(prompt)).target


def test_policy_from_dict_dispatches_kind_learned(tmp_path):
    policy = trained()
    policy.save_artifacts(tmp_path)
    assert isinstance(policy_from_dict(policy.to_dict(), artifacts=tmp_path), LearnedRouter)
    assert isinstance(from_dict(policy.to_dict(), artifacts=tmp_path), LearnedRouter)


def test_missing_artifact_and_bad_specs_are_config_errors(tmp_path):
    spec = trained().to_dict()
    with pytest.raises(ConfigError, match="artifact"):
        LearnedRouter.from_dict(spec, artifacts=tmp_path)
    with pytest.raises(ConfigError, match="unknown router"):
        LearnedRouter.from_dict({**spec, "router": "magic"}, artifacts=tmp_path)
    with pytest.raises(ConfigError, match="decision"):
        Decision.from_spec({"mode": "threshold"})
    with pytest.raises(ConfigError, match="strong and weak"):
        LearnedRouter(
            "x", trained().model, targets=["a/1", "b/2"], decision=Decision("threshold", 0.5)
        )


def test_evaluation_refuses_the_training_items():
    data = synthetic(30)
    train, test = data.split(0.3, seed=0)
    policy = train_router(train, "knn", embedder=EMBEDDER, params={"k": 5})
    result = evaluate_router(policy, test, n_boot=50)
    # The gain (weak fails) is perfectly predictable, so the router is the oracle: the
    # curve rises straight to quality 1 at strong share g, then stays: APGR = 1 - g / 2.
    g = 1 - result.weak_quality
    assert result.apgr.value == pytest.approx(1 - g / 2)
    with pytest.raises(ConfigError, match="used to train"):
        evaluate_router(policy, train, n_boot=10)


def test_embeddings_are_cached_per_embedder_and_texts(tmp_path):
    class Counting(HashingEmbedder):
        calls = 0

        def embed(self, texts):
            Counting.calls += 1
            return super().embed(texts)

    embedder = Counting(64)
    first = embed_prompts(["a b c", "d e f"], embedder, cache_dir=tmp_path, label="t")
    again = embed_prompts(["a b c", "d e f"], embedder, cache_dir=tmp_path, label="t")
    other = embed_prompts(["a b c"], embedder, cache_dir=tmp_path, label="t")
    # Cached per text: a subset of embedded texts is read back, not embedded again.
    assert Counting.calls == 1 and np.array_equal(first, again)
    assert np.array_equal(other, first[:1])
    embed_prompts(["a b c", "new"], embedder, cache_dir=tmp_path, label="t")
    assert Counting.calls == 2  # only "new" went to the model


def test_a_gateway_serves_the_learned_policy_from_recorded_answers():
    from aigw_lab.gateway import Gateway
    from aigw_lab.sim.replay import ReplayProvider

    data = synthetic(30)
    train, test = data.split(0.3, seed=0)
    policy = train_router(train, "knn", embedder=EMBEDDER, params={"k": 5}, name="cheap-or-strong")
    gateway = Gateway(providers=[ReplayProvider(data, name="rec")], policies=[policy])
    for item in test.items:
        answered = gateway.chat("cheap-or-strong", item.prompt)
        assert answered.model == (STRONG if item.id.startswith("math/") else WEAK)


def test_batch_strong_scores_are_computed_once_per_matrix():
    data = synthetic(40)
    policy = train_router(data, "knn", embedder=EMBEDDER, params={"k": 5})
    calls = []
    original = policy.model.strong_score

    def counting(X, strong, weak):
        calls.append(len(X))
        return original(X, strong, weak)

    policy.model.strong_score = counting
    X = EMBEDDER.embed([item.prompt for item in data.items])
    first = policy.strong_scores_from(X)
    first[:] = -1.0  # a caller's change must not leak into the kept copy
    again = policy.with_decision(Decision("threshold", 0.1)).strong_scores_from(X)
    assert calls == [80] and not np.array_equal(first, again)
    pair = policy.targets().index(policy.strong), policy.targets().index(policy.weak)
    assert np.array_equal(again, original(X, *pair))
    policy.strong_scores_from(X.copy())  # another matrix (equal values): computed again
    policy.strong_scores_from(X[:1])
    policy.strong_scores_from(X[:1])  # one prompt (a served request): never kept
    assert calls == [80, 80, 1, 1]


@pytest.mark.parametrize("name", ["hashing-x", "hashing-256", "hashing-256-3-1", "hashing--3"])
def test_a_malformed_hashing_embedder_name_is_a_config_error(name):
    from aigw_lab.policy.learned.features import make_embedder

    with pytest.raises(ConfigError, match="hashing-<dim>-<ngram>"):
        make_embedder(name)
    assert make_embedder("hashing-64-2").name == "hashing-64-2"


def test_the_python_flow_reads_every_embedding_back_on_a_rerun(tmp_path, monkeypatch):
    from aigw_lab.policy.calibrate import calibrate

    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path))
    seen: list[str] = []
    original = HashingEmbedder.embed
    monkeypatch.setattr(
        HashingEmbedder, "embed", lambda self, texts: seen.extend(texts) or original(self, texts)
    )

    def flow() -> None:  # the docs' train / calibrate / evaluate steps, default cache
        rest, test = synthetic(40).split(0.25, seed=0)
        train, cal = rest.split(0.25, seed=1)
        router = train_router(train, "knn", embedder=HashingEmbedder(64), params={"k": 5})
        result = calibrate(router, cal, strong_share=0.5, held_out=test, n_boot=20)
        evaluate_router(router.with_decision(result.decision), test, n_boot=20)

    flow()
    assert len(seen) == 80  # every prompt once
    flow()
    assert len(seen) == 80  # the rerun embedded nothing
