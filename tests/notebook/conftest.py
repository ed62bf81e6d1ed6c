"""Registers the ``slow`` marker used by the notebook tests (each runs a real kernel)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: runs for many seconds (deselect with -m 'not slow')")
