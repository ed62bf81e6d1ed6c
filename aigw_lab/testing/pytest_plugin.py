"""pytest plugin: installs the network tripwire for the whole test session and fails any
test during which a non-loopback connection or name lookup was attempted, even if the code
under test caught the error. Also keeps Hugging Face libraries offline.

Enable with ``-p aigw_lab.testing.pytest_plugin`` (the project's pytest config does).
"""

from __future__ import annotations

import os

import pytest

from aigw_lab.testing import tripwire


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    config.addinivalue_line(
        "markers", "tripwire_expected: the test deliberately triggers the network tripwire"
    )
    tripwire.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    tripwire.uninstall()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    tripwire.reset()
    yield
    blocked = tripwire.violations()
    if blocked and not item.get_closest_marker("tripwire_expected"):
        pytest.fail("network tripwire: " + "; ".join(blocked), pytrace=False)
