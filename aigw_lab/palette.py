"""Colours per target: one colour each, the same in the report's charts and the notebook
views, assigned from the sorted names so a target keeps its colour across figures.

Plain strings, no plotly: the report draws its charts without the plotly package (the
notebook views need it and come with the ``notebook`` extra), and both use these colours.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PALETTE", "target_colors"]

#: Plotly's default qualitative palette extended with D3's, so up to 20 targets stay distinct.
PALETTE: tuple[str, ...] = (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A",
    "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD",
    "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF",
)  # fmt: skip


def target_colors(targets: Iterable[str]) -> dict[str, str]:
    """One colour per target, assigned in sorted order (cycling after 20 targets)."""
    names = sorted({str(t) for t in targets})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
