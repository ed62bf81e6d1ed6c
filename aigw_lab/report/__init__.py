"""Reports of the call log: `write_report` writes one experiment as a self-contained HTML
file (also ``aigw-lab report``). Imported lazily: pandas and DuckDB load on first use. The
report needs no plotly package (its figures are plotly JSON it writes itself, drawn by the
plotly.js it embeds), so it works on the core install."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "write_report": "aigw_lab.report.html",
    "CHART_IDS": "aigw_lab.report.html",
}

__all__ = ["write_report", "CHART_IDS"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.report.html import CHART_IDS, write_report
