"""Analysis of the call log: per-target summaries with bootstrap intervals, paired
comparisons (one pair or every pair), quality per category, items ranked and detailed, the
cost-quality Pareto frontier, and tidy frames for figures.

Every function takes a `CallLog`, a DuckDB connection or a log file's path and aggregates in
DuckDB; definitions of every metric are in docs/analysis.md. `target_summary`,
`paired_comparison` and `cost_over_time` read rollups kept in the log and refreshed past a
watermark before each read (`refresh_rollups`; `aigw_lab.analysis.rollups`). Names are
imported lazily, so ``import aigw_lab.analysis`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "open_source": "aigw_lab.analysis._source",
    "refresh_rollups": "aigw_lab.analysis.rollups",
    "SUMMARY_COLUMNS": "aigw_lab.analysis.comparison",
    "target_summary": "aigw_lab.analysis.comparison",
    "paired_comparison": "aigw_lab.analysis.comparison",
    "unit_frame": "aigw_lab.analysis.frames",
    "latency_frame": "aigw_lab.analysis.frames",
    "errors_by_target": "aigw_lab.analysis.frames",
    "cost_over_time": "aigw_lab.analysis.frames",
    "experiments_frame": "aigw_lab.analysis.frames",
    "latest_experiment": "aigw_lab.analysis.frames",
    "pareto_frontier": "aigw_lab.analysis.pareto",
    "mark_frontier": "aigw_lab.analysis.pareto",
    "MeanCI": "aigw_lab.analysis.stats",
    "bootstrap_mean_ci": "aigw_lab.analysis.stats",
    "bootstrap_means": "aigw_lab.analysis.stats",
    "wilson_interval": "aigw_lab.analysis.breakdown",
    "item_quality": "aigw_lab.analysis.breakdown",
    "category_quality": "aigw_lab.analysis.breakdown",
    "pairwise_comparisons": "aigw_lab.analysis.breakdown",
    "item_ranking": "aigw_lab.analysis.items",
    "item_details": "aigw_lab.analysis.items",
    "prompt_text": "aigw_lab.analysis.items",
    "rank_items": "aigw_lab.analysis.items",
    "unit_spread": "aigw_lab.analysis.items",
    "SyntheticTarget": "aigw_lab.analysis.synthetic",
    "SyntheticExperiment": "aigw_lab.analysis.synthetic",
    "synthetic_experiment_log": "aigw_lab.analysis.synthetic",
}

__all__ = [
    "open_source",
    "refresh_rollups",
    "SUMMARY_COLUMNS",
    "target_summary",
    "paired_comparison",
    "unit_frame",
    "latency_frame",
    "errors_by_target",
    "cost_over_time",
    "experiments_frame",
    "latest_experiment",
    "pareto_frontier",
    "mark_frontier",
    "MeanCI",
    "bootstrap_mean_ci",
    "bootstrap_means",
    "wilson_interval",
    "item_quality",
    "category_quality",
    "pairwise_comparisons",
    "item_ranking",
    "item_details",
    "prompt_text",
    "rank_items",
    "unit_spread",
    "SyntheticTarget",
    "SyntheticExperiment",
    "synthetic_experiment_log",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.analysis._source import open_source
    from aigw_lab.analysis.breakdown import (
        category_quality,
        item_quality,
        pairwise_comparisons,
        wilson_interval,
    )
    from aigw_lab.analysis.comparison import SUMMARY_COLUMNS, paired_comparison, target_summary
    from aigw_lab.analysis.frames import (
        cost_over_time,
        errors_by_target,
        experiments_frame,
        latency_frame,
        latest_experiment,
        unit_frame,
    )
    from aigw_lab.analysis.items import (
        item_details,
        item_ranking,
        prompt_text,
        rank_items,
        unit_spread,
    )
    from aigw_lab.analysis.pareto import mark_frontier, pareto_frontier
    from aigw_lab.analysis.rollups import refresh_rollups
    from aigw_lab.analysis.stats import MeanCI, bootstrap_mean_ci, bootstrap_means
    from aigw_lab.analysis.synthetic import (
        SyntheticExperiment,
        SyntheticTarget,
        synthetic_experiment_log,
    )
