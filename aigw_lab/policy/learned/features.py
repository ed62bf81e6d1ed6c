"""Prompt features for learned routers: sentence embeddings, cached on disk per dataset.

Embedding 14k MMLU prompts with MiniLM takes over a minute on a laptop CPU, and every
re-evaluation needs the same vectors, so `embed_prompts` keeps them in an ``.npy`` file named
after the embedder and a hash of the texts: a changed prompt set or another embedder never
reads a stale cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from aigw_lab.embeddings import Embedder
    from aigw_lab.types import ChatRequest

__all__ = ["default_cache_dir", "embed_prompts", "prompt_text", "make_embedder"]


def default_cache_dir() -> Path:
    """``$AIGW_LAB_CACHE/embeddings``, else ``~/.cache/aigw_lab/embeddings``."""
    root = os.environ.get("AIGW_LAB_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "aigw_lab"
    return base / "embeddings"


def make_embedder(name: str | None) -> Embedder:
    """The embedder a policy names: ``hashing-<dim>-<ngram>`` is the test double
    `HashingEmbedder`; anything else (None = all-MiniLM-L6-v2) a sentence-transformers
    model loaded from local files."""
    from aigw_lab.embeddings import HashingEmbedder, SentenceTransformerEmbedder

    if name and name.startswith("hashing-"):
        _, dim, ngram = name.split("-")
        return HashingEmbedder(int(dim), ngram=int(ngram))
    if name in (None, "all-MiniLM-L6-v2"):
        return SentenceTransformerEmbedder()
    return SentenceTransformerEmbedder(name)


def prompt_text(request: ChatRequest) -> str:
    """The text a router looks at: the last user message (what the recorded datasets'
    prompts are), falling back to the last message of any role."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text
    return request.messages[-1].text if request.messages else ""


def _fingerprint(embedder_name: str, texts: Sequence[str]) -> str:
    digest = hashlib.blake2b(digest_size=10)
    digest.update(embedder_name.encode())
    for text in texts:
        digest.update(b"\x1e")
        digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def embed_prompts(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    cache_dir: str | Path | None = None,
    label: str = "prompts",
) -> np.ndarray:
    """Unit-length embeddings of ``texts`` (float32, one row per text), read from
    ``cache_dir`` (default `default_cache_dir`) when this embedder already embedded exactly
    these texts, else computed and saved there. ``label`` goes into the file name so a
    person can tell the caches apart (for example the dataset's name)."""
    import numpy as np

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    path = folder / f"{safe_label}-{_fingerprint(embedder.name, texts)}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    vectors = np.ascontiguousarray(embedder.embed(list(texts)), dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)  # atomic: a killed run never leaves a truncated cache behind
    return vectors
