"""`LearnedRouter`: a routing policy that embeds the prompt and lets a trained quality model
pick the target, and `train_router`, which trains one on a `RecordedDataset`.

Two decision modes (the ``decision`` of the policy spec):

- ``{"mode": "threshold", "threshold": T}`` for two models: the strong model when the
  quality model's strong-win score is ``>= T``, else the weak one (RouteLLM's rule).
- ``{"mode": "lambda", "lambda": L}`` for any number of models: the target maximising
  predicted quality minus ``L`` times its expected cost in USD per query (input tokens
  estimated from the prompt, output tokens the target's mean on the training data, times
  the list prices in ``prices``); ties go to the cheaper target.

`aigw_lab.policy.calibrate` picks T or L for a target strong-call share, cost or quality.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from aigw_lab.embedding_cache import CachedEmbedder
from aigw_lab.embeddings import SentenceTransformerEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import Policy, RouteDecision
from aigw_lab.policy.learned.base import QualityModel
from aigw_lab.policy.learned.cheap import router_inputs
from aigw_lab.policy.learned.classifier import LogisticQuality, RidgeQuality
from aigw_lab.policy.learned.features import (
    embed_prompts,
    embedder_fingerprint,
    make_embedder,
    prompt_text,
)
from aigw_lab.policy.learned.knn import KnnQuality
from aigw_lab.policy.learned.stacked import StackedQuality, TunedKnnQuality
from aigw_lab.policy.learned.sw_ranking import SwRanking
from aigw_lab.policy.rules import request_category

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset
    from aigw_lab.embeddings import Embedder
    from aigw_lab.types import ChatRequest

__all__ = [
    "DEFAULT_ROUTER",
    "ROUTERS",
    "Decision",
    "LearnedRouter",
    "train_router",
    "default_target",
    "inputs_for",
]

#: Router name -> quality model class.
ROUTERS: Mapping[str, type[QualityModel]] = {
    cls.router: cls
    for cls in (
        KnnQuality,
        SwRanking,
        LogisticQuality,
        RidgeQuality,
        TunedKnnQuality,
        StackedQuality,
    )
}
#: The router `train_router` fits unless told otherwise: the best on cross-fitted
#: RouteLLM data (bench/router_study.py).
DEFAULT_ROUTER = StackedQuality.router
#: The prefix `train_router` gives recorded model names when no target map is given.
DEFAULT_TARGET_PREFIX = "rec/"
_TRAIN_IDS = "_train_ids"  # the artifact array holding the training item ids
_FINGERPRINT = "embedder_fingerprint"  # train info: what a derived embedder's vectors come from
_CHARS_PER_TOKEN = 4  # the recorded datasets' token estimate, aigw_lab.datasets.recorded
#: How many recent prompts a served router keeps the embeddings of (in memory only).
SERVING_MEMORY = 4096
_SCORED_KEPT = 3  # strong-win score arrays kept by `strong_scores_from`...
_SCORED_MIN_ROWS = 64  # ...for matrices of at least this many prompts


def default_target(model: str) -> str:
    """The gateway address a recorded model gets by default: ``rec/<model>``."""
    return f"{DEFAULT_TARGET_PREFIX}{model}"


@dataclass(frozen=True, slots=True)
class Decision:
    """How scores become a choice: ``mode`` "threshold" (two models) or "lambda"."""

    mode: str
    value: float

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Decision:
        mode = spec.get("mode") if isinstance(spec, Mapping) else None
        key = {"threshold": "threshold", "lambda": "lambda"}.get(str(mode))
        if key is None or not isinstance(spec.get(key), (int, float)):
            raise ConfigError(
                f"learned policy decision {dict(spec) if isinstance(spec, Mapping) else spec!r}"
                " is invalid",
                hint='use {"mode": "threshold", "threshold": T} or {"mode": "lambda", "lambda": L}',
            )
        return cls(str(mode), float(spec[key]))

    def to_spec(self) -> dict[str, Any]:
        return {"mode": self.mode, self.mode: self.value}


class LearnedRouter(Policy):
    """A policy of kind "learned": embed the prompt, score the targets, decide.

    ``model`` is a fitted `QualityModel` whose columns are ``targets`` in order; ``strong``
    and ``weak`` name the pair for threshold routing. ``prices`` maps each target to its
    (input, output) USD per million tokens and ``output_tokens`` to its expected output
    tokens, for the cost term of lambda routing. ``embedder`` is the embedding model's name;
    pass ``embedder_instance`` to reuse a loaded one (tests pass a `HashingEmbedder`).
    ``train_ids`` are the ids of the training items, kept so evaluations can exclude them.
    """

    kind: ClassVar[str] = "learned"

    def __init__(
        self,
        name: str,
        model: QualityModel,
        *,
        targets: Sequence[str],
        decision: Decision,
        strong: str | None = None,
        weak: str | None = None,
        prices: Mapping[str, Sequence[float]] | None = None,
        output_tokens: Mapping[str, float] | None = None,
        embedder: str = "all-MiniLM-L6-v2",
        train: Mapping[str, Any] | None = None,
        train_ids: Sequence[str] | None = None,
        embedder_instance: Embedder | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._targets = tuple(targets)
        if len(self._targets) < 2 or len(set(self._targets)) != len(self._targets):
            raise ConfigError(
                f"learned policy {name!r} needs two or more distinct targets, got {self._targets}",
                hint="list each candidate address once",
            )
        self.strong, self.weak = strong, weak
        self.decision = self._checked(decision)
        self.prices = {t: (float(p[0]), float(p[1])) for t, p in (prices or {}).items()}
        self.output_tokens = {t: float(n) for t, n in (output_tokens or {}).items()}
        self.embedder_name = embedder
        self.train_info = dict(train or {})
        #: The items the router was trained on (saved in the artifact), so an evaluation
        #: can refuse them.
        self.train_ids = tuple(train_ids) if train_ids is not None else None
        self._embedder = embedder_instance
        self._embedder_lock = threading.Lock()  # concurrent first calls load one model
        self._scored: list[tuple[np.ndarray, np.ndarray]] = []  # see strong_scores_from
        self._decide_thread: ThreadPoolExecutor | None = None  # see adecide
        # See _one_torch_thread; a dict so that `with_decision` twins, which share the
        # deciding thread, share it too.
        self._torch_state: dict[str, Any] = {"limited": False, "default": None}

    # --- the Policy contract ------------------------------------------------------------------

    def targets(self) -> tuple[str, ...]:
        return self._targets

    def decide(self, request: ChatRequest) -> RouteDecision:
        text = prompt_text(request)
        X = self._inputs(self.embedder.embed([text]), [text], [request_category(request)])
        quality = self.model.predict(X)[0]
        scores = {t: float(q) for t, q in zip(self._targets, quality, strict=True)}
        if self.decision.mode == "threshold":
            score = float(self.strong_scores_from(X)[0])
            strong = score >= self.decision.value
            target = self.strong if strong else self.weak
            sign = ">=" if strong else "<"
            reason = f"{self.model.router}: strong-win {score:.3f} {sign} {self.decision.value:.3f}"
            return RouteDecision(str(target), reason, scores)
        index = int(self.choose_from(X, [text])[0])
        reason = f"{self.model.router}: max quality - {self.decision.value:g} x cost"
        return RouteDecision(self._targets[index], reason, scores)

    async def adecide(self, request: ChatRequest) -> RouteDecision:
        # Embedding a prompt takes tens of milliseconds of CPU: off the event loop, so the
        # server keeps serving other requests meanwhile. Always the same one thread: torch
        # starts a pool of OpenMP threads per calling thread, and embedding from a changing
        # set of pool threads (asyncio.to_thread) made each request 10x slower and 7x
        # costlier in CPU on a busy 2-core machine (bench/bench_served_policy.py).
        loop = asyncio.get_running_loop()
        decision = await loop.run_in_executor(self._decider(), self._decide_on_own_thread, request)
        self._restore_torch_default()
        return decision

    def _decide_on_own_thread(self, request: ChatRequest) -> RouteDecision:
        decision = self.decide(request)
        self._one_torch_thread()
        return decision

    def _one_torch_thread(self) -> None:
        """On the deciding thread, once torch is loaded: use one intra-op thread. One prompt
        is too little work to split, and two OpenMP threads waiting on each other cost 2-5x
        the CPU of one in bench/bench_served_policy.py. ``OMP_NUM_THREADS``, when set, wins.
        torch keeps this per thread but also makes it the default of threads started later;
        the caller restores that default (`_restore_torch_default`)."""
        torch = sys.modules.get("torch")
        state = self._torch_state
        if state["limited"] or torch is None or "OMP_NUM_THREADS" in os.environ:
            return
        state["limited"] = True
        state["default"] = torch.get_num_threads()
        torch.set_num_threads(1)

    def _restore_torch_default(self) -> None:
        default, self._torch_state["default"] = self._torch_state["default"], None
        torch = sys.modules.get("torch")
        if default is not None and torch is not None:
            torch.set_num_threads(default)  # this thread's value and later threads' default

    def _decider(self) -> ThreadPoolExecutor:
        if self._decide_thread is None:
            with self._embedder_lock:
                if self._decide_thread is None:
                    self._decide_thread = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix=f"aigw-policy-{self.name[:20]}"
                    )
        return self._decide_thread

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "router": self.model.router,
            "targets": list(self._targets),
            "strong": self.strong,
            "weak": self.weak,
            "decision": self.decision.to_spec(),
            "prices": {t: list(p) for t, p in self.prices.items()},
            "output_tokens": dict(self.output_tokens),
            "embedder": self.embedder_name,
            "artifact": self.artifact_name,
            "router_params": self.model.params(),
            "train": dict(self.train_info),
        }

    @property
    def artifact_name(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        return f"{safe}.npz"

    def save_artifacts(self, folder: Path) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.artifact_name
        arrays = dict(self.model.arrays())
        if self.train_ids is not None:
            arrays[_TRAIN_IDS] = np.array(self.train_ids, dtype=str)
        np.savez_compressed(path, **arrays)
        return [path]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> LearnedRouter:
        router = spec.get("router")
        model_cls = ROUTERS.get(str(router))
        if model_cls is None:
            raise ConfigError(
                f"learned policy {spec.get('name')!r} has unknown router {router!r}",
                hint=f"use one of {', '.join(ROUTERS)}",
            )
        artifact = spec.get("artifact")
        path = (Path(artifacts) if artifacts is not None else Path.cwd()) / str(artifact)
        if not artifact or not path.is_file():
            raise ConfigError(
                f"learned policy {spec.get('name')!r}: its artifact {path} is missing",
                hint="keep the .npz written by save_policy beside the policy file",
            )
        with np.load(path) as saved:
            arrays = {key: saved[key] for key in saved.files}
        train_ids = arrays.pop(_TRAIN_IDS, None)
        model = model_cls.from_state(spec.get("router_params") or {}, arrays)
        return cls(
            str(spec.get("name", "learned")),
            model,
            targets=list(spec.get("targets") or []),
            decision=Decision.from_spec(spec.get("decision") or {}),
            strong=spec.get("strong"),
            weak=spec.get("weak"),
            prices=spec.get("prices") or {},
            output_tokens=spec.get("output_tokens") or {},
            embedder=str(spec.get("embedder") or "all-MiniLM-L6-v2"),
            train=spec.get("train") or {},
            train_ids=None if train_ids is None else [str(i) for i in train_ids],
        )

    # --- batch scoring (evaluation) -------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The embedder, built from ``embedder_name`` on first use (its model loads on its
        first `embed`, or in `warm_up`). It remembers the last `SERVING_MEMORY` prompts in
        memory, never on disk: served prompts are users' data."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    model = make_embedder(self.embedder_name)
                    self._check_fingerprint(model)
                    self._embedder = CachedEmbedder(model, None, memory=SERVING_MEMORY)
        return self._embedder

    def _check_fingerprint(self, embedder: Embedder) -> None:
        """A derived embedder (the static one) must be the distillation the policy was
        trained with: the same name from other source weights or another model2vec makes
        other vectors, which the kNN matrix would be compared with silently."""
        recorded = self.train_info.get(_FINGERPRINT)
        if not recorded:
            return
        current = embedder_fingerprint(embedder)
        if current is not None and current != recorded:
            raise ConfigError(
                f"policy {self.name!r} was trained with the {self.embedder_name!r} "
                f"distillation {str(recorded)[:40]!r}, and this machine's is {current!r} "
                "(other source weights, parameters or model2vec version)",
                hint="install the versions the policy was trained with, or retrain it here",
            )

    def warm_up(self) -> None:
        """Load the embedding model and route one prompt, so the first real request does
        not pay for the model load (a server calls this before it reports ready)."""
        # On the thread `adecide` embeds on, so its torch thread pool is started too.
        self._decider().submit(self._warm_up).result()
        self._restore_torch_default()

    def _warm_up(self) -> None:
        probe = "Warm-up: what is 2 + 2?"
        embedder = self.embedder
        warm = getattr(embedder, "warm", None)
        if warm is not None:
            warm()  # runs the model itself, not an in-memory hit
        X = self._inputs(embedder.embed([probe]), [probe], None)
        self.choose_from(X, [probe])
        self._one_torch_thread()

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        if embedder.name != self.embedder_name:
            raise ConfigError(
                f"policy {self.name!r} was trained on {self.embedder_name!r} embeddings, "
                f"not {embedder.name!r}",
                hint="use the embedder the policy names",
            )
        self._check_fingerprint(embedder)
        self._embedder = embedder

    def with_decision(self, decision: Decision) -> LearnedRouter:
        """The same router with another decision rule (the fitted model is shared)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.decision = self._checked(decision)
        return twin

    def _checked(self, decision: Decision) -> Decision:
        if decision.mode == "threshold" and (
            self.strong not in self._targets
            or self.weak not in self._targets
            or self.strong == self.weak
        ):
            raise ConfigError(
                f"learned policy {self.name!r}: threshold routing needs strong and weak among "
                f"its targets (got strong={self.strong!r}, weak={self.weak!r})",
                hint="set strong and weak to two of the targets, or use lambda routing",
            )
        return decision

    def embed(
        self,
        prompts: Sequence[str],
        *,
        categories: Sequence[str | None] | None = None,
        cache_dir: str | Path | None = None,
    ) -> np.ndarray:
        """The model's input rows for a batch of ``prompts`` (evaluation, calibration):
        their embeddings, through the on-disk embedding cache in ``cache_dir`` (default
        `default_cache_dir`), followed for a side-feature router (``stacked``) by the
        prompts' length, numbers and ``categories`` (None: unknown, as for a served request
        without ``tags["category"]``). Routing a request (`decide`) never writes to that
        cache: served prompts are users' data."""
        X = embed_prompts(prompts, self.embedder, cache_dir=cache_dir, label=self.name)
        return self._inputs(X, prompts, categories)

    def _inputs(
        self,
        X: np.ndarray,
        prompts: Sequence[str],
        categories: Sequence[str | None] | None,
    ) -> np.ndarray:
        if getattr(self.model, "side_features", False):
            return router_inputs(X, prompts, categories)
        return X

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """Strong-win scores (threshold routing) or predicted quality per target (q, m)."""
        X = self.embed(prompts)
        if self.decision.mode == "threshold":
            return self.strong_scores_from(X)
        return self.model.predict(X)

    def strong_scores_from(self, X: np.ndarray) -> np.ndarray:
        """Strong-win scores of prompts already embedded."""
        if self.strong is None or self.weak is None:
            raise ConfigError(
                f"learned policy {self.name!r} has no strong/weak pair",
                hint="train it with strong= and weak= for threshold routing",
            )
        # Calibration and evaluation score the same held-out matrix several times (a kNN
        # pass over MMLU's test items takes seconds): the last few results are kept, keyed by
        # the array object itself (held here, so its identity cannot be reused meanwhile).
        # A served request's one row is never kept.
        batch = len(X) >= _SCORED_MIN_ROWS
        for seen, scores in self._scored if batch else ():
            if seen is X:
                return scores.copy()
        index = self._targets.index
        scores = self.model.strong_score(X, index(self.strong), index(self.weak))
        if batch:
            self._scored[:] = [*self._scored[-(_SCORED_KEPT - 1) :], (X, scores.copy())]
        return scores

    def expected_costs(self, prompts: Sequence[str]) -> np.ndarray:
        """(q, m) expected USD per query: estimated input tokens and each target's mean
        output tokens, times its prices (0 for a target without a price)."""
        tokens_in = np.array([math.ceil(len(p) / _CHARS_PER_TOKEN) for p in prompts], float)
        p_in = np.array([self.prices.get(t, (0.0, 0.0))[0] for t in self._targets])
        p_out = np.array([self.prices.get(t, (0.0, 0.0))[1] for t in self._targets])
        tokens_out = np.array([self.output_tokens.get(t, 0.0) for t in self._targets])
        return (tokens_in[:, None] * p_in[None, :] + (tokens_out * p_out)[None, :]) / 1e6

    def choose_from(self, X: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """The chosen target index per prompt under this router's decision rule."""
        if self.decision.mode == "threshold":
            strong = self.strong_scores_from(X) >= self.decision.value
            index = self._targets.index
            return np.where(strong, index(str(self.strong)), index(str(self.weak)))
        return choose_by_lambda(
            self.model.predict(X), self.expected_costs(prompts), self.decision.value
        )


def choose_by_lambda(quality: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Per row, the column maximising ``quality - lam * costs``; ties go to the cheaper."""
    utility = quality - lam * costs
    best = utility >= utility.max(axis=1, keepdims=True) - 1e-12
    return np.argmin(np.where(best, costs, np.inf), axis=1)


def inputs_for(router: str, data: RecordedDataset, embeddings: np.ndarray) -> np.ndarray:
    """What a ``router`` is fitted and scored on for ``data``'s items: their
    ``embeddings`` (one row per item, in order), followed for a side-feature router
    (``stacked``) by each item's prompt length, numbers and category. Pass the result to
    `aigw_lab.policy.evaluate.offline.out_of_fold` or `train_router`'s ``embeddings``."""
    model_cls = ROUTERS.get(router)
    if model_cls is not None and getattr(model_cls, "side_features", False):
        return router_inputs(
            embeddings, [i.prompt for i in data.items], [i.category for i in data.items]
        )
    return embeddings


def train_router(
    data: RecordedDataset,
    router: str = DEFAULT_ROUTER,
    *,
    name: str | None = None,
    targets: Mapping[str, str] | None = None,
    models: Sequence[str] | None = None,
    strong: str | None = None,
    weak: str | None = None,
    decision: Decision | None = None,
    embedder: Embedder | None = None,
    embeddings: np.ndarray | None = None,
    cache_dir: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
) -> LearnedRouter:
    """Fit a learned router on every item of ``data`` (pass the *training* split).

    ``models`` are the candidate recorded models (default: all with labels); ``targets`` maps
    each to its gateway address (default ``rec/<model>``). ``strong``/``weak`` (model names)
    make it a two-model threshold router (default: the two models when there are exactly
    two, the better-scoring one as strong, unless ``decision`` is a lambda rule).
    ``embeddings`` skips embedding (one row per item; they must come from ``embedder``,
    default MiniLM, which the policy will embed requests with); else ``embedder`` embeds
    the prompts, cached in ``cache_dir``.
    ``decision`` defaults to threshold 0.5 (two models) or lambda 0: calibrate it
    (`aigw_lab.policy.calibrate`) for a target share, budget or quality.
    ``router`` defaults to `DEFAULT_ROUTER` (``stacked``), which also reads each item's
    prompt length, numbers and ``category`` (`inputs_for`).
    """
    model_cls = ROUTERS.get(router)
    if model_cls is None:
        raise ConfigError(f"unknown router {router!r}", hint=f"use one of {', '.join(ROUTERS)}")
    wide = data.wide_scores()
    chosen = (
        list(models) if models is not None else [m for m in data.models if wide[m].notna().any()]
    )
    unknown = [m for m in chosen if m not in data.models]
    if unknown:
        raise ConfigError(
            f"{data.name!r} has no recordings of {', '.join(unknown)}",
            hint=f"use models among {', '.join(data.models)}",
        )
    wants_pair = decision is None or decision.mode == "threshold"
    if strong is None and weak is None and len(chosen) == 2 and wants_pair:
        means = wide[chosen].mean()
        strong, weak = str(means.idxmax()), str(means.idxmin())
    for role, model in (("strong", strong), ("weak", weak)):
        if model is not None and model not in chosen:
            raise ConfigError(
                f"{role} model {model!r} is not a candidate", hint=f"use one of {chosen}"
            )
    address = {m: (targets or {}).get(m, default_target(m)) for m in chosen}
    if embeddings is None:
        embedder = embedder or SentenceTransformerEmbedder()
        embeddings = embed_prompts(
            [item.prompt for item in data.items], embedder, cache_dir=cache_dir, label=data.name
        )
    fingerprint = embedder_fingerprint(embedder) if embedder is not None else None
    embeddings = inputs_for(router, data, embeddings)
    Y = wide[chosen].to_numpy(dtype=float)
    pair = (chosen.index(strong), chosen.index(weak)) if strong and weak else None
    fitted = model_cls(**dict(params or {})).fit(embeddings, Y, pair=pair)
    if decision is None:
        decision = Decision("threshold", 0.5) if pair else Decision("lambda", 0.0)
    output_tokens = data.outcomes.groupby("model")["output_tokens"].mean()
    return LearnedRouter(
        name or f"{data.name}-{router}",
        fitted,
        targets=[address[m] for m in chosen],
        decision=decision,
        strong=address[strong] if strong else None,
        weak=address[weak] if weak else None,
        prices={
            address[m]: (data.prices[m].input_per_mtok, data.prices[m].output_per_mtok)
            for m in chosen
            if m in data.prices
        },
        output_tokens={
            address[m]: float(output_tokens.get(m)) if _is_number(output_tokens.get(m)) else 0.0
            for m in chosen
        },
        embedder=embedder.name if embedder is not None else "all-MiniLM-L6-v2",
        train={
            "source": data.source,
            "items": len(data),
            "models": chosen,
            **({_FINGERPRINT: fingerprint} if fingerprint else {}),
        },
        train_ids=data.ids,
        embedder_instance=embedder,
    )


def _is_number(value: Any) -> bool:
    try:
        return value is not None and not math.isnan(float(value))
    except (TypeError, ValueError):
        return False
