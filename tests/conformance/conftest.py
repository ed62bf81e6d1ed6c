"""The two axes of the conformance suite, as fixtures (the way ibis runs one suite over
every backend): ``mode`` (chat, achat, stream, astream) and ``stack`` (no primitive, each
primitive alone, routing policies, the full default stack). A test taking both runs once per
pair; a pair where an invariant does not hold today is declared inline in that test with
`gap` (a strict xfail naming what is wrong), so fixing it turns the suite red until the
declaration goes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from .modes import MODES, Mode
from .stacks import STACKS, Stack, build

_EXPENSIVE = {"semantic-cache-minilm": "loads the real all-MiniLM-L6-v2 (once per worker)"}


def stacks(*names: str) -> list[object]:
    """Stack names as parameters (all when none are given), expensive ones marked slow. A
    test narrows an axis with ``@pytest.mark.parametrize("stack_name", stacks(...))``."""
    return [
        pytest.param(name, marks=pytest.mark.slow, id=name) if name in _EXPENSIVE else name
        for name in (names or STACKS)
    ]


def modes(*names: str) -> list[Mode]:
    """Modes by name (all when none are given), for ``parametrize("mode", modes(...))``."""
    return [m for m in MODES if not names or m.name in names]


@pytest.fixture(params=MODES, ids=str)
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param


@pytest.fixture(params=stacks())
def stack_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def stack(stack_name: str, new_log_path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A fresh gateway of the stack named by ``stack_name`` over a fresh upstream, with a
    real DuckDB log file (closed after the test)."""
    embedder = None
    if stack_name == "semantic-cache-minilm":
        model = request.getfixturevalue("minilm")  # skips, with its reason, when absent

        def embedder():
            return model

    built = build(stack_name, new_log_path, embedder=embedder)
    try:
        yield built
    finally:
        built.gateway.close()


def gap(
    request: pytest.FixtureRequest,
    mode: Mode,
    stack: Stack,
    known: Mapping[tuple[str, str], str],
) -> None:
    """Declare the (mode, stack) pairs where this invariant fails today: ``known`` maps
    ``(mode or "*", stack or "*")`` to what is wrong. The case becomes a strict xfail."""
    for (m, s), reason in known.items():
        if m in ("*", mode.name) and s in ("*", stack.name):
            request.applymarker(pytest.mark.xfail(strict=True, reason=f"gap: {reason}"))
            return
