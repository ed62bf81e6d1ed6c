import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too until the project's pytest config registers it for every test dir.
    config.addinivalue_line("markers", "slow: a slow test (deselect with -m 'not slow')")
