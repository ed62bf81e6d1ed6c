"""Offline evaluations of gateway features against labelled public data (notebook-ready
DataFrames). Importing this package is cheap: each module imports pandas when it runs."""

from __future__ import annotations

from aigw_lab._lazy import lazy_exports

__all__ = [
    "GPTCACHE_PUBLISHED",
    "gptcache_protocol",
    "load_mock_pairs",
    "load_qqp_pairs",
    "shared_data_dir",
    "threshold_table",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {name: "aigw_lab.evaluation.semantic_cache_eval" for name in __all__},
    globals(),
)
