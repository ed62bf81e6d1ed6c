"""xdist workers share pytest's rewritten test modules through the run's private folder
(tests/_shared_rewrites.py) when bytecode writing is off, instead of each rewriting them all."""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path

import pytest
from _pytest.assertion import rewrite

from tests._shared_rewrites import share_rewrites

SOURCE = "def test_sum():\n    total = 1 + 1\n    assert total == 2\n"


@pytest.fixture
def counted(monkeypatch):
    """pytest's rewriting, counted: how many times a module was actually rewritten."""
    calls: list[Path] = []
    original = rewrite._rewrite_test

    def counting(fn, config):  # type: ignore[no-untyped-def]
        calls.append(fn)
        return original(fn, config)

    monkeypatch.setattr(rewrite, "_rewrite_test", counting)
    counting.calls = calls  # type: ignore[attr-defined]
    return counting


@pytest.fixture
def module(tmp_path) -> Path:
    path = tmp_path / "src" / "test_sample.py"
    path.parent.mkdir()
    path.write_text(SOURCE, encoding="utf-8")
    return path


def _asserts_rewritten(code) -> bool:  # type: ignore[no-untyped-def]
    function = next(c for c in code.co_consts if getattr(c, "co_name", "") == "test_sum")
    return any(name.startswith("@py_") for name in function.co_names)


def test_a_module_one_worker_rewrote_is_read_by_the_next(tmp_path, module, counted, pytestconfig):
    run = tmp_path / "run"
    undo = share_rewrites(str(run))
    assert undo is not None
    try:
        _, first = rewrite._rewrite_test(module, pytestconfig)  # the first worker
        pyc = rewrite.get_cache_dir(module) / f"test_sample{rewrite.PYC_TAIL}"
        assert pyc.is_file() and pyc.is_relative_to(run)
        # The next worker finds no .pyc where pytest looks first only if it raced the first;
        # either way it gets the first worker's code, not a rewrite of its own.
        assert rewrite._read_pyc(module, pyc) is not None
        _, second = rewrite._rewrite_test(module, pytestconfig)
    finally:
        undo()
    assert counted.calls == [module]
    assert second == first and _asserts_rewritten(second)
    assert not (module.parent / "__pycache__").exists()  # nothing beside the sources
    assert rewrite._rewrite_test.__name__ == "counting"  # undo gave back what it wrapped


def test_a_worker_waits_for_the_one_rewriting_and_reads_its_result(
    tmp_path, module, counted, pytestconfig
):
    undo = share_rewrites(str(tmp_path / "run"))
    assert undo is not None
    try:
        directory = rewrite.get_cache_dir(module)
        directory.mkdir(parents=True)
        results = []
        with open(directory / f"{module.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker is rewriting this module
            waiting = threading.Thread(
                target=lambda: results.append(rewrite._rewrite_test(module, pytestconfig))
            )
            waiting.start()
            stat, code = counted(module, pytestconfig)  # what that worker does meanwhile
            pyc = directory / f"test_sample{rewrite.PYC_TAIL}"
            rewrite._write_pyc(pytestconfig.stash[rewrite.assertstate_key], code, stat, pyc)
        waiting.join()
    finally:
        undo()
    assert counted.calls == [module]  # the other worker's rewrite only
    assert results[0][1] == code


@pytest.mark.skipif(
    "PYTEST_XDIST_WORKER" not in os.environ or not sys.dont_write_bytecode,
    reason="checks an xdist worker of a run with bytecode writing off",
)
def test_in_a_worker_this_module_came_from_the_runs_folder():
    folder = os.environ.get("PYTHONPYCACHEPREFIX")
    assert folder, "the run's private folder (tests/conftest.py, _compile_once_per_run)"
    pyc = rewrite.get_cache_dir(Path(__file__)) / f"{Path(__file__).stem}{rewrite.PYC_TAIL}"
    assert pyc.is_relative_to(folder) and pyc.is_file()
