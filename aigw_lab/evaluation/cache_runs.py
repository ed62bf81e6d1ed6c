"""Labelled pairs measured end to end through a real `SemanticCache`: for each pair, the
cache holds prompt ``b`` with an answer of its own, prompt ``a`` is looked up, and what is
recorded is whether the cache served ``b``'s answer. So the guards, the threshold, and a
verification stage when the installed cache has one, all count exactly as they would in a
gateway; nothing is re-implemented here.

A `CacheVariant` names a way to build the cache (its keyword arguments); `cache_variants`
lists the ones the installed `SemanticCache` supports: ``cosine`` (similarity alone, no
guards), ``guards`` (the number and negation guards: the defaults before issue 12's
verification stage) and, when the constructor accepts ``verifier=``, ``verifier`` (its
defaults, verification on). `served` runs one variant at one threshold; `rate_table` turns
the outcomes into false-hit rates and recall per category with Wilson 95% intervals.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aigw_lab.evaluation.pairs import PARAPHRASE, LabelledPair, Rate
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.types import ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from aigw_lab.embeddings import Embedder

__all__ = [
    "CacheVariant",
    "GRID",
    "Precomputed",
    "precomputed",
    "cache_variants",
    "supports_verifier",
    "served",
    "similarities",
    "rate_table",
    "overall_rates",
    "gptcache_rates",
    "qqp_rates",
]

#: The thresholds the tables and the budget chooser try by default (today's default, 0.9,
#: among them).
GRID: tuple[float, ...] = (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98)
#: The provider and model the measurement's requests are addressed to (a partition name).
_PROVIDER = "eval"
_MODEL = "pairs"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheVariant:
    """A way to build the semantic cache under test: ``name`` (a table column),
    ``options`` (`SemanticCache` keyword arguments beyond the embedder and threshold),
    ``verifier`` (whether a verification stage runs), ``label`` (one line for tables),
    ``config`` (the ``[semantic_cache]`` TOML lines that select it, beyond the threshold)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    verifier: bool = False
    label: str = ""
    config: tuple[str, ...] = ()


def supports_verifier(cache_class: type = SemanticCache) -> bool:
    """Whether ``cache_class`` takes a ``verifier=`` argument (issue 12's verification
    stage, once merged)."""
    return "verifier" in inspect.signature(cache_class).parameters


def cache_variants(cache_class: type = SemanticCache) -> list[CacheVariant]:
    """The variants the installed cache supports, weakest first: ``cosine``, ``guards``
    and, when ``cache_class`` accepts ``verifier=``, ``verifier``."""
    off: dict[str, Any] = {"verifier": None} if supports_verifier(cache_class) else {}
    # The config key of the verification stage (``[semantic_cache] verifier``) takes "off".
    off_line = ('verifier = "off"',) if off else ()
    guards = ("guard_numbers = true", "guard_negation = true")
    variants = [
        CacheVariant(
            name="cosine",
            options={"guard_numbers": False, "guard_negation": False, **off},
            label="cosine similarity only (guards off)",
            config=("guard_numbers = false", "guard_negation = false", *off_line),
        ),
        CacheVariant(
            name="guards",
            options=dict(off),
            label="number and negation guards (the defaults before verification)",
            config=(*guards, *off_line),
        ),
    ]
    if off:
        variants.append(
            CacheVariant(
                name="verifier",
                options={},
                verifier=True,
                label="the installed defaults: guards and verification",
                config=(*guards, 'verifier = "lexical"'),
            )
        )
    return variants


class Precomputed:
    """An `Embedder` that answers from vectors computed once, in one batched call of the
    wrapped ``embedder`` (the model is slow one text at a time, and every setting measured
    asks for the same texts again); texts it was not given go to ``embedder``."""

    def __init__(self, embedder: Embedder, texts: Iterable[str]) -> None:
        self.embedder = embedder.embedder if isinstance(embedder, Precomputed) else embedder
        self.name = embedder.name
        known = embedder._vectors if isinstance(embedder, Precomputed) else {}
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        fresh = self.embedder.embed(todo) if todo else []
        self._vectors: dict[str, np.ndarray] = {**known, **dict(zip(todo, fresh, strict=True))}

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def covers(self, texts: Iterable[str]) -> bool:
        return all(t in self._vectors for t in texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in texts if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.embedder.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])


def precomputed(embedder: Embedder, texts: Iterable[str]) -> Precomputed:
    """``embedder`` with ``texts`` embedded (one batched call for those not yet done)."""
    texts = list(texts)
    if isinstance(embedder, Precomputed) and embedder.covers(texts):
        return embedder
    return Precomputed(embedder, texts)


def _request(text: str) -> ChatRequest:
    return ChatRequest.create(f"{_PROVIDER}/{_MODEL}", text)


def _answer(n: int) -> ChatResponse:
    # A neutral text of its own per pair: what was served is known by identity, and the
    # answer says nothing about either prompt that a verification stage could read.
    return ChatResponse(
        text=f"Stored answer number {n}.",
        finish_reason="stop",
        usage=Usage(input_tokens=10, output_tokens=5),
        provider=_PROVIDER,
        model=_MODEL,
        response_id=f"answer-{n}",
    )


def served(
    pairs: Sequence[LabelledPair],
    embedder: Embedder,
    variant: CacheVariant,
    threshold: float,
    *,
    cache_class: Callable[..., SemanticCache] = SemanticCache,
) -> np.ndarray:
    """For each pair, whether a `SemanticCache` built as ``variant`` at ``threshold`` and
    holding only ``b`` (with an answer of its own) serves that answer when asked ``a``."""
    embedder = precomputed(embedder, [t for p in pairs for t in (p.a, p.b)])
    cache = cache_class(embedder, threshold=threshold, **variant.options)
    out = np.zeros(len(pairs), dtype=bool)
    for n, pair in enumerate(pairs):
        cache.clear()
        response = _answer(n)
        cache.add(_request(pair.b), response, provider=_PROVIDER, model=_MODEL)
        match = cache.lookup(_request(pair.a), provider=_PROVIDER, model=_MODEL)
        out[n] = match is not None and match.response.response_id == response.response_id
    return out


def similarities(pairs: Sequence[LabelledPair], embedder: Embedder) -> np.ndarray:
    """The cosine similarity of each pair's two prompts under ``embedder``."""
    a = embedder.embed([p.a for p in pairs])
    b = embedder.embed([p.b for p in pairs])
    return np.einsum("ij,ij->i", a, b)


def _groups(pairs: Sequence[LabelledPair]) -> dict[str, np.ndarray]:
    categories = np.array([p.category for p in pairs])
    return {c: categories == c for c in dict.fromkeys(categories.tolist())}


def rate_table(
    pairs: Sequence[LabelledPair], outcomes: np.ndarray, *, by: str = "category"
) -> list[dict[str, Any]]:
    """One row per group of pairs (``by``: ``"category"`` or ``"kind"``): how many pairs,
    how many were served, the rate as a `Rate` (a false-hit rate for pairs that differ, a
    recall for pairs that are the same), and whether the group's pairs are the same."""
    labels = np.array([getattr(p, by) for p in pairs])
    same = np.array([p.same for p in pairs], dtype=bool)
    rows = []
    for group in dict.fromkeys(labels.tolist()):
        mask = labels == group
        rows.append(
            {
                "group": group,
                "same": bool(same[mask].all()),
                "rate": Rate(int(outcomes[mask].sum()), int(mask.sum())),
            }
        )
    return rows


def overall_rates(pairs: Sequence[LabelledPair], outcomes: np.ndarray) -> dict[str, Rate]:
    """``false_hits``: served pairs among those that differ; ``recall``: served pairs among
    those that are the same; ``precision``: pairs that are the same among those served."""
    same = np.array([p.same for p in pairs], dtype=bool)
    hit = np.asarray(outcomes, dtype=bool)
    return {
        "false_hits": Rate(int((hit & ~same).sum()), int((~same).sum())),
        "recall": Rate(int((hit & same).sum()), int(same.sum())),
        "precision": Rate(int((hit & same).sum()), int(hit.sum())),
    }


def gptcache_rates(
    pairs: Iterable[tuple[str, str]],
    embedder: Embedder,
    variant: CacheVariant,
    threshold: float,
    *,
    cache_class: Callable[..., SemanticCache] = SemanticCache,
) -> dict[str, Rate]:
    """GPTCache's protocol on its ``mock_data.json`` through a real cache: every origin
    stored (each with an answer of its own), every ``similar`` asked. ``recall``: queries
    served their own origin's answer (or that of a copy of the same text: mock_data repeats
    some origins) out of all queries; ``wrong``: queries served another origin's answer;
    ``precision``: correct out of served."""
    pairs = list(pairs)
    embedder = precomputed(embedder, [t for p in pairs for t in p])
    size = len(pairs) + 1  # every origin stays: none is evicted
    cache = cache_class(embedder, threshold=threshold, max_entries=size, **variant.options)
    origin_of: dict[str, str] = {}
    for n, (origin, _) in enumerate(pairs):
        response = _answer(n)
        cache.add(_request(origin), response, provider=_PROVIDER, model=_MODEL)
        origin_of[response.response_id or ""] = origin
    correct = wrong = 0
    for origin, similar in pairs:
        match = cache.lookup(_request(similar), provider=_PROVIDER, model=_MODEL)
        if match is None:
            continue
        if origin_of.get(match.response.response_id or "") == origin:
            correct += 1
        else:
            wrong += 1
    return {
        "recall": Rate(correct, len(pairs)),
        "wrong": Rate(wrong, len(pairs)),
        "precision": Rate(correct, correct + wrong),
    }


def qqp_rates(
    pairs: Sequence[tuple[str, str, bool]],
    embedder: Embedder,
    variant: CacheVariant,
    threshold: float,
    *,
    cache_class: Callable[..., SemanticCache] = SemanticCache,
) -> dict[str, Rate]:
    """Quora Question Pairs ``(text_a, text_b, is_duplicate)`` one pair at a time through a
    real cache (as `served`): precision, recall and false-hit rate (`overall_rates`)."""
    labelled = [
        LabelledPair(id=str(n), a=a, b=b, same=dup, category=PARAPHRASE if dup else "different")
        for n, (a, b, dup) in enumerate(pairs)
    ]
    return overall_rates(
        labelled, served(labelled, embedder, variant, threshold, cache_class=cache_class)
    )
