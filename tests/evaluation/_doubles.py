"""A test double for the evaluation tests: an embedder whose similarities are chosen."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np

from aigw_lab.gateway.semantic_cache import SemanticCache


def word(n: int) -> str:
    """A distinct lower-case word for ``n`` (no digits: the number guard must not fire)."""
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return letters


class ChosenSimilarity:
    """An `Embedder` for pairs whose cosine similarity is set in advance: `pair(s)` returns
    two new texts whose vectors have cosine ``s``; every pair gets two axes of its own, so
    different pairs are orthogonal. Other texts embed to the zero vector."""

    name = "chosen-similarity"

    def __init__(self, pairs: int = 512) -> None:
        self._dim = 2 * pairs
        self._vectors: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self._dim

    def pair(
        self, similarity: float, *, a: str | None = None, b: str | None = None
    ) -> tuple[str, str]:
        """Two new texts (or ``a`` and ``b``, which must be new) at cosine ``similarity``."""
        n = len(self._vectors) // 2
        a = a or f"question {word(n)} asked"
        b = b or f"question {word(n)} stored"
        assert a not in self._vectors and b not in self._vectors
        u = np.zeros(self._dim, dtype=np.float32)
        v = np.zeros(self._dim, dtype=np.float32)
        u[2 * n] = 1.0
        v[2 * n] = similarity
        v[2 * n + 1] = math.sqrt(max(0.0, 1.0 - similarity * similarity))
        self._vectors[a], self._vectors[b] = u, v
        return a, b

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        zero = np.zeros(self._dim, dtype=np.float32)
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self._vectors.get(t, zero) for t in texts])


class VerifyingCache(SemanticCache):
    """A stand-in for a cache with a verification stage (issue 12): ``verifier`` is a
    function of the two prompts that may refuse a hit the similarity allowed. Only the
    stand-in verifies: the installed cache's own verification stage, if it has one, is off,
    so the tests' counts do not depend on it."""

    def __init__(self, embedder, *, verifier=lambda asked, stored: "refuse" not in asked, **kw):
        if "verifier" in inspect.signature(SemanticCache).parameters:
            kw["verifier"] = None
        super().__init__(embedder, **kw)
        self.stand_in = verifier

    def lookup(self, request, *, provider, model):
        match = super().lookup(request, provider=provider, model=model)
        asked = request.messages[-1].text
        if match is None or self.stand_in is None or self.stand_in(asked, match.text):
            return match
        return None
