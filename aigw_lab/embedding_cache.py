"""Embeddings kept on disk (and in memory) so the same text is never embedded twice.

Embedding a dataset's prompts is the slow part of training, evaluating and exporting a
learned router (over a minute for GSM8K on a 2-core CPU, plus ~10 s to import and load the
model), and every rerun needs the same vectors. `EmbeddingCache` stores one vector per
(model, text) pair; `CachedEmbedder` wraps any `aigw_lab.embeddings.Embedder` so that only
texts missing from the cache reach the model, and the model is not even loaded when
nothing is missing.

On disk: ``<root>/<model>-<hash of the model name>/`` holds shard files ``<hash>.emb``.
A shard is one write's worth of vectors::

    b"AIGWEMB1" | 8-byte little-endian header length | JSON header | keys | vectors

The header names the model, the dimension, the row count and the SHA-256 of keys+vectors;
keys are 16-byte BLAKE2b digests of the UTF-8 texts; vectors are float32 rows. A shard is
written to a private temporary file and renamed into place, so a concurrent reader sees
either no shard or a whole one, and two runs writing at once never corrupt each other. A
shard that fails any check (a truncated copy, a flipped byte, another model's file) is
ignored and deleted, and its texts are embedded again: a broken cache costs time, never a
crash or a wrong vector. When a model's folder holds more than `MAX_SHARDS` shards they are
merged into one.

Files are owner-only (0600 in 0700 folders): they are derived from users' prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.store.files import make_private_dirs

if TYPE_CHECKING:
    from aigw_lab.embeddings import Embedder

__all__ = [
    "CACHE_ENV",
    "CachedEmbedder",
    "EmbeddingCache",
    "default_cache_root",
    "text_key",
]

#: The environment variable that moves the cache (its ``embeddings`` folder).
CACHE_ENV = "AIGW_LAB_CACHE"
#: Merge a model's shards into one when there are more than this many.
MAX_SHARDS = 16
_MAGIC = b"AIGWEMB1"
_KEY_BYTES = 16
_SUFFIX = ".emb"


def default_cache_root() -> Path:
    """Where embeddings are cached by default: ``$AIGW_LAB_CACHE/embeddings``, else
    ``$XDG_CACHE_HOME/aigw_lab/embeddings``, else ``~/.cache/aigw_lab/embeddings``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "aigw_lab" / "embeddings"


def text_key(text: str) -> bytes:
    """The cache key of one text: a 16-byte BLAKE2b digest of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_KEY_BYTES).digest()


def _model_folder_name(model: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[:60]
    digest = hashlib.blake2b(model.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{safe}-{digest}"


class EmbeddingCache:
    """Vectors by (model name, text) under ``root`` (default `default_cache_root`).

    `get` returns the cached rows of some texts, `put` adds rows. Each model's shards are
    read once per `EmbeddingCache` object and kept in memory, so repeated lookups within one
    command cost a dictionary probe. Safe to share between threads and between processes.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self._loaded: dict[str, dict[bytes, np.ndarray]] = {}
        self._lock = threading.Lock()
        #: Shards found broken and deleted (for diagnostics and tests).
        self.discarded: list[Path] = []

    def folder(self, model: str) -> Path:
        """The folder holding ``model``'s shards."""
        return self.root / _model_folder_name(model)

    def get(self, model: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """``{position: vector}`` for each of ``texts`` already cached for ``model``."""
        table = self._table(model)
        found = {}
        for n, text in enumerate(texts):
            row = table.get(text_key(text))
            if row is not None:
                found[n] = row
        return found

    def put(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text (a shard on disk, and in this object's memory). A
        failure to write (read-only or full disk) leaves the cache as it was: caching is an
        optimisation, never a reason for a command to fail."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ConfigError(
                f"cannot cache {vectors.shape} vectors for {len(texts)} texts",
                hint="pass one embedding row per text",
            )
        if not len(texts):
            return
        keys = [text_key(t) for t in texts]
        table = self._table(model)
        with self._lock:
            for key, row in zip(keys, vectors, strict=True):
                table[key] = row
        unique = dict(zip(keys, vectors, strict=True))
        try:
            self._write_shard(model, list(unique), np.stack(list(unique.values())))
            self._compact(model)
        except OSError:
            pass

    # --- disk ----------------------------------------------------------------------------

    def _table(self, model: str) -> dict[bytes, np.ndarray]:
        with self._lock:
            table = self._loaded.get(model)
            if table is None:
                table = self._loaded[model] = self._read_all(model)
            return table

    def _shards(self, model: str) -> list[Path]:
        try:
            return sorted(self.folder(model).glob(f"*{_SUFFIX}"))
        except OSError:
            return []

    def _read_all(self, model: str) -> dict[bytes, np.ndarray]:
        table: dict[bytes, np.ndarray] = {}
        dims = set()
        for path in self._shards(model):
            shard = self._read_shard(path, model)
            if shard is None:
                continue
            keys, vectors = shard
            dims.add(vectors.shape[1])
            table.update(zip(keys, vectors, strict=True))
        if len(dims) > 1:  # one name, two dimensions: the model behind the name changed
            for path in self._shards(model):
                self._discard(path)
            return {}
        return table

    def _read_shard(self, path: Path, model: str) -> tuple[list[bytes], np.ndarray] | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # merged away by a concurrent run meanwhile
        except OSError:
            return None
        parsed = _parse_shard(data, model)
        if parsed is None:
            self._discard(path)
        return parsed

    def _discard(self, path: Path) -> None:
        self.discarded.append(path)
        try:
            path.unlink()
        except OSError:
            pass

    def _write_shard(self, model: str, keys: list[bytes], vectors: np.ndarray) -> Path:
        folder = self.folder(model)
        make_private_dirs(folder)
        payload = b"".join(keys) + vectors.astype("<f4").tobytes()
        digest = hashlib.sha256(payload).hexdigest()
        header = json.dumps(
            {"model": model, "dim": int(vectors.shape[1]), "count": len(keys), "sha256": digest},
            sort_keys=True,
        ).encode()
        blob = _MAGIC + struct.pack("<Q", len(header)) + header + payload
        path = folder / f"{digest[:24]}{_SUFFIX}"
        # mkstemp creates the file 0600; the rename is atomic, so no reader sees half a shard.
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def _compact(self, model: str) -> None:
        shards = self._shards(model)
        if len(shards) <= MAX_SHARDS:
            return
        table: dict[bytes, np.ndarray] = {}
        for path in shards:
            shard = self._read_shard(path, model)
            if shard is not None:
                table.update(zip(*shard, strict=True))
        if not table:
            return
        merged = self._write_shard(model, list(table), np.stack(list(table.values())))
        for path in shards:
            if path != merged:
                path.unlink(missing_ok=True)


def _parse_shard(data: bytes, model: str) -> tuple[list[bytes], np.ndarray] | None:
    """A shard's keys and vectors, or None when anything about it is wrong."""
    start = len(_MAGIC) + 8
    if len(data) < start or not data.startswith(_MAGIC):
        return None
    (length,) = struct.unpack("<Q", data[len(_MAGIC) : start])
    if length > len(data) - start:
        return None
    try:
        header = json.loads(data[start : start + length])
        dim, count, digest = int(header["dim"]), int(header["count"]), str(header["sha256"])
        same_model = header["model"] == model
    except (ValueError, KeyError, TypeError):
        return None
    payload = data[start + length :]
    if (
        not same_model
        or dim < 1
        or count < 1
        or len(payload) != count * (_KEY_BYTES + 4 * dim)
        or hashlib.sha256(payload).hexdigest() != digest
    ):
        return None
    keys = [payload[i : i + _KEY_BYTES] for i in range(0, count * _KEY_BYTES, _KEY_BYTES)]
    vectors = np.frombuffer(payload, dtype="<f4", offset=count * _KEY_BYTES).reshape(count, dim)
    if not np.all(np.isfinite(vectors)):
        return None
    return keys, vectors.astype(np.float32)


class CachedEmbedder:
    """An `Embedder` that answers from a cache and embeds only what is missing.

    ``cache`` (an `EmbeddingCache`, or None for none on disk) is looked up first, then, if
    ``memory`` > 0, an in-process LRU of that many recent texts (what a server needs: a
    repeated prompt costs a dictionary probe). Missing texts go to ``embedder`` in calls of
    up to ``chunk`` texts, each stored as soon as it returns (so an interrupted run keeps
    its work). ``name`` is the wrapped embedder's, so its vectors and
    policies stay interchangeable; the wrapped model is only loaded if something is missing.
    A derived embedder with a ``fingerprint()`` (the static embedder: another distillation
    gives other vectors under the same name) is cached under its name and fingerprint, so a
    new distillation never reads the vectors of an old one.
    """

    def __init__(
        self,
        embedder: Embedder,
        cache: EmbeddingCache | None = None,
        *,
        memory: int = 0,
        chunk: int = 1024,
    ) -> None:
        if not isinstance(memory, int) or memory < 0:
            raise ConfigError(f"memory={memory!r} is invalid", hint="use an int >= 0")
        if not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"chunk={chunk!r} is invalid", hint="use a positive int")
        self.chunk = chunk
        self.embedder = embedder
        self.name = embedder.name
        self._cache_key: str | None = None
        self.cache = cache
        self.memory = memory
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        #: Texts sent to the wrapped embedder so far (cache misses).
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def _key(self) -> str:
        """The name the disk cache files vectors under: the embedder's, plus its fingerprint
        when it has one (asked on first use: it may hash a model's weights)."""
        if self._cache_key is None:
            fingerprint = getattr(self.embedder, "fingerprint", None)
            self._cache_key = f"{self.name}@{fingerprint()}" if callable(fingerprint) else self.name
        return self._cache_key

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        found: dict[int, np.ndarray] = {}
        if self.memory:
            with self._lock:
                for n, text in enumerate(texts):
                    row = self._recent.get(text)
                    if row is not None:
                        self._recent.move_to_end(text)
                        found[n] = row
        if self.cache is not None and len(found) < len(texts):
            rest = [n for n in range(len(texts)) if n not in found]
            hits = self.cache.get(self._key(), [texts[n] for n in rest])
            found.update({rest[i]: row for i, row in hits.items()})
        missing = [n for n in range(len(texts)) if n not in found]
        if missing:
            unique = list(dict.fromkeys(texts[n] for n in missing))
            by_text: dict[str, np.ndarray] = {}
            # In chunks, each cached as soon as it is done: an interrupted run (Ctrl-C after
            # ten minutes of MMLU) keeps what it embedded, and the rerun resumes from there.
            for start in range(0, len(unique), self.chunk):
                part = unique[start : start + self.chunk]
                fresh = np.ascontiguousarray(self.embedder.embed(part), dtype=np.float32)
                self.misses += len(part)
                if self.cache is not None:
                    self.cache.put(self._key(), part, fresh)
                by_text.update(zip(part, fresh, strict=True))
            found.update({n: by_text[texts[n]] for n in missing})
        if self.memory:
            self._remember(texts, found)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[n] for n in range(len(texts))]).astype(np.float32, copy=False)

    def _remember(self, texts: list[str], rows: dict[int, np.ndarray]) -> None:
        with self._lock:
            for n, text in enumerate(texts):
                self._recent[text] = rows[n]
                self._recent.move_to_end(text)
            while len(self._recent) > self.memory:
                self._recent.popitem(last=False)

    def warm(self) -> None:
        """Load the wrapped model and run it once (a server does this before it is ready)."""
        self.embedder.embed(["warm-up"])

    def __repr__(self) -> str:
        return f"<CachedEmbedder {self.embedder!r} cache={self.cache and self.cache.root}>"
