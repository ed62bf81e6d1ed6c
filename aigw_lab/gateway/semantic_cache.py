"""The semantic cache: a gateway middleware that answers a request from the stored answer of
an earlier request that *means* the same, found by embedding similarity.

    cache = SemanticCache(SentenceTransformerEmbedder(), threshold=0.9, ttl=86400)
    gateway = Gateway(providers, middleware=[ExactCache(), cache])   # exact first, then semantic

A request is embedded as the text of its whole conversation (`conversation_text`), then
compared with the stored requests of the same *partition*: the same namespace (tenant, else
user, else shared, as the exact cache), the same provider and model, and the same generation
parameters. The most similar stored request at or above ``threshold`` that the verifier
accepts (`LexicalVerifier` by default: the same numbers, units, negations, dates, languages,
code tokens and roles, no antonym swapped in) serves its answer, logged with
``cache_status='hit'`` and its similarity in ``cache_similarity``.

Sampled requests (temperature > 0), requests with tools and requests with non-text parts
(images) bypass it unless the constructor says otherwise. See docs/semantic_cache.md.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from aigw_lab.embedder_names import embedder_by_name
from aigw_lab.embeddings import BatchingEmbedder, Embedder, is_embedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.cache import namespace_for
from aigw_lab.gateway.cache_common import read_cache_options, stored_answer
from aigw_lab.gateway.cache_stores import check_ttl
from aigw_lab.gateway.middleware import CallContext, Primitive
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Serve, Verdict, Wait, Work
from aigw_lab.gateway.semantic_match import (  # split out for size
    NumpyIndex,
    VectorIndex,
    conversation_text,
    same_meaning_markers,
)
from aigw_lab.gateway.semantic_persist import (  # split out for size
    FORMAT_VERSION,
    _response_from_json,  # noqa: F401 (importable from here, as before the split)
    read_saved,
    save_entries,
)
from aigw_lab.gateway.semantic_store import MemorySemanticStore, SemanticEntry, SemanticStore
from aigw_lab.gateway.semantic_verify import CHECKS, LexicalVerifier, PairVerifier
from aigw_lab.types import ChatRequest, ChatResponse

__all__ = [
    "SemanticCache",
    "SemanticCacheStats",
    "SemanticMatch",
    "VectorIndex",
    "NumpyIndex",
    "conversation_text",
    "same_meaning_markers",
    "PairVerifier",
    "LexicalVerifier",
]

#: Bump when the partition recipe or the saved format changes (`semantic_persist`).
_FORMAT_VERSION = FORMAT_VERSION
#: Only these answers are stored: a truncated (``length``) or filtered answer is not one to
#: hand to a caller who asked a slightly different question.
_STORABLE = frozenset(("stop", "tool_calls"))
#: About 50 MB and an exact search of about 1 ms at 384 dimensions (docs/semantic_cache.md,
#: "Size and eviction"); a larger cache wants `BackgroundIVFIndex`.
_DEFAULT_MAX_ENTRIES = 10_000


class _Plan(NamedTuple):
    partition: str
    text: str
    markers: tuple[tuple[str, ...], int]
    ttl: float | None


class _Embedding(NamedTuple):
    """A lookup waiting for its vector from a batching embedder."""

    plan: _Plan
    future: Future[np.ndarray]


class _Looked(NamedTuple):
    """A lookup done: the call's vector and what it found (None: a miss)."""

    plan: _Plan
    vector: np.ndarray
    match: SemanticMatch | None


class SemanticMatch(NamedTuple):
    """A stored answer found for a request: the answer, how similar the stored request is
    (cosine, in [-1, 1]), and the stored request's text."""

    response: ChatResponse
    similarity: float
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SemanticCacheStats:
    """What a semantic cache has done since it was created, and what it holds now.

    ``guarded``: lookups where a stored request was similar enough but was refused (by the
    verifier, or by the number and negation guards when there is none). ``rejected``: the
    candidates the verifier refused (a lookup may refuse several before one passes).
    ``bypasses``: calls it skipped (sampled, tools, images, or asked).
    """

    hits: int
    misses: int
    bypasses: int
    guarded: int
    saved_usd: float
    entries: int
    evictions: int
    expired: int
    rejected: int = 0

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0

    def __str__(self) -> str:
        return (
            f"semantic cache: {self.hits} hits, {self.misses} misses "
            f"(hit rate {self.hit_rate:.1%}), {self.bypasses} bypassed, "
            f"rejected by verification: {self.rejected} "
            f"(in {self.guarded} lookups), saved ${self.saved_usd:.4f}, "
            f"{self.entries} entries ({self.evictions} evicted, {self.expired} expired)"
        )


class SemanticCache(Primitive):
    """Serves a request from the answer to an earlier, similar request.

    ``embedder``: an `Embedder` (a `SentenceTransformerEmbedder` for real use), or its name
    (`aigw_lab.embedder_names.embedder_by_name`: ``"all-MiniLM-L6-v2-static256"`` is the fast
    one).
    ``threshold``: the least cosine similarity that may serve (default 0.9).
    ``max_entries``: least recently used entries are evicted beyond it. ``ttl``: seconds an
    answer stays fresh (None: no expiry); a request's ``metadata["cache"]["ttl"]`` wins.
    ``top_k``: candidates above the threshold checked by the verifier, best first; the
    first it accepts is served.
    ``verifier``: decides whether a candidate's answer answers the request (a
    `PairVerifier`). ``"lexical"`` (the default): a `LexicalVerifier`; ``None`` or
    ``"off"``: no verifier, only the number and negation guards (the behaviour before it).
    ``allow_sampled``: also serve and store requests with temperature > 0 (by default they
    bypass: the caller asked for variety). ``allow_tools``: also requests with tools.
    ``guard_numbers``/``guard_negation``: with the default verifier, whether it checks
    numbers and negations; without one (or with your own, before it), the checks of
    `same_meaning_markers`.
    ``index_factory``: builds one `VectorIndex` per partition from the dimension
    (`BackgroundIVFIndex` for hundreds of thousands of entries).
    ``store``: where entries live, a `SemanticStore` (default: a `MemorySemanticStore` of
    ``max_entries`` entries, default 10,000, with ``index_factory``'s indexes); a store
    passed in brings its own bound and index, so those two may not be passed with it.
    ``batch_window``: seconds (0: off) concurrent lookups wait to share one model call: the
    embedder is wrapped in a `BatchingEmbedder` with this ``max_wait``.

    A sans-IO `Primitive`: ``admit`` asks for the embedding as blocking work (off the event
    loop for async calls; a batching embedder's future is waited on instead), then serves a
    hit or lets the call go upstream; ``settle`` stores the answer. Entries and vectors live
    in ``store``, a `SemanticStore` (in memory).
    """

    kind = "cache"

    def __init__(
        self,
        embedder: Embedder | str,
        *,
        threshold: float = 0.9,
        max_entries: int | None = None,
        ttl: float | None = None,
        top_k: int = 4,
        allow_sampled: bool = False,
        allow_tools: bool = False,
        guard_numbers: bool = True,
        guard_negation: bool = True,
        clock: Callable[[], float] = time.time,
        index_factory: Callable[[int], VectorIndex] = NumpyIndex,
        batch_window: float = 0.0,
        verifier: PairVerifier | str | None = "lexical",
        store: SemanticStore | None = None,
    ) -> None:
        if isinstance(embedder, str):  # a name; unknown ones and missing extras raise here
            embedder = embedder_by_name(embedder)
        if not is_embedder(embedder):  # isinstance would read dim: load the model
            raise ConfigError(
                f"semantic cache embedder {embedder!r} is not an Embedder",
                hint="pass a SentenceTransformerEmbedder (or an object with name, dim, embed)",
            )
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not (0.0 < threshold <= 1.0)
        ):
            raise ConfigError(
                f"semantic cache threshold={threshold!r} is invalid",
                hint="use a cosine similarity in (0, 1], e.g. 0.9",
            )
        if store is not None and (max_entries is not None or index_factory is not NumpyIndex):
            raise ConfigError(
                "semantic cache: store= was given with max_entries= or index_factory=",
                hint="set the bound and the index on the store itself",
            )
        if store is not None and not isinstance(store, SemanticStore):
            raise ConfigError(
                f"semantic cache store {store!r} is not a SemanticStore",
                hint="pass a MemorySemanticStore or an object with the SemanticStore methods",
            )
        max_entries = _DEFAULT_MAX_ENTRIES if max_entries is None else max_entries
        for name, value in (("max_entries", max_entries), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"semantic cache {name}={value!r} is invalid", hint="use a positive integer"
                )
        check_ttl(ttl, "semantic cache ttl")
        self.verifier = _build_verifier(verifier, guard_numbers, guard_negation)
        if batch_window:  # BatchingEmbedder checks the value
            embedder = BatchingEmbedder(embedder, max_wait=batch_window)
        self.embedder = embedder
        self.threshold = float(threshold)
        # A store's own bound when it has one (None: the store does not say).
        self.max_entries = max_entries if store is None else getattr(store, "max_entries", None)
        self.ttl = ttl
        self.top_k = top_k
        self.allow_sampled = allow_sampled
        self.allow_tools = allow_tools
        self.guard_numbers = guard_numbers
        self.guard_negation = guard_negation
        self._clock = clock
        self._index_factory = index_factory  # what the store builds its indexes with
        if store is None:  # `store or ...` would replace an empty store (len 0 is falsy)
            store = MemorySemanticStore(max_entries, index_factory=index_factory)
        self.store: SemanticStore = store
        self._lock = threading.Lock()
        self._hits = self._misses = self._bypasses = self._guarded = self._rejected = 0
        self._saved_usd = 0.0

    # --- for notebooks --------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the embedding model now (building the cache does not): a server calls this
        before it reports ready, so its first lookup does not wait for the model."""
        self.embedder.embed(["warm-up"])

    def lookup(self, request: ChatRequest, *, provider: str, model: str) -> SemanticMatch | None:
        """The answer this cache would serve ``request`` sent to ``provider``/``model``
        (None: a miss), without counting it or logging anything."""
        plan = self._plan_for(request, provider, model)
        return self._find(plan, self._embed(plan.text), count=False)

    def add(
        self, request: ChatRequest, response: ChatResponse, *, provider: str, model: str
    ) -> bool:
        """Store ``response`` as the answer to ``request`` (warming the cache); returns
        whether it was stored (an error or truncated answer is not)."""
        plan = self._plan_for(request, provider, model)
        return self._remember(plan, self._embed(plan.text), response)

    def stats(self) -> SemanticCacheStats:
        store = self.store.stats()
        with self._lock:
            return SemanticCacheStats(
                hits=self._hits,
                misses=self._misses,
                bypasses=self._bypasses,
                guarded=self._guarded,
                saved_usd=self._saved_usd,
                rejected=self._rejected,
                entries=store.entries,
                evictions=store.evictions,
                expired=store.expired,
            )

    def __len__(self) -> int:
        return len(self.store)

    def clear(self) -> None:
        """Forget every stored answer."""
        self.store.clear()

    def purge_expired(self) -> int:
        """Drop the entries whose TTL has passed; returns how many."""
        return self.store.purge_expired(self._clock())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "type": type(self).__name__,
            "embedder": self.embedder.name,
            "threshold": self.threshold,
            "max_entries": self.max_entries,
            "ttl": self.ttl,
            "verifier": repr(self.verifier) if self.verifier is not None else None,
        }

    def __repr__(self) -> str:
        return (
            f"<SemanticCache embedder={self.embedder.name!r} threshold={self.threshold} "
            f"entries={len(self.store)}>"
        )

    # --- persistence ----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the live entries to ``directory`` (created if needed): ``vectors.npy`` and
        ``entries.json``. Returns the directory. Load them in another session with `load`."""
        self.purge_expired()
        folder = Path(directory).expanduser()
        return save_entries(folder, self.embedder.name, self.store.entries())

    def load(self, directory: str | Path) -> int:
        """Add the entries saved in ``directory`` by `save` (expired ones are skipped; the
        most recently used are kept within ``max_entries``). Returns how many were added."""
        folder = Path(directory).expanduser()
        now = self._clock()
        added = 0
        for partition, text, vector, response, created, expires in read_saved(
            folder, self.embedder.name
        ):
            if expires is not None and expires <= now:
                continue
            self._insert(partition, text, vector, response, created, expires)
            added += 1
        return added

    # --- the primitive (the gateway's drivers run it in every call mode) --------------------

    def admit(self, ctx: CallContext, state: Any) -> Verdict:
        """Embed the call (blocking work: off the event loop for async calls), look it up,
        then serve the match or let the call go upstream."""
        if state is None:
            plan = self._plan(ctx)
            if plan is None:
                return PROCEED
            embed_later = getattr(self.embedder, "embed_later", None)
            if embed_later is not None:  # a BatchingEmbedder: its own thread runs the batch
                future = embed_later(plan.text)
                return Wait(None, state=_Embedding(plan, future), wake=future)
            return Work(partial(self._look, plan))
        if type(state) is _Embedding:
            state = self._look(state.plan, state.future.result())
        plan, vector, match = state
        if match is not None:
            return Serve(self._serve(ctx, match))
        ctx.cache_status = "miss"
        return Proceed(_Looked(plan, vector, None))

    def withdraw(self, ctx: CallContext, state: Any) -> None:
        """A lookup was abandoned: a text not yet embedded leaves its batch."""
        if type(state) is _Embedding:
            state.future.cancel()

    def settle(self, ctx: CallContext, ticket: _Looked, outcome: Outcome) -> None:
        """Store a complete answer (`_remember` decides which are worth keeping)."""
        if outcome.response is not None and outcome.error is None:
            self._remember(ticket.plan, ticket.vector, outcome.response)

    # --- the steps ------------------------------------------------------------------------

    def _plan(self, ctx: CallContext) -> _Plan | None:
        """What to look up for this call, or None when it bypasses the semantic cache."""
        request = ctx.request
        ttl = None
        options = request.metadata.get("cache") if request.metadata else None
        if options is not None:
            skip, ttl, custom_key = read_cache_options(options)
            # A custom key names the request's identity exactly: not for similarity.
            if skip or custom_key is not None:
                return self._bypass(ctx)
        if not self._eligible(request):
            return self._bypass(ctx)
        return self._plan_for(request, ctx.provider_name, ctx.model, ttl)

    def _eligible(self, request: ChatRequest) -> bool:
        if request.temperature and not self.allow_sampled:
            return False
        if request.tools and not self.allow_tools:
            return False
        # An image is not in the embedded text: two questions about two images look alike.
        return all(
            isinstance(m.content, str) or all(p.type == "text" for p in m.content)
            for m in request.messages
        )

    def _bypass(self, ctx: CallContext) -> None:
        if ctx.cache_status == "none":  # an exact cache before us already said "miss"
            ctx.cache_status = "bypass"
        with self._lock:
            self._bypasses += 1
        return None

    def _plan_for(
        self, request: ChatRequest, provider: str, model: str, ttl: float | None = None
    ) -> _Plan:
        params = request.params_dict()
        for name in ("temperature", "top_p"):  # 0 and 0.0 ask the same thing
            if name in params:
                params[name] = float(params[name])
        if request.extra:
            params["extra"] = dict(request.extra)
        identity = json.dumps(
            [_FORMAT_VERSION, provider, model, params], sort_keys=True, default=repr
        )
        digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        partition = f"{namespace_for(request)}|{provider}/{model}|{digest}"
        text = conversation_text(request)
        return _Plan(partition, text, same_meaning_markers(text), ttl if ttl else self.ttl)

    def _embed(self, text: str) -> np.ndarray:
        return self.embedder.embed([text])[0]

    def _look(self, plan: _Plan, vector: np.ndarray | None = None) -> _Looked:
        """Embed (unless ``vector`` is given) and look up, counting a hit or a miss."""
        if vector is None:
            vector = self._embed(plan.text)
        return _Looked(plan, vector, self._find(plan, vector, count=True))

    def _find(self, plan: _Plan, vector: np.ndarray, *, count: bool) -> SemanticMatch | None:
        now = self._clock()
        refused = rejected = 0
        for entry, similarity in self.store.search(plan.partition, vector, self.top_k):
            if similarity < self.threshold:
                break  # best first: the rest are less similar still
            if entry.expires is not None and entry.expires <= now:
                self.store.remove(entry.entry_id, expired=True)
                continue
            if self._check_markers and not self._passes_guards(plan.markers, entry.markers):
                refused += 1
                continue
            if self.verifier is not None and not self.verifier.accept(
                plan.text, entry.text, similarity
            ):
                refused += 1
                rejected += 1
                continue
            self.store.touch(entry.entry_id)
            if count:
                with self._lock:
                    self._hits += 1
                    self._guarded += int(refused > 0)
                    self._rejected += rejected
                    self._saved_usd += entry.response.cost_usd or 0.0
            return SemanticMatch(entry.response, similarity, entry.text)
        if count:
            with self._lock:
                self._misses += 1
                self._guarded += int(refused > 0)
                self._rejected += rejected
        return None

    @property
    def _check_markers(self) -> bool:
        """The old marker guards run unless the default verifier took them over."""
        return not isinstance(self.verifier, LexicalVerifier) and (
            self.guard_numbers or self.guard_negation
        )

    def _passes_guards(
        self, query: tuple[tuple[str, ...], int], stored: tuple[tuple[str, ...], int]
    ) -> bool:
        if self.guard_numbers and query[0] != stored[0]:
            return False
        return not (self.guard_negation and query[1] != stored[1])

    def _serve(self, ctx: CallContext, match: SemanticMatch) -> ChatResponse:
        return ctx.recorder.serve_without_provider(
            ctx, match.response, cache_status="hit", similarity=match.similarity
        )

    def _remember(self, plan: _Plan, vector: np.ndarray, response: ChatResponse) -> bool:
        if response.finish_reason not in _STORABLE:
            return False
        answer = stored_answer(response)
        now = self._clock()
        expires = now + plan.ttl if plan.ttl is not None else None
        self._insert(plan.partition, plan.text, vector, answer, now, expires)
        return True

    def _insert(
        self,
        partition: str,
        text: str,
        vector: np.ndarray,
        response: ChatResponse,
        created: float,
        expires: float | None,
    ) -> None:
        """Add an entry to the store (which evicts the least recently used beyond its bound)."""
        markers = same_meaning_markers(text)
        self.store.add(
            SemanticEntry(
                partition=partition,
                text=text,
                vector=vector,
                response=response,
                created=created,
                expires=expires,
                markers=markers,
            )
        )


def _build_verifier(
    verifier: PairVerifier | str | None, guard_numbers: bool, guard_negation: bool
) -> PairVerifier | None:
    """The verifier ``SemanticCache(verifier=...)`` names: "lexical" builds the default
    (without the numbers or negation check when their guard is off), None or "off" none."""
    if verifier is None or verifier == "off":
        return None
    if verifier == "lexical":
        dropped = {"numbers"} if not guard_numbers else set()
        dropped |= {"negation"} if not guard_negation else set()
        return LexicalVerifier(checks=[c for c in CHECKS if c not in dropped])
    if isinstance(verifier, str) or not isinstance(verifier, PairVerifier):
        raise ConfigError(
            f"semantic cache verifier={verifier!r} is invalid",
            hint='use "lexical" (the default), "off", or an object with '
            "accept(query, cached, similarity) -> bool",
        )
    return verifier
