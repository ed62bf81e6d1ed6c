"""xdist hands out the suite's longest work units first (tests/_schedule.py, tests/conftest.py):
the workers sort their collection by estimated cost and the controller keeps that order; in the
fast lane a test in no group is scheduled with the rest of its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import _schedule, conftest
from tests._schedule import longest_units_first, work_unit
from tests._timeline import TIMELINE_ENV

ROOT = Path(__file__).resolve().parents[1]


class _Item:
    """What the scheduling reads of a collected test."""

    def __init__(self, nodeid: str, *marks: pytest.MarkDecorator):
        self.nodeid = nodeid
        self.own_marks = [mark.mark for mark in marks]

    def get_closest_marker(self, name: str):  # type: ignore[no-untyped-def]
        return next((mark for mark in self.own_marks if mark.name == name), None)

    def __repr__(self) -> str:
        return self.nodeid


SLOW = pytest.mark.slow


def _group(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xdist_group(name)


def test_a_group_of_slow_tests_goes_before_a_larger_group_of_fast_ones():
    many_fast = [_Item(f"sdk::t{i}", _group("sdks")) for i in range(100)]
    few_slow = [_Item(f"ray::t{i}", _group("ray"), SLOW) for i in range(3)]
    ordered = longest_units_first([*many_fast, *few_slow])
    assert ordered[:3] == few_slow
    assert ordered[3:] == many_fast


def test_slow_single_tests_go_before_fast_ones_and_ties_keep_collection_order():
    fast_a, slow_b, fast_c, slow_d = (
        _Item("a::t"),
        _Item("b::t", SLOW),
        _Item("c::t"),
        _Item("d::t", SLOW),
    )
    assert longest_units_first([fast_a, slow_b, fast_c, slow_d]) == [slow_b, slow_d, fast_a, fast_c]


def test_a_groups_tests_keep_their_order_whatever_each_costs():
    # A document's blocks (tests/docs) share a session and must run in the order written.
    blocks = [
        _Item("doc::b1", _group("doc")),
        _Item("doc::b2", _group("doc"), SLOW),
        _Item("doc::b3", _group("doc")),
    ]
    other = _Item("x::t", SLOW)
    ordered = longest_units_first([other, *blocks])
    assert ordered == [*blocks, other]
    assert [work_unit(i) for i in ordered] == ["doc", "doc", "doc", "x::t"]


def test_a_files_fast_ungrouped_tests_are_one_unit_and_slow_tests_and_groups_their_own():
    a1, a2, a3 = (_Item(f"tests/a.py::t{i}") for i in range(3))
    a_slow = _Item("tests/a.py::slow", SLOW)
    b1 = _Item("tests/b.py::t")
    grouped = [_Item(f"tests/c.py::t{i}", _group("sdks")) for i in range(2)]
    items = [b1, a1, *grouped, a_slow, a2, a3]
    assert [work_unit(i, by_file=True) for i in items] == [
        "tests/b.py",
        "tests/a.py",
        "sdks",
        "sdks",
        "tests/a.py::slow",
        "tests/a.py",
        "tests/a.py",
    ]
    # The slow test first, then the file with more tests, its tests together and in order.
    assert longest_units_first(items, by_file=True) == [a_slow, a1, a2, a3, *grouped, b1]
    # Without file units each ungrouped test is a unit of its own.
    assert longest_units_first(items) == [a_slow, *grouped, b1, a1, a2, a3]


def test_the_controller_splits_by_file_only_fast_ungrouped_tests():
    slow = {"tests/a.py::slow"}
    assert _schedule.scope_of("tests/a.py::t[1]", "tests/a.py::t[1]", slow, True) == "tests/a.py"
    assert _schedule.scope_of("tests/a.py::slow", "tests/a.py::slow", slow, True) == (
        "tests/a.py::slow"
    )
    assert _schedule.scope_of("tests/a.py::t@sdks", "sdks", slow, True) == "sdks"
    assert _schedule.scope_of("tests/a.py::t", "tests/a.py::t", slow, False) == "tests/a.py::t"


def test_the_workers_hand_their_slow_tests_to_the_controller(tmp_path):
    assert _schedule.read_slow_ids(str(tmp_path)) is None  # no worker said: single tests
    items = [
        _Item("tests/a.py::fast"),
        _Item("tests/a.py::slow", SLOW),
        _Item("tests/r.py::slow", SLOW, _group("ray")),  # a group is a unit anyway
    ]
    _schedule.write_slow_ids(str(tmp_path), "gw0", items)
    _schedule.write_slow_ids(str(tmp_path), "gw1", items)
    assert _schedule.read_slow_ids(str(tmp_path)) == {"tests/a.py::slow"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow-gw0.json", "slow-gw1.json"]


def test_file_units_need_files_enough_for_every_worker():
    def ids(files: int) -> list[str]:
        return [f"tests/f{f}.py::t{t}" for f in range(files) for t in range(3)]

    assert _schedule.schedules_by_file(ids(16), workers=4)
    assert not _schedule.schedules_by_file(ids(15), workers=4)  # e.g. one folder's few files
    assert not _schedule.schedules_by_file(ids(1), workers=2)  # one big file: spread its tests
    assert _schedule.schedules_by_file(ids(8), workers=2)


def _controller(dist: str = "no", numprocesses: int | None = None) -> SimpleNamespace:
    option = SimpleNamespace(
        numprocesses=numprocesses,
        dist=dist,
        collectonly=False,
        capture="fd",
        usepdb=False,
        loadscopereorder=True,  # xdist's default
    )
    return SimpleNamespace(option=option, pluginmanager=SimpleNamespace(hasplugin=lambda _: True))


@pytest.mark.parametrize(("dist", "n"), [("no", None), ("loadgroup", 3)])
def test_the_controller_queues_units_in_the_workers_order(dist, n):
    config = _controller(dist, n)
    conftest.pytest_cmdline_main(config)  # type: ignore[arg-type]
    assert config.option.dist == "loadgroup"
    assert config.option.loadscopereorder is False


def test_another_dist_mode_is_left_alone():
    config = _controller("load", 2)
    conftest.pytest_cmdline_main(config)  # type: ignore[arg-type]
    assert (config.option.dist, config.option.loadscopereorder) == ("load", True)


def test_loadgroup_runs_get_the_file_unit_scheduler_once_workers_have_a_folder(monkeypatch):
    made = []

    def scheduler(config, log, folder):  # type: ignore[no-untyped-def]
        made.append(folder)
        return "ours"

    monkeypatch.setattr("tests._schedule.file_unit_scheduling", scheduler)

    def controller(dist: str, folder: str | None) -> SimpleNamespace:
        stash = pytest.Stash()
        if folder is not None:
            stash[conftest._SCHEDULE_KEY] = folder
        return SimpleNamespace(stash=stash, getvalue=lambda _: dist)

    assert conftest.pytest_xdist_make_scheduler(controller("loadgroup", "f"), "log") == "ours"
    assert conftest.pytest_xdist_make_scheduler(controller("load", "f"), "log") is None
    assert conftest.pytest_xdist_make_scheduler(controller("loadgroup", None), "log") is None
    assert made == ["f"]


@pytest.mark.parametrize("n", range(6))
def test_probe_fast(n: int) -> None:
    """Not a check: a fast unit for `test_a_parallel_run_starts_the_slow_unit_first`."""
    pytest.skip("a probe for test_schedule's subprocess")


@pytest.mark.slow
def test_probe_slow() -> None:
    """Not a check: the slow unit, collected after the fast ones."""
    pytest.skip("a probe for test_schedule's subprocess")


@pytest.mark.slow  # pytest with two workers in a subprocess
def test_a_parallel_run_starts_the_slow_unit_first(tmp_path) -> None:
    # Failed before: xdist queued the units in collection order (all of one test), so the
    # slow probe, collected last, was the last test its worker ran.
    env = {**os.environ, TIMELINE_ENV: str(tmp_path)}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run on a worker
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"]
    command += ["-p", "tests._timeline", f"{Path(__file__).relative_to(ROOT)}", "-k", "probe"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "timeline (" in done.stdout, "the plugin prints its summary"
    runs = {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in tmp_path.glob("*.jsonl")
    }
    firsts = [next(r["test"] for r in rows if "test" in r) for rows in runs.values()]
    assert sum(len([r for r in rows if "test" in r]) for rows in runs.values()) == 7
    assert any(name.endswith("::test_probe_slow") for name in firsts), firsts


@pytest.mark.slow  # pytest with two workers in a subprocess
def test_the_fast_lane_runs_each_files_ungrouped_tests_on_one_worker(tmp_path) -> None:
    # Failed before: xdist handed out single tests in collection order, so each file's probes
    # were spread over both workers (and a file whose tests wait had every worker waiting).
    # Two files are too few for file units (`schedules_by_file`): this plugin lowers the bar.
    (tmp_path / "any_files.py").write_text(
        "def pytest_configure(config):\n"
        "    import tests._schedule\n\n"
        "    tests._schedule.MIN_FILES_PER_WORKER = 0\n"
    )
    records = tmp_path / "timeline"
    env = {**os.environ, TIMELINE_ENV: str(records), "PYTHONPATH": str(tmp_path)}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run on a worker
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"]
    command += ["-p", "tests._timeline", "-p", "any_files", "-m", "not slow", "-k", "probe"]
    command += ["tests/test_schedule.py", "tests/test_parallel_run.py"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    workers_of: dict[str, set[str]] = {}  # by unit: a group ("@probe"), else the file
    for path in records.glob("*.jsonl"):
        for row in map(json.loads, path.read_text().splitlines()):
            if "test" in row:
                test = row["test"]
                unit = "@" + test.rsplit("@", 1)[1] if "@" in test else test.split("::")[0]
                workers_of.setdefault(unit, set()).add(path.stem)
    # test_parallel_run.py's probes 6-11 are the group "probe", its others ungrouped.
    assert set(workers_of) == {"tests/test_schedule.py", "tests/test_parallel_run.py", "@probe"}
    assert all(len(workers) == 1 for workers in workers_of.values()), workers_of
