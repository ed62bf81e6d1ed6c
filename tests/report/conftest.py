"""A synthetic call log on disk with two experiments, for the report tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aigw_lab.analysis import SyntheticTarget, synthetic_experiment_log
from aigw_lab.analysis.synthetic import DEFAULT_SYNTHETIC_TARGETS
from aigw_lab.store import CallLog

#: The main experiment: three simulated targets and one real-looking one.
TARGETS = (
    *DEFAULT_SYNTHETIC_TARGETS,
    SyntheticTarget("real/model", 0.8, 900, 0.002, simulated=False),
)


@pytest.fixture(scope="package")
def report_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "calls.duckdb"
    with CallLog(path) as log:
        synthetic_experiment_log(
            log, n_items=30, repetitions=2, targets=TARGETS, experiment_id="older", seed=1
        )
        synthetic_experiment_log(
            log,
            n_items=25,
            targets=TARGETS,
            experiment_id="latest",
            seed=2,
            start=datetime(2026, 3, 1, tzinfo=UTC),
        )
    return path
