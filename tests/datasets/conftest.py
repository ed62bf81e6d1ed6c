"""Fixtures for the dataset tests: the shared folder of real recordings (skipped when it is
absent) and its recordings, each loaded once per session (MMLU has 14k items)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigw_lab.datasets import shared_data_dir_or_none


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    found = shared_data_dir_or_none()
    if found is None:
        pytest.skip("shared data folder absent: set AIGW_LAB_SHARED_DATA to run these checks")
    return found


@pytest.fixture(scope="session")
def routellm_mmlu(shared_dir):
    from aigw_lab.datasets import load_routellm

    return load_routellm("mmlu", data_dir=shared_dir)


@pytest.fixture(scope="session")
def routellm_gsm8k(shared_dir):
    from aigw_lab.datasets import load_routellm

    return load_routellm("gsm8k", data_dir=shared_dir)
