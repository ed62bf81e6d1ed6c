"""The fast lane (``pytest -m "not slow"``) is defined in tests/conftest.py: every file and
test it names must exist, or a renamed slow test would silently move into the fast lane."""

from __future__ import annotations

import re
import subprocess
import sys

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
