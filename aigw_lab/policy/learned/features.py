"""Prompt features for learned routers: sentence embeddings, cached on disk per text.

Embedding 1.3k GSM8K prompts with MiniLM takes over a minute on a 2-core CPU, and every
re-evaluation needs the same vectors, so `embed_prompts` keeps one vector per (model, text)
in `aigw_lab.embedding_cache`: a rerun, or another split of the same data, embeds only
the texts the model has not seen, and another embedder never reads a stale vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aigw_lab.embedder_names import embedder_by_name
from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache, default_cache_root

if TYPE_CHECKING:
    import numpy as np

    from aigw_lab.embeddings import Embedder
    from aigw_lab.types import ChatRequest

__all__ = [
    "cached_embedder",
    "embedder_fingerprint",
    "default_cache_dir",
    "embed_prompts",
    "prompt_text",
    "make_embedder",
]


def default_cache_dir() -> Path:
    """``$AIGW_LAB_CACHE/embeddings``, else ``$XDG_CACHE_HOME/aigw_lab/embeddings``, else
    ``~/.cache/aigw_lab/embeddings`` (`aigw_lab.embedding_cache.default_cache_root`)."""
    return default_cache_root()


def make_embedder(name: str | None) -> Embedder:
    """The embedder a policy names: ``hashing-<dim>-<ngram>`` is the test double
    `HashingEmbedder`; None or all-MiniLM-L6-v2 the bundled model; all-MiniLM-L6-v2-int8 the
    bundled model quantized to int8 (`aigw_lab.embeddings.INT8_MODEL`);
    all-MiniLM-L6-v2-static256 the static embedder distilled from it
    (`aigw_lab.static_embedder.STATIC_MODEL`); anything else the path of a
    sentence-transformers model folder on this machine (never downloaded). Any other name is
    a `ConfigError` listing the known ones, raised before a model loads
    (`aigw_lab.embedder_names.embedder_by_name`)."""
    return embedder_by_name(name)


def embedder_fingerprint(embedder: Embedder) -> str | None:
    """What the vectors of a derived embedder (one with a ``fingerprint()``, such as
    `aigw_lab.static_embedder.StaticEmbedder`) come from, looking through the wrappers
    (`CachedEmbedder`, `BatchingEmbedder`); None for one whose name says it all."""
    seen = 0
    while not hasattr(embedder, "fingerprint") and hasattr(embedder, "embedder") and seen < 8:
        embedder, seen = embedder.embedder, seen + 1
    fingerprint = getattr(embedder, "fingerprint", None)
    return str(fingerprint()) if callable(fingerprint) else None


def prompt_text(request: ChatRequest) -> str:
    """The text a router looks at: the last user message (what the recorded datasets'
    prompts are), falling back to the last message of any role."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text
    return request.messages[-1].text if request.messages else ""


def cached_embedder(embedder: Embedder, cache_dir: str | Path | None = None) -> CachedEmbedder:
    """``embedder`` behind the on-disk embedding cache in ``cache_dir`` (default
    `default_cache_dir`). A `CachedEmbedder` that has a disk cache is returned as is; one
    without (a served router's, memory only) has its model put behind the disk cache."""
    if isinstance(embedder, CachedEmbedder):
        if embedder.cache is not None:
            return embedder
        embedder = embedder.embedder
    return CachedEmbedder(embedder, EmbeddingCache(cache_dir))


def embed_prompts(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    cache_dir: str | Path | None = None,
    label: str = "prompts",
) -> np.ndarray:
    """Unit-length embeddings of ``texts`` (float32, one row per text). Each text's vector
    is read from the embedding cache in ``cache_dir`` (default `default_cache_dir`) when this
    embedder's model embedded that text before; only the others are embedded (and then
    cached). ``label`` is kept for callers of the earlier per-dataset cache; it is unused."""
    del label
    return cached_embedder(embedder, cache_dir).embed(list(texts))
