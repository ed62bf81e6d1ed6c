"""Fast tests that use an expensive once-per-process fixture, or the official SDKs, share one
xdist worker (tests/conftest.py, `SHARED_FIXTURE_GROUPS`, `SDK_FILES`), so that one worker
builds it or imports them, not every worker."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import (
    MINILM_GROUP,
    MINILM_STACK,
    MINILM_TESTS,
    SDK_FILES,
    SDK_GROUP,
    SHARED_FIXTURE_GROUPS,
    SLOW_FILES,
    TESTS,
)

SLOW_MODULE = conftest._SLOW_MODULE


class _Item:
    """What the collection hook reads and writes of a collected test."""

    def __init__(self, relative: str, fixtures: tuple[str, ...], *marks: pytest.MarkDecorator):
        self.path = TESTS / relative
        self.name = self.originalname = "test_something"
        self.fixturenames = ("request", *fixtures)
        self.own_marks = [mark.mark for mark in marks]

    def get_closest_marker(self, name: str):  # type: ignore[no-untyped-def]
        return next((mark for mark in self.own_marks if mark.name == name), None)

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.own_marks.append(mark.mark)

    def groups(self) -> list[str]:
        return [mark.args[0] for mark in self.own_marks if mark.name == "xdist_group"]


def _collected(*items: _Item) -> None:
    conftest.pytest_collection_modifyitems(None, list(items))  # type: ignore[arg-type]


@pytest.mark.parametrize(("fixture", "group"), sorted(SHARED_FIXTURE_GROUPS.items()))
def test_a_fast_test_using_a_shared_fixture_joins_its_group(fixture, group):
    item = _Item("teamlog/test_x.py", ("tmp_path", fixture))
    _collected(item)
    assert item.groups() == [group]


def test_a_test_without_one_is_left_ungrouped():
    item = _Item("teamlog/test_x.py", ("tmp_path",))
    _collected(item)
    assert item.groups() == []


def test_a_slow_test_and_a_grouped_test_keep_their_place():
    slow = _Item("teamlog/test_x.py", ("pg_cluster",), pytest.mark.slow)
    listed_slow = _Item("notebook/test_notebooks.py", ("pg_cluster",))  # in SLOW_FILES
    grouped = _Item("teamlog/test_x.py", ("pg_cluster",), pytest.mark.xdist_group("ray"))
    _collected(slow, listed_slow, grouped)
    assert (slow.groups(), listed_slow.groups(), grouped.groups()) == ([], [], ["ray"])


def test_a_test_loading_minilm_joins_its_group_fast_or_slow():
    fast = _Item("gateway/test_x.py", ("minilm",))
    slow = _Item("gateway/test_x.py", ("tmp_path", "minilm"), pytest.mark.slow)
    stack = _Item("conformance/test_x.py", ("stack",), pytest.mark.slow)
    stack.callspec = type("CallSpec", (), {"params": {"stack_name": MINILM_STACK}})()
    other_stack = _Item("conformance/test_x.py", ("stack",))
    other_stack.callspec = type("CallSpec", (), {"params": {"stack_name": "exact-cache"}})()
    relative, name = sorted(MINILM_TESTS)[0].split("::")
    named = _Item(relative, ())
    named.name = named.originalname = name
    grouped = _Item("gateway/test_x.py", ("minilm",), pytest.mark.xdist_group("ray"))
    _collected(fast, slow, stack, other_stack, named, grouped)
    assert [i.groups() for i in (fast, slow, stack, named)] == [[MINILM_GROUP]] * 4
    assert (other_stack.groups(), grouped.groups()) == ([], ["ray"])


def test_the_named_minilm_tests_exist():
    # A renamed test would silently leave the group (and load the model on its own worker).
    for test in MINILM_TESTS:
        relative, name = test.split("::")
        assert f"def {name}(" in (TESTS / relative).read_text(encoding="utf-8"), test


def test_every_shared_fixture_is_one_of_the_suites():
    # A renamed fixture would silently stop being grouped.
    sources = "".join(p.read_text(encoding="utf-8") for p in Path(TESTS).rglob("*.py"))
    for fixture in SHARED_FIXTURE_GROUPS:
        assert f"def {fixture}(" in sources, fixture


@pytest.mark.skipif("PYTEST_XDIST_WORKER" not in os.environ, reason="checks an xdist worker")
def test_in_a_worker_the_groups_are_added_before_xdist_names_the_tests_after_them(request):
    # xdist's worker suffixes each grouped test's id with its group in its own
    # pytest_collection_modifyitems; the controller schedules by that suffix. A group added
    # after it would be ignored, so the suite's hook must be called first.
    hook = request.config.pluginmanager.hook.pytest_collection_modifyitems
    order = [impl.plugin for impl in reversed(hook.get_hookimpls())]  # call order
    xdists = next(i for i, p in enumerate(order) if type(p).__name__ == "WorkerInteractor")
    ours = next(i for i, p in enumerate(order) if getattr(p, "__file__", "") == conftest.__file__)
    assert ours < xdists


def test_a_fast_test_of_an_sdk_file_joins_the_sdk_group_and_a_slow_one_does_not():
    fast = _Item("server/test_openai_sdk.py", ("tmp_path",))
    slow = _Item("server/test_trust_client_user_cli.py", (), pytest.mark.slow)
    _collected(fast, slow)
    assert (fast.groups(), slow.groups()) == ([SDK_GROUP], [])


def _fast_lane_files() -> list[Path]:
    """The test files the fast lane imports (not in SLOW_FILES, not marking themselves slow)."""
    return [
        path
        for path in sorted(TESTS.rglob("*.py"))
        if path.relative_to(TESTS).as_posix() not in SLOW_FILES
        and not SLOW_MODULE.search(path.read_text(encoding="utf-8"))
    ]


_SDK_IMPORT = re.compile(
    r"^((import|from) |\w+ = pytest\.importorskip\([\"'])(openai|anthropic)\b", re.MULTILINE
)
#: A top-level import of another file of the suite: ``from .helpers import``, ``from tests.x``.
_SUITE_IMPORT = re.compile(r"^from (\.+|tests\.)([\w.]*) import", re.MULTILINE)


def _suite_imports(path: Path) -> list[Path]:
    found = []
    for dots, name in _SUITE_IMPORT.findall(path.read_text(encoding="utf-8")):
        base = TESTS if dots == "tests." else path.parents[len(dots) - 1]
        target = base.joinpath(*name.split("."))
        found += [p for p in (target.with_suffix(".py"), target / "__init__.py") if p.is_file()]
    return found


def _loads_an_sdk(path: Path, seen: set[Path]) -> bool:
    """Whether importing ``path`` imports an SDK, itself or through the suite's files it
    imports at its top."""
    if path in seen:
        return False
    seen.add(path)
    if _SDK_IMPORT.search(path.read_text(encoding="utf-8")):
        return True
    return any(_loads_an_sdk(other, seen) for other in _suite_imports(path))


def test_no_file_of_the_suite_loads_an_sdk_when_it_is_imported():
    # One top-level `import openai` anywhere, or an import of a file that has one (a slow
    # file's helper), would load it in every worker again: in the fast lane through its files,
    # and in a whole run through any file, since every worker imports every collected file
    # (the slow ones too: test_fuzz.py's two SDKs cost each of the four workers 1.5 s of CPU).
    found = [
        path.relative_to(TESTS).as_posix()
        for path in sorted(TESTS.rglob("*.py"))
        if _loads_an_sdk(path, set())
    ]
    assert found == []


def test_every_fast_lane_file_using_an_sdk_is_in_the_sdk_group():
    uses = re.compile(r"from tests\._sdks import|\.(openai|anthropic)\(")
    using = {
        path.relative_to(TESTS).as_posix()
        for path in _fast_lane_files()
        if path.name.startswith("test_") and uses.search(path.read_text(encoding="utf-8"))
    }
    assert using == set(SDK_FILES)


def test_the_sdk_stand_in_answers_collections_probes_itself_and_passes_on_public_names():
    from tests import _sdks

    stand_in = _sdks._OnFirstUse("openai")
    # pytest reads names like these off every object in a test module while collecting it.
    assert getattr(stand_in, "__test__", None) is None
    assert getattr(stand_in, "_pytestfixturefunction", None) is None
    assert stand_in.OpenAI is __import__("openai").OpenAI
