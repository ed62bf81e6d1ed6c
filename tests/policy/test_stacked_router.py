"""The cheap-feature routers (`knn_tuned`, `stacked`, the default) on synthetic data with a
planted signal, cross-fitted: they beat random; the category encoding and the stack's
meta-learner see only rows outside the ones they score (a leaking fit would be caught)."""

from __future__ import annotations

import numpy as np
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy.evaluate.metrics import apgr, threshold_sweep
from aigw_lab.policy.learned import (
    DEFAULT_ROUTER,
    StackedQuality,
    TunedKnnQuality,
    router_inputs,
    side_features,
    train_router,
)
from aigw_lab.policy.learned.cheap import (
    apply_category_encoding,
    category_code,
    fit_category_encoding,
)
from aigw_lab.types import ChatRequest

SMALL_GRID = ((1, 0.0), (5, 0.0), (15, 4.0))


def unit_rows(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def planted(n: int = 300, seed: int = 0, *, signal: str):
    """Prompts, categories, embeddings and (strong, weak) labels where the weak model fails
    exactly on: prompts with numbers (``signal="numbers"``), category "hard"
    (``"category"``), or one cluster of the embedding (``"embedding"``)."""
    rng = np.random.default_rng(seed)
    X = unit_rows(rng, n)
    has_number = rng.random(n) < 0.4
    hard_cat = rng.random(n) < 0.4
    prompts = [
        f"how many apples are left after {i % 17 + 2} are eaten" if num else "describe a nice day"
        for i, num in enumerate(has_number)
    ]
    cats = ["hard" if h else f"easy{i % 3}" for i, h in enumerate(hard_cat)]
    if signal == "embedding":
        direction = np.zeros(X.shape[1], np.float32)
        direction[0] = 1.0
        X[: n // 3] = 0.3 * X[: n // 3] + direction  # a tight cluster
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        weak_fails = np.arange(n) < n // 3
    else:
        weak_fails = has_number if signal == "numbers" else hard_cat
    noise = rng.random(n) < 0.1  # 10% label noise
    weak = np.where(weak_fails ^ noise, 0.0, 1.0)
    strong = np.ones(n)
    return prompts, cats, X, np.column_stack([strong, weak])


def cross_fitted(model_factory, inputs: np.ndarray, Y: np.ndarray, folds: int = 5):
    """Strong-win scores of every row from a model fitted on the other folds."""
    fold = np.arange(len(Y)) % folds
    scores = np.empty(len(Y))
    for k in range(folds):
        held = fold == k
        model = model_factory().fit(inputs[~held], Y[~held], pair=(0, 1))
        scores[held] = model.strong_score(inputs[held], 0, 1)
    return scores


def apgr_of(scores: np.ndarray, Y: np.ndarray) -> float:
    return apgr(threshold_sweep(scores, Y[:, 0], Y[:, 1]), Y[:, 1].mean(), Y[:, 0].mean())


@pytest.mark.parametrize("signal", ["numbers", "category", "embedding"])
def test_stacked_finds_each_planted_signal_out_of_fold(signal):
    prompts, cats, X, Y = planted(signal=signal)
    inputs = router_inputs(X, prompts, cats)
    scores = cross_fitted(lambda: StackedQuality(grid=SMALL_GRID), inputs, Y)
    # Random routing scores 0.5 (about +-0.04 here); the oracle (noise aside) 1 - gap / 2.
    assert apgr_of(scores, Y) > 0.62


def test_knn_tuned_finds_an_embedding_cluster_and_tunes_k_on_training_rows_only():
    prompts, cats, X, Y = planted(signal="embedding")
    assert apgr_of(cross_fitted(lambda: TunedKnnQuality(SMALL_GRID), X, Y), Y) > 0.62
    model = TunedKnnQuality(SMALL_GRID).fit(X, Y, pair=(0, 1))
    assert model.chosen[-1] != (1, 0.0)  # 1-NN on noisy labels loses to a wider vote
    assert model.loo.shape == (len(X), 3)


def test_a_router_without_signal_stays_near_random():
    rng = np.random.default_rng(3)
    n = 300
    X = unit_rows(rng, n)
    Y = np.column_stack([np.ones(n), (rng.random(n) < 0.6).astype(float)])
    prompts = ["what is the weather"] * n
    cats = [f"c{i % 4}" for i in range(n)]
    scores = cross_fitted(
        lambda: StackedQuality(grid=SMALL_GRID), router_inputs(X, prompts, cats), Y
    )
    assert 0.35 < apgr_of(scores, Y) < 0.65


def test_category_encoding_cannot_see_the_test_fold():
    # One item per category, labels random: only a leak (the test item's own label in its
    # category's mean) could predict them. Cross-fitted, the encoding is the training mean.
    rng = np.random.default_rng(1)
    n = 200
    gain = (rng.random(n) < 0.3).astype(float)
    codes = np.array([category_code(f"unique-{i}") for i in range(n)])
    fold = np.arange(n) % 5
    crossfit = np.empty(n)
    for k in range(5):
        held = fold == k
        keys, values, mean = fit_category_encoding(codes[~held], gain[~held], smoothing=1.0)
        crossfit[held] = apply_category_encoding(codes[held], keys, values, mean)
    leaky_keys, leaky_values, leaky_mean = fit_category_encoding(codes, gain, smoothing=1.0)
    leaky = apply_category_encoding(codes, leaky_keys, leaky_values, leaky_mean)
    Y = np.column_stack([np.ones(n), 1.0 - gain])
    assert apgr_of(leaky, Y) == pytest.approx(apgr_of(gain, Y))  # a leak: the oracle
    assert np.ptp(crossfit[fold == 0]) == 0.0  # held out: all unseen, all the training mean
    assert apgr_of(crossfit, Y) < 0.6


def test_stacking_fits_its_meta_learner_on_out_of_sample_base_predictions():
    # Labels are noise and every row's category is its own: a base scored in sample would
    # return each row's own label (k=1 includes itself; its category's mean is its label).
    rng = np.random.default_rng(2)
    n = 120
    X = unit_rows(rng, n)
    Y = np.column_stack([np.ones(n), (rng.random(n) < 0.5).astype(float)])
    prompts = ["p"] * n
    cats = [f"own-{i}" for i in range(n)]
    model = StackedQuality(grid=((1, 0.0),)).fit(router_inputs(X, prompts, cats), Y, pair=(0, 1))
    gain = Y[:, 0] - Y[:, 1]
    knn_oof, category_oof = model.oof[:, 0, -1], model.oof[:, 3, -1]
    nearest_other = np.argsort(-(X @ X.T) + 2 * np.eye(n), axis=1)[:, 0]
    np.testing.assert_allclose(knn_oof, gain[nearest_other])  # leave-one-out, not itself
    assert not np.allclose(category_oof, gain)  # never its own label
    assert np.ptp(category_oof) < 0.5 * np.ptp(gain)  # only inner-fold means


def test_stacked_refuses_plain_embeddings_and_reads_the_served_category():
    prompts, cats, X, Y = planted(signal="category")
    model = StackedQuality(grid=SMALL_GRID).fit(router_inputs(X, prompts, cats), Y, pair=(0, 1))
    with pytest.raises(ConfigError, match="router_inputs"):
        model.predict(X)
    side = side_features(["I have 3 apples and 12 pears, twice as many"], ["hard"])
    assert side[0, 2] == pytest.approx(np.log1p(2)) and side[0, 3] == 1.0
    assert side[0, 4] == pytest.approx(np.log1p(1)) and side[0, 5] == category_code("hard")
    assert side_features(["no numbers"], None)[0, 5] == -1.0


def test_the_default_router_is_stacked_and_old_names_still_train():
    from aigw_lab.embeddings import HashingEmbedder
    from tests.policy._learned_data import STRONG, math_prompt, synthetic

    assert DEFAULT_ROUTER == "stacked"
    train, _ = synthetic(20).split(0.3, seed=0)
    embedder = HashingEmbedder(64)
    policy = train_router(train, embedder=embedder)
    assert policy.model.router == "stacked" and policy.to_dict()["router"] == "stacked"
    assert train_router(train, "knn", embedder=embedder, params={"k": 3}).model.router == "knn"
    # A served request's category comes from its tags; the decision reads it.
    tagged = ChatRequest.create("p", math_prompt(500), tags={"category": "math"})
    untagged = ChatRequest.create("p", math_prompt(500))
    assert policy.decide(tagged).target == f"rec/{STRONG}"
    assert policy.decide(tagged).reason != policy.decide(untagged).reason
