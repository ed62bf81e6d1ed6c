"""Learned routers on prompt embeddings: kNN quality prediction (`KnnQuality`),
similarity-weighted Bradley-Terry ranking after RouteLLM (`SwRanking`), and trained
classifier / regressor models (`LogisticQuality`, `RidgeQuality`), each wrapped as a routing
policy of kind "learned" by `LearnedRouter` and trained on recorded outcomes by
`train_router`.

The policy class is imported eagerly (``policy_from_dict`` looks the kind up in this
module's namespace); numpy is the only heavy import, scikit-learn loads only to fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aigw_lab.policy.learned.base import QualityModel
from aigw_lab.policy.learned.classifier import LogisticQuality, RidgeQuality
from aigw_lab.policy.learned.knn import KnnQuality
from aigw_lab.policy.learned.router import (
    ROUTERS,
    Decision,
    LearnedRouter,
    default_target,
    train_router,
)
from aigw_lab.policy.learned.sw_ranking import SwRanking

__all__ = [
    "ROUTERS",
    "Decision",
    "LearnedRouter",
    "QualityModel",
    "KnnQuality",
    "SwRanking",
    "LogisticQuality",
    "RidgeQuality",
    "default_target",
    "train_router",
    "from_dict",
]


def from_dict(spec: Mapping[str, Any], *, artifacts: Path | None = None) -> LearnedRouter:
    """A `LearnedRouter` from its policy spec (kind "learned"); ``artifacts`` is the folder
    holding the ``.npz`` the spec names."""
    return LearnedRouter.from_dict(spec, artifacts=artifacts)
