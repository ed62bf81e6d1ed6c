"""The fast lane (``pytest -m "not slow"``) is defined in tests/conftest.py: every file and
test it names must exist, or a renamed slow test would silently move into the fast lane."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SLOW_FILES, SLOW_TESTS, TESTS


@pytest.mark.parametrize("relative", sorted(SLOW_FILES))
def test_every_slow_file_exists(relative):
    assert (TESTS / relative).is_file(), f"tests/{relative} is gone: update SLOW_FILES"


@pytest.mark.parametrize("entry", sorted(SLOW_TESTS))
def test_every_slow_test_exists(entry):
    relative, _, name = entry.partition("::")
    source = (TESTS / relative).read_text(encoding="utf-8")
    assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.MULTILINE), (
        f"{entry} is gone: update SLOW_TESTS"
    )


def test_the_slow_marker_is_registered(pytestconfig):
    markers = pytestconfig.getini("markers")
    assert any(line.startswith("slow:") for line in markers)
