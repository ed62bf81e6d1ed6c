"""The on-disk embedding cache (`aigw_lab.embedding_cache`): keyed by model and text,
owner-only, atomic under concurrent writers, and a broken file is rebuilt, never a crash or
a wrong vector."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from aigw_lab.embedding_cache import (
    MAX_SHARDS,
    CachedEmbedder,
    EmbeddingCache,
    default_cache_root,
)
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError


class Counting(HashingEmbedder):
    """A HashingEmbedder that counts the texts it embeds."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim)
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def embed(self, texts):
        with self._lock:
            self.texts.extend(texts)
        return super().embed(texts)


def cached(tmp_path: Path, inner: HashingEmbedder | None = None) -> CachedEmbedder:
    return CachedEmbedder(inner or Counting(), EmbeddingCache(tmp_path))


def shards(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.rglob("*.emb"))


def test_a_second_process_reads_every_vector_back_without_embedding(tmp_path):
    texts = ["what is 2+2?", "name a prime", "what is 2+2?", ""]
    first = cached(tmp_path)
    vectors = first.embed(texts)
    assert first.embedder.texts == ["what is 2+2?", "name a prime", ""]  # each text once
    again = cached(tmp_path)  # a new object: only the disk is shared
    assert np.array_equal(again.embed(texts), vectors)
    assert again.embedder.texts == []
    assert np.array_equal(vectors, HashingEmbedder(32).embed(texts))


def test_only_new_texts_reach_the_model_and_order_is_kept(tmp_path):
    cached(tmp_path).embed(["a", "b"])
    later = cached(tmp_path)
    out = later.embed(["c", "b", "a", "c"])
    assert later.embedder.texts == ["c"]
    assert np.array_equal(out, HashingEmbedder(32).embed(["c", "b", "a", "c"]))


def test_the_key_is_the_model_too(tmp_path):
    cached(tmp_path, HashingEmbedder(32)).embed(["same text"])
    other = cached(tmp_path, Counting(64))  # another model name: hashing-64-3
    assert other.embed(["same text"]).shape == (1, 64)
    assert other.embedder.texts == ["same text"]


class Distilled(Counting):
    """A derived embedder: one name, vectors that depend on how it was derived."""

    def __init__(self, recipe: str) -> None:
        super().__init__(32)
        self.recipe = recipe

    def fingerprint(self) -> str:
        return self.recipe


def test_a_derived_embedders_vectors_are_keyed_by_its_fingerprint_too(tmp_path):
    # The static embedder distilled again (new weights, parameters or model2vec) keeps its
    # name: its vectors must not be read back for the new distillation.
    first = cached(tmp_path, Distilled("recipe-1"))
    first.embed(["same text"])
    assert first.embedder.texts == ["same text"]
    again = cached(tmp_path, Distilled("recipe-1"))
    again.embed(["same text"])
    assert again.embedder.texts == []  # same distillation: read from disk
    other = cached(tmp_path, Distilled("recipe-2"))
    other.embed(["same text"])
    assert other.embedder.texts == ["same text"]  # another one: embedded again
    assert other.name == first.name == "hashing-32-3"


def test_files_and_folders_are_owner_only(tmp_path):
    root = tmp_path / "cache"
    cached(root).embed(["secret prompt"])
    (shard,) = shards(root)
    assert stat.S_IMODE(shard.stat().st_mode) == 0o600
    assert stat.S_IMODE(shard.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip", "empty", "garbage", "other-model"],
)
def test_a_broken_shard_is_discarded_and_rebuilt(tmp_path, damage):
    texts = ["alpha", "beta", "gamma"]
    expected = cached(tmp_path).embed(texts)
    (shard,) = shards(tmp_path)
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[: len(data) - 7])
    elif damage == "flip":
        shard.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "empty":
        shard.write_bytes(b"")
    elif damage == "garbage":
        shard.write_bytes(os.urandom(len(data)))
    else:  # a shard of another model moved into this model's folder
        other = EmbeddingCache(tmp_path / "elsewhere")
        other.put("another-model", texts, np.ones((3, 32), dtype=np.float32))
        (foreign,) = shards(tmp_path / "elsewhere")
        shard.write_bytes(foreign.read_bytes())
    again = cached(tmp_path)
    out = again.embed(texts)
    assert np.array_equal(out, expected)  # never the damaged bytes
    assert again.embedder.texts == texts  # re-embedded
    assert again.cache.discarded == [shard]
    third = cached(tmp_path)
    third.embed(texts)
    assert third.embedder.texts == [] and not third.cache.discarded  # rebuilt whole


def test_concurrent_writers_leave_whole_shards(tmp_path):
    texts = [f"prompt {i}" for i in range(200)]

    def run(part: int) -> np.ndarray:
        return cached(tmp_path).embed(texts[part::3] + texts[:20])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(run, [0, 1, 2, 0, 1, 2]))
    reader = cached(tmp_path)
    assert np.array_equal(reader.embed(texts), HashingEmbedder(32).embed(texts))
    assert reader.embedder.texts == [] and not reader.cache.discarded
    assert not list(tmp_path.rglob("*.part"))  # no temporary file left behind


def test_concurrent_processes_share_the_cache(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache;"
        "from aigw_lab.embeddings import HashingEmbedder;"
        "e = CachedEmbedder(HashingEmbedder(32), EmbeddingCache(sys.argv[1]));"
        "e.embed([f'text {i}' for i in range(int(sys.argv[2]), 300, 2)])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(start)])
        for start in (0, 1, 0, 1)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    reader = cached(tmp_path)
    texts = [f"text {i}" for i in range(300)]
    assert np.array_equal(reader.embed(texts), HashingEmbedder(32).embed(texts))
    assert reader.embedder.texts == []


def test_many_shards_are_merged(tmp_path):
    for i in range(MAX_SHARDS + 3):
        cached(tmp_path).embed([f"text {i}"])
    assert len(shards(tmp_path)) <= MAX_SHARDS
    reader = cached(tmp_path)
    reader.embed([f"text {i}" for i in range(MAX_SHARDS + 3)])
    assert reader.embedder.texts == []


def test_an_unwritable_cache_still_embeds(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    embedder = CachedEmbedder(Counting(), EmbeddingCache(blocker / "cache"))
    assert embedder.embed(["x"]).shape == (1, 32)


def test_memory_lru_keeps_recent_texts_only(tmp_path):
    embedder = CachedEmbedder(Counting(), None, memory=2)
    embedder.embed(["a"])
    embedder.embed(["b"])
    embedder.embed(["a"])  # hit; "a" is now the most recent
    embedder.embed(["c"])  # evicts "b"
    embedder.embed(["a", "b"])
    assert embedder.embedder.texts == ["a", "b", "c", "b"]
    with pytest.raises(ConfigError):
        CachedEmbedder(Counting(), None, memory=-1)


def test_default_root_follows_env_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "mine" / "embeddings"
    monkeypatch.delenv("AIGW_LAB_CACHE")
    assert default_cache_root() == tmp_path / "xdg" / "aigw_lab" / "embeddings"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "aigw_lab" / "embeddings"


def test_put_refuses_mismatched_rows(tmp_path):
    with pytest.raises(ConfigError, match="one embedding row per text"):
        EmbeddingCache(tmp_path).put("m", ["a", "b"], np.zeros((1, 4), dtype=np.float32))


def test_an_interrupted_run_keeps_the_chunks_it_finished(tmp_path):
    class FailsOnThirdCall(Counting):
        calls = 0

        def embed(self, texts):
            FailsOnThirdCall.calls += 1
            if FailsOnThirdCall.calls == 3:
                raise KeyboardInterrupt  # the user gave up waiting
            return super().embed(texts)

    texts = [f"prompt {i}" for i in range(25)]
    first = CachedEmbedder(FailsOnThirdCall(), EmbeddingCache(tmp_path), chunk=10)
    with pytest.raises(KeyboardInterrupt):
        first.embed(texts)
    rerun = cached(tmp_path)
    assert np.array_equal(rerun.embed(texts), HashingEmbedder(32).embed(texts))
    assert rerun.embedder.texts == texts[20:]  # the first two chunks were kept
    with pytest.raises(ConfigError):
        CachedEmbedder(Counting(), None, chunk=0)
