"""Similarity-weighted (SW) ranking, after RouteLLM (Ong et al. 2024, section 4.1).

RouteLLM's SW ranking needs no training: every training prompt is a recorded *comparison*
between models (here: model a beats model b on that prompt when its recorded score is
higher; equal scores are a tie, counted half a win each, as RouteLLM's Elo code counts
ties). For a new prompt q, each training prompt i gets the weight

    w_i = gamma ** (1 + S(q, q_i)),   S(q, q_i) = cos(q, q_i) / max_j cos(q, q_j),

so the most similar training prompt weighs gamma**2 and an unrelated one about gamma
(RouteLLM uses gamma = 10; normalising by the query's best similarity is our reading of the
paper's normalised similarity). A Bradley-Terry model is then fitted to the *weighted*
comparisons, giving each model a strength p; the strong model's win probability is
p_strong / (p_strong + p_weak).

Fitting: for two models the weighted Bradley-Terry maximum likelihood has the closed form
P(strong wins) = W_strong / (W_strong + W_weak) (the weighted win totals). For more models
we run Hunter's (2004) minorise-maximise iterations, vectorised over a batch of queries, and
report each model's expected win rate against the other candidates as its quality.
A pseudo-count (``prior``, half a win each way per pair) keeps every strength finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.learned.base import QualityModel, check_training_data

__all__ = ["SwRanking", "pairwise_wins"]


def pairwise_wins(Y: np.ndarray) -> np.ndarray:
    """(n, m, m) wins: [i, a, b] = 1 when a scored higher than b on prompt i, 0.5 on a tie,
    0 otherwise or when either label is missing."""
    a, b = Y[:, :, None], Y[:, None, :]
    labelled = ~(np.isnan(a) | np.isnan(b))
    wins = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)) * labelled
    idx = np.arange(Y.shape[1])
    wins[:, idx, idx] = 0.0
    return wins


class SwRanking(QualityModel):
    """Similarity-weighted Bradley-Terry ranking of the candidates for each prompt."""

    router: ClassVar[str] = "sw_ranking"

    def __init__(self, gamma: float = 10.0, *, prior: float = 0.5, iterations: int = 50) -> None:
        if not gamma > 1:
            raise ConfigError(f"sw_ranking gamma={gamma!r} is invalid", hint="use gamma > 1")
        self.gamma = float(gamma)
        self.prior = float(prior)
        self.iterations = int(iterations)
        self._X: np.ndarray | None = None
        self._wins: np.ndarray | None = None

    def fit(
        self, X: np.ndarray, Y: np.ndarray, *, pair: tuple[int, int] | None = None
    ) -> SwRanking:
        self._X, labels = check_training_data(X, Y)
        self._wins = pairwise_wins(labels).reshape(len(labels), -1).astype(np.float32)
        return self

    def weighted_wins(self, X: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """(q, m, m) similarity-weighted win totals of each query, plus the prior."""
        train, wins = self._fitted()
        m = int(round(np.sqrt(wins.shape[1])))
        out = np.empty((len(X), m * m))
        for start in range(0, len(X), chunk):
            sims = np.asarray(X[start : start + chunk], dtype=np.float32) @ train.T
            best = np.max(sims, axis=1, keepdims=True)
            best[best <= 0] = 1.0  # no positively similar prompt: plain cosine, no rescale
            weights = self.gamma ** (1.0 + sims / best)
            # Rescaled to sum to the number of training prompts, so the totals count
            # comparisons and the prior (in comparisons) means the same for any data size.
            weights *= len(train) / weights.sum(axis=1, keepdims=True)
            out[start : start + chunk] = weights @ wins
        return out.reshape(len(X), m, m) + self.prior * (1.0 - np.eye(m))

    def strengths(self, X: np.ndarray) -> np.ndarray:
        """Bradley-Terry strengths (q, m), geometric mean 1."""
        W = self.weighted_wins(X)
        q, m, _ = W.shape
        p = np.ones((q, m))
        won = W.sum(axis=2)
        games = W + W.transpose(0, 2, 1)
        for _ in range(self.iterations if m > 2 else 1):
            denom = (games / (p[:, :, None] + p[:, None, :])).sum(axis=2)
            p = won / denom
            p /= np.exp(np.mean(np.log(p), axis=1, keepdims=True))
        if m == 2:  # the closed form, exactly
            p = won / won.sum(axis=1, keepdims=True)
        return p

    def predict(self, X: np.ndarray) -> np.ndarray:
        p = self.strengths(X)
        m = p.shape[1]
        versus = p[:, :, None] / (p[:, :, None] + p[:, None, :])
        return (versus.sum(axis=2) - 0.5) / max(m - 1, 1)

    def strong_score(self, X: np.ndarray, strong: int, weak: int) -> np.ndarray:
        p = self.strengths(X)
        return p[:, strong] / (p[:, strong] + p[:, weak])

    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "prior": self.prior, "iterations": self.iterations}

    def arrays(self) -> dict[str, np.ndarray]:
        train, wins = self._fitted()
        return {"X": train, "wins": wins}

    @classmethod
    def from_state(cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> SwRanking:
        model = cls(
            float(params.get("gamma", 10.0)),
            prior=float(params.get("prior", 0.5)),
            iterations=int(params.get("iterations", 50)),
        )
        model._X = np.ascontiguousarray(arrays["X"], dtype=np.float32)
        model._wins = np.asarray(arrays["wins"], dtype=np.float32)
        return model

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._X is None or self._wins is None:
            raise ConfigError("this sw_ranking router is not fitted", hint="call fit(X, Y)")
        return self._X, self._wins
