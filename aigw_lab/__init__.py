"""aigw_lab: AI gateway primitives and a Jupyter toolkit.

    from aigw_lab import Gateway
    gw = Gateway.simulated_fleet(log="calls.duckdb")      # offline, simulated fleet
    gw.chat("sim-openai/sim-small", "What is 2 + 2?").text
    gw.summary()                                     # from SQL over the call log

Names are imported lazily, so ``import aigw_lab`` stays fast (no DuckDB, pandas or torch
until they are needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Gateway": "aigw_lab.gateway",
    "ChatStream": "aigw_lab.gateway",
    "AsyncChatStream": "aigw_lab.gateway",
    "Middleware": "aigw_lab.gateway",
    "CallContext": "aigw_lab.gateway",
    "Retry": "aigw_lab.gateway",
    "RetryPolicy": "aigw_lab.gateway",
    "Fallbacks": "aigw_lab.gateway",
    "HealthTracker": "aigw_lab.gateway",
    "CircuitOpenError": "aigw_lab.gateway",
    "ExactCache": "aigw_lab.gateway",
    "MemoryStore": "aigw_lab.gateway",
    "DuckDBStore": "aigw_lab.gateway",
    "Budget": "aigw_lab.gateway",
    "Limit": "aigw_lab.gateway",
    "RateLimiter": "aigw_lab.gateway",
    "RateLimitRule": "aigw_lab.gateway",
    "Shadow": "aigw_lab.gateway",
    "SemanticCache": "aigw_lab.gateway.semantic_cache",
    "SentenceTransformerEmbedder": "aigw_lab.embeddings",
    "HashingEmbedder": "aigw_lab.embeddings",
    "ChatRequest": "aigw_lab.types",
    "ChatResponse": "aigw_lab.types",
    "Message": "aigw_lab.types",
    "ContentPart": "aigw_lab.types",
    "Usage": "aigw_lab.types",
    "Latency": "aigw_lab.types",
    "TextDelta": "aigw_lab.types",
    "StreamEnd": "aigw_lab.types",
    "Provider": "aigw_lab.providers.base",
    "ProviderSpec": "aigw_lab.providers.base",
    "Price": "aigw_lab.providers.base",
    "HttpClients": "aigw_lab.providers.base",
    "PriceBook": "aigw_lab.pricing",
    "UnknownPriceWarning": "aigw_lab.pricing",
    "GatewayConfig": "aigw_lab.config",
    "load_config": "aigw_lab.config",
    "CallLog": "aigw_lab.store",
    "CallRecord": "aigw_lab.store.records",
    "AigwError": "aigw_lab.errors",
    "ConfigError": "aigw_lab.errors",
    "UnknownProviderError": "aigw_lab.errors",
    "UnknownModelError": "aigw_lab.errors",
    "MissingAPIKeyError": "aigw_lab.errors",
    "MissingExtraError": "aigw_lab.errors",
    "StoreError": "aigw_lab.errors",
    "ProviderError": "aigw_lab.errors",
    "RateLimitedError": "aigw_lab.errors",
    "QuotaExceededError": "aigw_lab.errors",
    "InvalidRequestError": "aigw_lab.errors",
    "ContextLengthExceededError": "aigw_lab.errors",
    "AuthenticationError": "aigw_lab.errors",
    "ContentFilteredError": "aigw_lab.errors",
    "ProviderServerError": "aigw_lab.errors",
    "OverloadedError": "aigw_lab.errors",
    "NetworkError": "aigw_lab.errors",
    "ProviderTimeoutError": "aigw_lab.errors",
    "MalformedResponseError": "aigw_lab.errors",
    "StreamInterruptedError": "aigw_lab.errors",
    "BudgetExceededError": "aigw_lab.errors",
    "AllAttemptsFailedError": "aigw_lab.errors",
    "SharedStateUnavailableError": "aigw_lab.errors",
    "TeamLogFullError": "aigw_lab.errors",
    # experiments: datasets, recorded outcomes, scorers, the runner, the analysis
    "Dataset": "aigw_lab.datasets",
    "DatasetItem": "aigw_lab.datasets",
    "bundled_dataset": "aigw_lab.datasets",
    "dataset_from_log": "aigw_lab.datasets",
    "RecordedDataset": "aigw_lab.datasets",
    "ReplayProvider": "aigw_lab.sim.replay",
    "Score": "aigw_lab.scorers",
    "Scorer": "aigw_lab.scorers",
    "build_scorer": "aigw_lab.scorers",
    "record_feedback": "aigw_lab.store.scores",
    "Experiment": "aigw_lab.experiments",
    "Target": "aigw_lab.experiments",
    "ExperimentResult": "aigw_lab.experiments",
    "run_experiment": "aigw_lab.experiments",
    "arun_experiment": "aigw_lab.experiments",
    "target_summary": "aigw_lab.analysis",
    "paired_comparison": "aigw_lab.analysis",
    "pareto_frontier": "aigw_lab.analysis",
    "write_report": "aigw_lab.report",
    # provider batch jobs (OpenAI, Anthropic) at the batch discount
    "submit_batch": "aigw_lab.batch",
    "BatchJob": "aigw_lab.batch",
    # cache warming: plan (prompts, free answers, estimated cost), then fill the caches
    "plan_warming": "aigw_lab.experiments",
    "warm": "aigw_lab.experiments",
    "WarmingPlan": "aigw_lab.experiments",
    "WarmingReport": "aigw_lab.experiments",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.analysis import paired_comparison, pareto_frontier, target_summary
    from aigw_lab.batch import BatchJob, submit_batch
    from aigw_lab.config import GatewayConfig, load_config
    from aigw_lab.datasets import (
        Dataset,
        DatasetItem,
        RecordedDataset,
        bundled_dataset,
        dataset_from_log,
    )
    from aigw_lab.errors import *  # noqa: F403
    from aigw_lab.experiments import (
        Experiment,
        ExperimentResult,
        Target,
        WarmingPlan,
        WarmingReport,
        arun_experiment,
        plan_warming,
        run_experiment,
        warm,
    )
    from aigw_lab.gateway import AsyncChatStream, CallContext, ChatStream, Gateway, Middleware
    from aigw_lab.pricing import PriceBook, UnknownPriceWarning
    from aigw_lab.providers.base import HttpClients, Price, Provider, ProviderSpec
    from aigw_lab.report import write_report
    from aigw_lab.scorers import Score, Scorer, build_scorer
    from aigw_lab.sim.replay import ReplayProvider
    from aigw_lab.store import CallLog
    from aigw_lab.store.records import CallRecord
    from aigw_lab.store.scores import record_feedback
    from aigw_lab.types import (
        ChatRequest,
        ChatResponse,
        ContentPart,
        Latency,
        Message,
        StreamEnd,
        TextDelta,
        Usage,
    )
