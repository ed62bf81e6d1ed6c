"""Offline evaluations of gateway features against labelled public data (notebook-ready
DataFrames and tables). Importing this package is cheap: each module loads when first used.

- `semantic_cache_eval`: GPTCache's protocol and threshold tables on the shared data.
- `pairs`: labelled prompt pairs (users' JSONL files, the bundled held-out near-miss test
  set) and `Rate`, a proportion with its Wilson 95% interval.
- `cache_runs`: pairs measured end to end through a real `SemanticCache`, per variant.
- `budget`: the setting that meets a false-hit budget (``aigw-lab cache tune``).
- `near_miss_report`: the published measurement in docs/semantic_cache.md.
"""

from __future__ import annotations

from aigw_lab._lazy import lazy_exports

_EXPORTS = {
    **{
        name: "aigw_lab.evaluation.semantic_cache_eval"
        for name in (
            "GPTCACHE_PUBLISHED",
            "gptcache_protocol",
            "load_mock_pairs",
            "load_qqp_pairs",
            "shared_data_dir",
            "threshold_table",
        )
    },
    **{
        name: "aigw_lab.evaluation.pairs"
        for name in (
            "NEAR_MISS_CATEGORIES",
            "LabelledPair",
            "Rate",
            "load_development_pairs",
            "load_labelled_pairs",
            "load_near_miss_test",
        )
    },
    **{
        name: "aigw_lab.evaluation.cache_runs"
        for name in ("CacheVariant", "cache_variants", "served", "overall_rates", "rate_table")
    },
    **{
        name: "aigw_lab.evaluation.budget"
        for name in ("BudgetChoice", "BudgetSetting", "setting_for_false_hit_budget")
    },
}
__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
