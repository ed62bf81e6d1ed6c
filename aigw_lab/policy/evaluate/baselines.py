"""Reference routers every learned router is compared with, from recorded outcomes only:
each single model, the zero router (random mixes of single models: their NDCH), the
per-item oracle, and RouteLLM's random router.

Arrays: ``quality`` and ``cost`` are (n items, m models) recorded scores and costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aigw_lab.policy.evaluate.metrics import nondecreasing_convex_hull, random_scores

__all__ = [
    "CostQualityPoint",
    "single_model_points",
    "zero_router_hull",
    "oracle_choice",
    "oracle_point",
    "random_scores",
]


@dataclass(frozen=True, slots=True)
class CostQualityPoint:
    """One operating point: mean cost in USD per query and mean quality."""

    label: str
    cost: float
    quality: float


def single_model_points(
    quality: np.ndarray, cost: np.ndarray, models: list[str] | tuple[str, ...]
) -> list[CostQualityPoint]:
    """Each model's (mean cost, mean quality) over the items."""
    return [
        CostQualityPoint(model, float(cost[:, j].mean()), float(quality[:, j].mean()))
        for j, model in enumerate(models)
    ]


def zero_router_hull(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """RouterBench's zero router: the NDCH of the single models' points (what mixing
    models at random, ignoring the prompt, can reach)."""
    return nondecreasing_convex_hull(cost.mean(axis=0), quality.mean(axis=0))


def oracle_choice(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per item, the cheapest model among those with the item's best recorded score."""
    best = quality >= quality.max(axis=1, keepdims=True)
    return np.argmin(np.where(best, cost, np.inf), axis=1)


def oracle_point(quality: np.ndarray, cost: np.ndarray) -> CostQualityPoint:
    """The oracle's (mean cost, mean quality): the best any router could do per item."""
    rows = np.arange(len(quality))
    choice = oracle_choice(quality, cost)
    return CostQualityPoint(
        "oracle", float(cost[rows, choice].mean()), float(quality[rows, choice].mean())
    )
