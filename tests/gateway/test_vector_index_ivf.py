"""IVFIndex: exact (equal to NumpyIndex) below its threshold, approximate above it with a
good recall@1, removal by id, retraining when the size doubles, the way back to exact search,
and use by SemanticCache. The faiss-specific tests skip when faiss is not installed; the
"faiss missing" and argument checks run always."""

import sys

import numpy as np
import pytest

from aigw_lab import Gateway, Price
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_cache import NumpyIndex, SemanticCache
from aigw_lab.gateway.vector_index_ivf import IVFIndex, default_nlist
from aigw_lab.testing.fakes import MockProvider

DIM = 32


def unit_vectors(n, seed, dim=DIM):
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near(vectors, cosine, seed):
    """Each vector moved to about ``cosine`` similarity, as a paraphrase would be."""
    noise = unit_vectors(len(vectors), seed, vectors.shape[1])
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors  # orthogonal part
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    moved = cosine * vectors + np.sqrt(1 - cosine**2) * noise
    return moved.astype(np.float32)


def filled(index, vectors, first_id=0):
    for offset, vector in enumerate(vectors):
        index.add(first_id + offset, vector)
    return index


# --- always -----------------------------------------------------------------------------------


def test_missing_faiss_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(ConfigError) as info:
        IVFIndex(DIM)
    assert 'pip install "aigw-lab[ann]"' in info.value.hint
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize(
    "kwargs",
    [{"exact_below": 0}, {"nlist": 0}, {"nprobe": -1}, {"nprobe": True}, {"exact_below": 1.5}],
)
def test_invalid_arguments_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="IVFIndex"):
        IVFIndex(DIM, **kwargs)


def test_default_nlist_follows_sqrt_and_leaves_enough_points_per_cluster():
    assert default_nlist(1_000_000) == 4 * 1000  # 4 * sqrt(n)
    assert default_nlist(500) == 500 // 39  # k-means needs ~39 points per cluster
    assert default_nlist(10) == 1
    assert default_nlist(10**12) == 65_536


# --- exact below the threshold ----------------------------------------------------------------


def test_below_the_threshold_results_equal_numpy_index(faiss):
    vectors = unit_vectors(300, seed=1)
    ivf = filled(IVFIndex(DIM, exact_below=500), vectors)
    exact = filled(NumpyIndex(DIM), vectors)
    for entry_id in range(0, 300, 7):
        ivf.remove(entry_id)
        exact.remove(entry_id)
    assert not ivf.approximate and len(ivf) == len(exact)
    for query in near(vectors[:40], 0.9, seed=2):
        assert ivf.search(query, 5) == exact.search(query, 5)


# --- approximate above it ---------------------------------------------------------------------


def test_above_the_threshold_recall_at_1_against_exact_search(faiss):
    vectors = unit_vectors(3000, seed=3)
    ivf = filled(IVFIndex(DIM, exact_below=500, nprobe=8), vectors)
    exact = filled(NumpyIndex(DIM), vectors)
    assert ivf.approximate and ivf.nlist > ivf.nprobe  # it really searches a subset
    queries = near(vectors[::10], 0.9, seed=4)
    agree = sum(ivf.search(q, 4)[0][0] == exact.search(q, 4)[0][0] for q in queries)
    assert agree / len(queries) >= 0.9


def test_scores_are_cosine_similarities_best_first(faiss):
    vectors = unit_vectors(1000, seed=5)
    ivf = filled(IVFIndex(DIM, exact_below=200), vectors)
    query = near(vectors[17:18], 0.95, seed=6)[0]
    results = ivf.search(query, 4)
    assert results[0][0] == 17
    assert results[0][1] == pytest.approx(float(vectors[17] @ query), abs=1e-5)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)


def test_removed_ids_are_never_returned(faiss):
    vectors = unit_vectors(2000, seed=7)
    ivf = filled(IVFIndex(DIM, exact_below=500), vectors)
    removed = range(0, 2000, 2)
    for entry_id in removed:
        ivf.remove(entry_id)
    assert ivf.approximate and len(ivf) == 1000
    for entry_id in removed:
        assert all(found % 2 == 1 for found, _ in ivf.search(vectors[entry_id], 10))
    # The survivors are still found: a stored vector is its own nearest neighbour.
    for entry_id in range(1, 2000, 50):
        assert ivf.search(vectors[entry_id], 1)[0][0] == entry_id
    with pytest.raises(KeyError):
        ivf.remove(0)  # already gone, as NumpyIndex would say


def test_it_retrains_when_the_size_doubles_and_keeps_every_entry(faiss):
    vectors = unit_vectors(1200, seed=8)
    ivf = IVFIndex(DIM, exact_below=300)
    filled(ivf, vectors[:299])
    assert not ivf.approximate and ivf.trained_size == 0
    ivf.add(299, vectors[299])
    assert ivf.approximate and ivf.trained_size == 300 and ivf.nlist == default_nlist(300)
    filled(ivf, vectors[300:599], first_id=300)
    assert ivf.trained_size == 300  # not doubled yet
    ivf.add(599, vectors[599])
    assert ivf.trained_size == 600 and ivf.nlist == default_nlist(600)
    filled(ivf, vectors[600:], first_id=600)
    assert ivf.trained_size == 1200 and len(ivf) == 1200
    # Retraining moved every vector into the new index, ids and values intact.
    for entry_id in range(0, 1200, 37):
        found, score = ivf.search(vectors[entry_id], 1)[0]
        assert found == entry_id and score == pytest.approx(1.0, abs=1e-5)


def test_an_explicit_nlist_is_used_but_never_above_the_training_size(faiss):
    vectors = unit_vectors(600, seed=9)
    assert filled(IVFIndex(DIM, exact_below=100, nlist=7), vectors).nlist == 7
    assert filled(IVFIndex(DIM, exact_below=50, nlist=10_000), vectors[:50]).nlist == 50


def test_shrinking_below_half_the_threshold_goes_back_to_exact_search(faiss):
    vectors = unit_vectors(800, seed=10)
    ivf = filled(IVFIndex(DIM, exact_below=400), vectors)
    exact = filled(NumpyIndex(DIM), vectors)
    for entry_id in range(600):
        ivf.remove(entry_id)
        exact.remove(entry_id)
    assert ivf.approximate and len(ivf) == 200  # half the threshold: still approximate
    ivf.remove(600)
    exact.remove(600)
    assert not ivf.approximate and len(ivf) == 199
    for query in near(vectors[601::9], 0.9, seed=11):
        # The same neighbours; scores may differ in the last bit (rows in another order).
        got, expected = ivf.search(query, 4), exact.search(query, 4)
        assert [i for i, _ in got] == [i for i, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-6)


# --- in the semantic cache --------------------------------------------------------------------


def test_semantic_cache_hits_through_an_ivf_index(faiss):
    made = []

    def index_factory(dim):
        made.append(IVFIndex(dim, exact_below=8))
        return made[-1]

    cache = SemanticCache(HashingEmbedder(256), threshold=0.9, index_factory=index_factory)
    provider = MockProvider("mock", models=("m1",), default=None)
    gateway = Gateway([provider], middleware=[cache], prices={"mock/m1": Price(1.0, 2.0)})
    topics = ["sourdough", "tax law", "jazz", "volcanoes", "chess", "knitting", "sailing"]
    provider.enqueue(*(f"About {t}." for t in topics), "Paris.")
    for topic in topics:
        assert gateway.chat("mock/m1", f"Tell me something about {topic}").cache_status == "miss"
    assert gateway.chat("mock/m1", "What is the capital of France?").cache_status == "miss"
    assert len(made) == 1 and made[0].approximate  # the 8th entry trained the IVF index

    hit = gateway.chat("mock/m1", "what is the capital of france")
    assert (hit.cache_status, hit.text) == ("hit", "Paris.")
    assert len(provider.requests) == 8
