"""Offline evaluation of routers from recorded outcomes: RouteLLM's APGR / CPT and
RouterBench's NDCH / AIQ (`metrics`), the zero-router, oracle and random baselines
(`baselines`), held-out and cross-fitted evaluation (`offline`), a router beside random
routing, the zero router, the oracle and trivial baselines, cross-fitted over several fold
seeds (`crossfit`, `trivial`, `crossfit_many`; `compare_with_baselines` (two models, APGR)
and `compare_many_models` (AIQ) are the entry points, `format_baseline_table` prints their
result), and the script that regenerates docs/routing.md's
results (`python -m aigw_lab.policy.evaluate.report`).

Names are imported lazily, so ``import aigw_lab.policy.evaluate`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "MetricCI": "aigw_lab.policy.evaluate.metrics",
    "SweepCurve": "aigw_lab.policy.evaluate.metrics",
    "pgr": "aigw_lab.policy.evaluate.metrics",
    "threshold_sweep": "aigw_lab.policy.evaluate.metrics",
    "apgr": "aigw_lab.policy.evaluate.metrics",
    "cpt": "aigw_lab.policy.evaluate.metrics",
    "oracle_curve": "aigw_lab.policy.evaluate.metrics",
    "nondecreasing_convex_hull": "aigw_lab.policy.evaluate.metrics",
    "aiq": "aigw_lab.policy.evaluate.metrics",
    "bootstrap_metric": "aigw_lab.policy.evaluate.metrics",
    "zero_router_hull": "aigw_lab.policy.evaluate.baselines",
    "oracle_point": "aigw_lab.policy.evaluate.baselines",
    "TwoModelResult": "aigw_lab.policy.evaluate.offline",
    "CostQualityResult": "aigw_lab.policy.evaluate.offline",
    "evaluate_router": "aigw_lab.policy.evaluate.offline",
    "evaluate_two_model": "aigw_lab.policy.evaluate.offline",
    "evaluate_cost_quality": "aigw_lab.policy.evaluate.offline",
    "out_of_fold": "aigw_lab.policy.evaluate.offline",
    "compare_with_baselines": "aigw_lab.policy.evaluate.crossfit",
    "compare_many_models": "aigw_lab.policy.evaluate.crossfit_many",
    "BaselineComparison": "aigw_lab.policy.evaluate.comparison_table",
    "BaselineRow": "aigw_lab.policy.evaluate.comparison_table",
    "format_baseline_table": "aigw_lab.policy.evaluate.comparison_table",
}

__all__ = [
    "MetricCI",
    "SweepCurve",
    "pgr",
    "threshold_sweep",
    "apgr",
    "cpt",
    "oracle_curve",
    "nondecreasing_convex_hull",
    "aiq",
    "bootstrap_metric",
    "zero_router_hull",
    "oracle_point",
    "TwoModelResult",
    "CostQualityResult",
    "evaluate_router",
    "evaluate_two_model",
    "evaluate_cost_quality",
    "out_of_fold",
    "compare_with_baselines",
    "compare_many_models",
    "BaselineComparison",
    "BaselineRow",
    "format_baseline_table",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.policy.evaluate.baselines import oracle_point, zero_router_hull
    from aigw_lab.policy.evaluate.comparison_table import (
        BaselineComparison,
        BaselineRow,
        format_baseline_table,
    )
    from aigw_lab.policy.evaluate.crossfit import compare_with_baselines
    from aigw_lab.policy.evaluate.crossfit_many import compare_many_models
    from aigw_lab.policy.evaluate.metrics import (
        MetricCI,
        SweepCurve,
        aiq,
        apgr,
        bootstrap_metric,
        cpt,
        nondecreasing_convex_hull,
        oracle_curve,
        pgr,
        threshold_sweep,
    )
    from aigw_lab.policy.evaluate.offline import (
        CostQualityResult,
        TwoModelResult,
        evaluate_cost_quality,
        evaluate_router,
        evaluate_two_model,
        out_of_fold,
    )
