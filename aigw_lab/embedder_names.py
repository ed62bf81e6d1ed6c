"""Embedders by name: the one place where a name (in Python, in a policy file, or in
``[semantic_cache] model``) becomes an `Embedder`, checked before any model loads.

The names:

- ``all-MiniLM-L6-v2`` (`DEFAULT_MODEL`, also ``None``): the bundled MiniLM, float32, on
  torch (the ``semantic`` extra).
- ``all-MiniLM-L6-v2-int8`` (`INT8_MODEL`): the same weights with int8 Linear layers (the
  ``semantic`` extra).
- ``all-MiniLM-L6-v2-static256`` (`STATIC_MODEL`, also `FAST_EMBEDDER`): a static model
  distilled from the bundled MiniLM (the ``fast-embed`` extra; distilled on first use, then
  loaded without importing torch). The embedder recommended for a semantic cache on the hot
  path: docs/semantic_cache.md, "Embedders", gives its speed and its quality cost.
- ``hashing-<dim>-<ngram>``: the `HashingEmbedder` test double (not semantic).
- the folder of a local sentence-transformers model (never downloaded).

Building one is cheap: nothing is loaded until its first ``embed``. A missing extra is a
`MissingExtraError` naming the install command; any other name a `ConfigError` listing
these.
"""

from __future__ import annotations

from typing import Any

from aigw_lab.embeddings import (
    DEFAULT_MODEL,
    INT8_MODEL,
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    is_model_folder,
)
from aigw_lab.errors import ConfigError
from aigw_lab.static_embedder import STATIC_MODEL, StaticEmbedder

__all__ = ["EMBEDDER_NAMES", "FAST_EMBEDDER", "embedder_by_name"]

#: The embedders known by name (besides ``hashing-<dim>-<ngram>`` and local model folders).
EMBEDDER_NAMES = (DEFAULT_MODEL, INT8_MODEL, STATIC_MODEL)
#: The embedder recommended where a lookup's latency matters (a semantic cache in the call
#: path): the static distillation of MiniLM, about 0.3 ms of CPU per prompt against 20-30 ms.
FAST_EMBEDDER = STATIC_MODEL


def embedder_by_name(name: Any, *, batch_size: int = 64) -> Embedder:
    """The embedder called ``name`` (see the module's list; ``None`` is the default MiniLM).

    ``batch_size`` bounds the texts one model call embeds, for the sentence-transformers
    models (the static and hashing embedders have no such limit). Raises `ConfigError` for
    an unknown or malformed name, and `MissingExtraError` (naming the install command) when
    the extra the named embedder needs is not installed; neither loads anything.
    """
    if name is not None and not isinstance(name, str):
        raise ConfigError(
            f"embedder name {name!r} is not a string",
            hint=f"name one of {', '.join(EMBEDDER_NAMES)}",
        )
    if name and name.startswith("hashing-"):
        parts = name.split("-")
        if len(parts) != 3 or not all(p.isdigit() and len(p) <= 5 for p in parts[1:]):
            raise ConfigError(
                f"embedder {name[:80]!r} is invalid",
                hint="name a HashingEmbedder as hashing-<dim>-<ngram>, e.g. hashing-256-3",
            )
        return HashingEmbedder(int(parts[1]), ngram=int(parts[2]))
    if name in (None, DEFAULT_MODEL):
        return SentenceTransformerEmbedder(batch_size=batch_size)
    if name == INT8_MODEL:
        return SentenceTransformerEmbedder(int8=True)
    if name == STATIC_MODEL:
        return StaticEmbedder()
    if not is_model_folder(name):
        raise ConfigError(f"unknown embedder {name[:80]!r}", hint=f"use {_known()}")
    return SentenceTransformerEmbedder(name, batch_size=batch_size)


def _known() -> str:
    return (
        f"{DEFAULT_MODEL} (the default), {INT8_MODEL} (faster), "
        f"{STATIC_MODEL} (fastest; distilled on first use), "
        "hashing-<dim>-<ngram> (tests only) or the folder of a local "
        "sentence-transformers model"
    )
