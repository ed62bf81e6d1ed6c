"""What the semantic-index tests share: clustered unit vectors and near copies of them, and a
``spawn`` that runs background jobs only when the test says so (their ``faiss`` fixture is in
conftest.py)."""

from __future__ import annotations

import numpy as np

DIM = 32


def clustered(n, seed, dim=DIM, clusters=40):
    """Unit vectors around ``clusters`` centres, as sentence embeddings group by topic."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    rows = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim))
    rows = rows.astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(vectors, seed, scale=0.05):
    rng = np.random.default_rng(seed)
    moved = vectors + scale * rng.standard_normal(vectors.shape).astype(np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


class Manual:
    """A ``spawn`` that queues jobs; the test runs them when it chooses."""

    def __init__(self):
        self.jobs = []

    def __call__(self, job):
        self.jobs.append(job)

    def run_all(self):
        while self.jobs:
            self.jobs.pop(0)()
