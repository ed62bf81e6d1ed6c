"""Fixtures shared by the gateway tests."""

import pytest

from aigw_lab.store import CallLog


@pytest.fixture
def log(new_log_path):
    """A real DuckDB call log in the test's temporary folder, closed (so flushed) after."""
    with CallLog(new_log_path) as call_log:
        yield call_log


@pytest.fixture
def faiss():
    """faiss, or the test is skipped (it comes with the ``ann`` extra)."""
    return pytest.importorskip(
        "faiss", reason='faiss is not installed (pip install "aigw-lab[ann]")'
    )
