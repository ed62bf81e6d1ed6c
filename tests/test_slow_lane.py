"""The fast lane (``pytest -m "not slow"``) is defined in tests/conftest.py: every file and
test it names must exist, or a renamed slow test would silently move into the fast lane. On
xdist workers the modules holding slow tests run first."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import SLOW_FILES, SLOW_TESTS, TESTS, pytest_collection_modifyitems


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


@pytest.mark.slow  # pytest in a subprocess
def test_the_fast_lane_does_not_import_files_whose_every_test_is_slow() -> None:
    # Failed before: each worker imported such files (with Ray, Jupyter's kernel client, ...)
    # only to deselect every test in them.
    slow_by_list = "tests/notebook/test_notebooks.py"  # in SLOW_FILES
    slow_by_mark = "tests/ray_runs/test_ray_executor.py"  # pytestmark = [pytest.mark.slow, ...]
    fast = "tests/test_slow_lane.py"

    def collect(*marks: str) -> subprocess.CompletedProcess:
        # -s: pytest would otherwise capture -X importtime's lines written while collecting.
        command = [sys.executable, "-X", "importtime", "-m", "pytest", "--collect-only", "-q"]
        command += ["-s", "-p", "no:cacheprovider", "-p", "no:xdist", *marks]
        # Folders: pytest does not ask whether to ignore a file named on its command line.
        command += ["tests/notebook", "tests/ray_runs", fast]
        done = subprocess.run(command, cwd=TESTS.parent, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    lane = collect("-m", "not slow")
    imported = {line.rpartition("|")[2].strip() for line in lane.stderr.splitlines()}
    assert "pytest" in imported, "-X importtime's lines are read"
    assert "nbclient" not in imported and "ray" not in imported
    assert "test_slow_lane.py::test_the_slow_marker_is_registered" in lane.stdout
    assert slow_by_list not in lane.stdout and slow_by_mark not in lane.stdout
    # Any other selection still collects them (here: everything).
    everything = collect()
    assert f"{slow_by_list}::test_quickstart" in everything.stdout
    assert "nbclient" in {
        line.rpartition("|")[2].strip() for line in everything.stderr.splitlines()
    }


class _Item:
    """What the collection hook reads of a test item: its file, name and markers."""

    def __init__(self, relative: str, name: str, slow: bool = False) -> None:
        self.path = TESTS / relative
        self.name = self.originalname = name
        self.markers = ["slow"] if slow else []

    def add_marker(self, marker) -> None:
        self.markers.append(marker.name)

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None

    def __repr__(self) -> str:
        return f"{self.path.name}::{self.name}"


class _Config:
    def __init__(self, worker: bool) -> None:
        if worker:
            self.workerinput = {}


def _collected() -> list[_Item]:
    return [
        _Item("test_types.py", "a"),
        _Item("test_types.py", "b"),
        _Item("experiments/test_kill.py", "killed"),  # in SLOW_FILES
        _Item("test_values.py", "fast"),
        _Item("test_values.py", "marked", slow=True),  # @pytest.mark.slow in its file
        _Item("test_worker_threads.py", "last"),
    ]


def test_on_a_worker_the_modules_with_slow_tests_run_first_each_kept_whole() -> None:
    # Failed before: a worker's collection order is the order the xdist controller hands out
    # single tests, and it was file order, which put a sixth of the slow tests (serve, kill,
    # team-log, light-install, tripwire) in the run's last tenth.
    items = _collected()
    pytest_collection_modifyitems(_Config(worker=True), items)
    assert [f"{i.path.name}::{i.name}" for i in items] == [
        "test_kill.py::killed",
        "test_values.py::fast",  # its module has a slow test: moved whole, in file order
        "test_values.py::marked",
        "test_types.py::a",
        "test_types.py::b",
        "test_worker_threads.py::last",
    ]


def test_without_workers_the_file_order_is_kept() -> None:
    items = _collected()
    before = [f"{i.path.name}::{i.name}" for i in items]
    pytest_collection_modifyitems(_Config(worker=False), items)
    assert [f"{i.path.name}::{i.name}" for i in items] == before
    assert items[2].get_closest_marker("slow"), "still marked from SLOW_FILES"
