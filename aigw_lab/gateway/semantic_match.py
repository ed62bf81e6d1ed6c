"""What the semantic cache compares: the text a request is embedded as
(`conversation_text`), the guards against known false hits (`same_meaning_markers`: numbers
and negations), and the vector index searched (`VectorIndex`, exact `NumpyIndex`)."""

from __future__ import annotations

import json
import re
from typing import Protocol

import numpy as np

from aigw_lab.types import ChatRequest

__all__ = ["VectorIndex", "NumpyIndex", "conversation_text", "same_meaning_markers"]

# Digits, with thousands separators and decimals ("1,000", "3.5"), and number words. "one"
# is left out on purpose: "which one is faster" has no number in it.
_NUMBER = re.compile(
    r"\d+(?:[.,]\d+)*|\b(?:zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|hundred|thousand|"
    r"million|billion)\b",
    re.IGNORECASE,
)
_WORD_VALUES = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WORD_VALUES.update(hundred="100", thousand="1000", million="1000000", billion="1000000000")
# Negation markers; "n't" covers don't, isn't, can't... (straight or curly apostrophe).
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nothing|nobody|nowhere|neither|nor|without|cannot)\b|n[’']t\b",
    re.IGNORECASE,
)


def conversation_text(request: ChatRequest) -> str:
    """The text the semantic cache embeds for ``request``: the whole conversation, one line
    per message as ``role: text`` (system prompt and earlier turns included, since they
    change the answer). A lone user message is embedded as its bare text, the form the
    thresholds were measured on (docs/semantic_cache.md)."""
    messages = request.messages
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text
    lines = []
    for message in messages:
        text = message.text
        if message.tool_calls:
            text += " " + json.dumps([dict(c) for c in message.tool_calls], sort_keys=True)
        lines.append(f"{message.role}: {text}")
    return "\n".join(lines)


def same_meaning_markers(text: str) -> tuple[tuple[str, ...], int]:
    """What must be equal between two texts for one to answer the other, whatever their
    similarity: the multiset of their numbers (digits and number words, as sorted strings)
    and their count of negation markers (not, no, never, n't, without, ...).

    Embeddings place "Is 17 prime?" next to "Is 19 prime?", and "Is Python slow?" next to
    "Isn't Python slow?"; these two cheap checks stop the commonest of those false hits.
    """
    numbers = []
    for match in _NUMBER.finditer(text):
        token = match.group().lower()
        numbers.append(_WORD_VALUES.get(token) or token.replace(",", ""))
    numbers.sort()
    return tuple(numbers), len(_NEGATION.findall(text))


# --- the index ----------------------------------------------------------------------------


class VectorIndex(Protocol):
    """Nearest-neighbour search over unit vectors, by id. `NumpyIndex` is exact; an
    approximate index (HNSW) can stand in for it behind this interface."""

    def add(self, entry_id: int, vector: np.ndarray) -> None: ...

    def remove(self, entry_id: int) -> None: ...

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]: ...

    def __len__(self) -> int: ...

    # Optional: ``vector(entry_id) -> np.ndarray``, a copy of a held vector. An index that
    # has it holds the only copy (`MemorySemanticStore` keeps one for an index without).


class NumpyIndex:
    """Exact search: a matrix of unit vectors times the query (one BLAS call). Linear in the
    number of entries, which is fast enough for tens of thousands of entries per partition
    (about 1 ms per 20,000 x 384 vectors)."""

    def __init__(self, dim: int) -> None:
        self._matrix = np.empty((16, dim), dtype=np.float32)
        self._ids: list[int] = []
        self._rows: dict[int, int] = {}

    def add(self, entry_id: int, vector: np.ndarray) -> None:
        row = len(self._ids)
        if row == len(self._matrix):  # grow by doubling: amortised O(1) per add
            grown = np.empty((2 * row, self._matrix.shape[1]), dtype=np.float32)
            grown[:row] = self._matrix
            self._matrix = grown
        self._matrix[row] = vector
        self._ids.append(entry_id)
        self._rows[entry_id] = row

    def remove(self, entry_id: int) -> None:
        # Move the last row into the hole, so the live rows stay contiguous.
        row = self._rows.pop(entry_id)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._ids.pop()

    def vector(self, entry_id: int) -> np.ndarray:
        """A copy of ``entry_id``'s vector (KeyError if unknown)."""
        return self._matrix[self._rows[entry_id]].copy()

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        n = len(self._ids)
        if n == 0:
            return []
        scores = self._matrix[:n] @ vector
        if n > k:
            top = np.argpartition(-scores, k - 1)[:k]
            order = top[np.argsort(-scores[top], kind="stable")]
        else:
            order = np.argsort(-scores, kind="stable")
        return [(self._ids[i], float(scores[i])) for i in order]

    def __len__(self) -> int:
        return len(self._ids)


# --- the cache ----------------------------------------------------------------------------
