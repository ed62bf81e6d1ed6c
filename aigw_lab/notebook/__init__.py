"""Notebook views of the call log, experiments and routing thresholds: plotly figures and
ipywidgets views. They need the ``notebook`` extra (``pip install "aigw-lab[notebook]"``):
without it, the first use of a view (``aigw_lab.notebook.cost_bars``, ``from aigw_lab.notebook
import ComparisonDashboard``, importing one of its modules) raises one `MissingExtraError`
naming that command. `target_colors` needs neither (it lives in `aigw_lab.palette`).

Names are imported lazily, so ``import aigw_lab.notebook`` pulls in neither plotly nor
pandas, and works without the extra. ``cost_over_time`` here is the figure;
`aigw_lab.analysis.cost_over_time` is the frame it draws. To add a view, define it in a module
of this package (starting with the extra's check, as the others do) and list it in
``_EXPORTS``, ``__all__`` and the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports
from aigw_lab.extras import require_notebook

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "target_colors": "aigw_lab.palette",
    "latency_distribution": "aigw_lab.notebook.figures",
    "cost_bars": "aigw_lab.notebook.figures",
    "quality_vs_cost": "aigw_lab.notebook.figures",
    "error_breakdown": "aigw_lab.notebook.figures",
    "cost_over_time": "aigw_lab.notebook.figures",
    "ComparisonDashboard": "aigw_lab.notebook.widgets",
    "ExperimentProgressView": "aigw_lab.notebook.widgets",
    "LogExplorer": "aigw_lab.notebook.log_explorer",
    "threshold_curve": "aigw_lab.notebook.routing",
    "routing_tradeoff": "aigw_lab.notebook.routing",
    "ThresholdExplorer": "aigw_lab.notebook.routing",
}

__all__ = [
    "target_colors",
    "latency_distribution",
    "cost_bars",
    "quality_vs_cost",
    "error_breakdown",
    "cost_over_time",
    "ComparisonDashboard",
    "ExperimentProgressView",
    "LogExplorer",
    "threshold_curve",
    "routing_tradeoff",
    "ThresholdExplorer",
]

_load, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

#: The names that work without the ``notebook`` extra.
_PLAIN = frozenset({"target_colors"})


def __getattr__(name: str) -> object:
    """A view, imported on first use once the ``notebook`` extra is found installed."""
    if name in _EXPORTS and name not in _PLAIN:
        require_notebook(f"aigw_lab.notebook.{name}")
    return _load(name)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.notebook.figures import (
        cost_bars,
        cost_over_time,
        error_breakdown,
        latency_distribution,
        quality_vs_cost,
    )
    from aigw_lab.notebook.log_explorer import LogExplorer
    from aigw_lab.notebook.routing import ThresholdExplorer, routing_tradeoff, threshold_curve
    from aigw_lab.notebook.widgets import ComparisonDashboard, ExperimentProgressView
    from aigw_lab.palette import target_colors
