"""Call logs for the analysis tests: synthetic experiments and a hand-built row factory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aigw_lab.analysis.synthetic import SyntheticExperiment, synthetic_experiment_log
from aigw_lab.store import CallLog, CallRecord

T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def row(call_id: str, trace_id: str, *, at_ms: float = 0.0, **fields: Any) -> CallRecord:
    """One calls row of experiment ``exp`` at ``T0 + at_ms``; fields override the defaults."""
    values: dict[str, Any] = {
        "call_id": call_id,
        "trace_id": trace_id,
        "timestamp": T0 + timedelta(milliseconds=at_ms),
        "provider_name": "sim-hand",
        "request_model": "m",
        "experiment_id": "exp",
        "latency_ms": 100.0,
        "cost_usd": 0.01,
        "simulated": True,
    }
    values.update(fields)
    return CallRecord(**values)


def score(
    call_id: str, value: float | None, *, scorer: str = "exact", at_s: float = 0.0, **fields: Any
) -> dict[str, Any]:
    return {
        "score_id": f"s-{call_id}-{scorer}-{at_s}",
        "call_id": call_id,
        "scorer": scorer,
        "kind": "scorer",
        "value": value,
        "experiment_id": "exp",
        "created_at": T0 + timedelta(seconds=at_s),
        **fields,
    }


@pytest.fixture
def log(new_log_path) -> Iterator[CallLog]:
    with CallLog(new_log_path) as call_log:
        yield call_log


@pytest.fixture
def synthetic(log) -> tuple[CallLog, SyntheticExperiment]:
    experiment = synthetic_experiment_log(
        log,
        n_items=40,
        repetitions=2,
        seed=7,
        retry_rate=0.1,
        fallback_rate=0.08,
        error_rate=0.06,
        cache_hit_rate=0.06,
        resume_rate=0.08,
    )
    return log, experiment
