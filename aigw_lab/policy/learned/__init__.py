"""Learned routers on prompt embeddings: kNN quality prediction (`KnnQuality`, and
`TunedKnnQuality` with similarity weights and k tuned on the training rows),
similarity-weighted Bradley-Terry ranking after RouteLLM (`SwRanking`), trained
classifier / regressor models (`LogisticQuality`, `RidgeQuality`), and the default,
`StackedQuality`: a meta-learner over cheap base routers (kNN, ridge, prompt length and
numbers, category encoding; `aigw_lab.policy.learned.stacked`), each wrapped as a routing
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
from aigw_lab.policy.learned.cheap import router_inputs, side_features
from aigw_lab.policy.learned.classifier import LogisticQuality, RidgeQuality
from aigw_lab.policy.learned.knn import KnnQuality
from aigw_lab.policy.learned.router import (
    DEFAULT_ROUTER,
    ROUTERS,
    Decision,
    LearnedRouter,
    default_target,
    inputs_for,
    train_router,
)
from aigw_lab.policy.learned.stacked import StackedQuality, TunedKnnQuality
from aigw_lab.policy.learned.sw_ranking import SwRanking

__all__ = [
    "DEFAULT_ROUTER",
    "ROUTERS",
    "Decision",
    "LearnedRouter",
    "QualityModel",
    "KnnQuality",
    "SwRanking",
    "LogisticQuality",
    "RidgeQuality",
    "TunedKnnQuality",
    "StackedQuality",
    "default_target",
    "inputs_for",
    "router_inputs",
    "side_features",
    "train_router",
    "from_dict",
]


def from_dict(spec: Mapping[str, Any], *, artifacts: Path | None = None) -> LearnedRouter:
    """A `LearnedRouter` from its policy spec (kind "learned"); ``artifacts`` is the folder
    holding the ``.npz`` the spec names."""
    return LearnedRouter.from_dict(spec, artifacts=artifacts)
