"""The cost-quality Pareto frontier: the targets no other target beats on both cost and
quality at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["pareto_frontier", "mark_frontier"]


def mark_frontier(
    summary: pd.DataFrame, *, cost: str = "cost_per_call", quality: str = "quality_mean"
) -> pd.DataFrame:
    """A copy of ``summary`` with a boolean ``on_frontier`` column.

    A target is on the frontier when no other target is at most as costly *and* at least as
    good, and strictly better on one of the two. Targets missing either value are never on
    it. Two targets with identical cost and quality are both on it.
    """
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    for column in (cost, quality):
        if column not in summary.columns:
            raise KeyError(f"summary has no column {column!r}; pass cost=/quality= to choose")
    costs = summary[cost].to_numpy(dtype=float)
    qualities = summary[quality].to_numpy(dtype=float)
    known = ~(np.isnan(costs) | np.isnan(qualities))
    # dominated[i] = some known j with cost_j <= cost_i, quality_j >= quality_i, and one strict.
    no_worse = (costs[None, :] <= costs[:, None]) & (qualities[None, :] >= qualities[:, None])
    strictly = (costs[None, :] < costs[:, None]) | (qualities[None, :] > qualities[:, None])
    dominated = (no_worse & strictly & known[None, :]).any(axis=1)
    marked = summary.copy()
    marked["on_frontier"] = known & ~dominated
    return marked


def pareto_frontier(
    summary: pd.DataFrame, *, cost: str = "cost_per_call", quality: str = "quality_mean"
) -> pd.DataFrame:
    """The non-dominated rows of ``summary`` (see `mark_frontier`), cheapest first: read
    down the frame to see what each extra dollar buys in quality."""
    marked = mark_frontier(summary, cost=cost, quality=quality)
    frontier = marked[marked["on_frontier"]].drop(columns="on_frontier")
    return frontier.sort_values([cost, quality], ascending=[True, False]).reset_index(drop=True)
