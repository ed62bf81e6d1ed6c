"""xdist workers start numerical libraries on their share of the CPUs (tests/conftest.py,
`_threads_per_worker`): a thread per CPU in every worker oversubscribed the 2-core machine."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tests import conftest
from tests.conftest import THREAD_VARS


def _controller(workers: object) -> SimpleNamespace:
    """What `_threads_per_worker` reads of an xdist controller's (or a plain run's) config."""
    return SimpleNamespace(option=SimpleNamespace(numprocesses=workers), stash=pytest.Stash())


@pytest.fixture
def environ(monkeypatch):
    """The thread variables unset (as on a fresh machine), restored after the test."""
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("cpus", "workers", "threads"), [(2, 2, "1"), (8, 2, "4"), (2, 3, "1")])
def test_a_controller_gives_its_workers_the_cpus_divided_among_them(
    environ, cpus, workers, threads
):
    environ.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    config = _controller(workers)
    conftest._threads_per_worker(config)
    assert {name: os.environ.get(name) for name in THREAD_VARS} == dict.fromkeys(
        THREAD_VARS, threads
    )
    conftest.pytest_unconfigure(config)  # the run's end takes back what it set
    assert not any(name in os.environ for name in THREAD_VARS)


def test_a_variable_the_user_set_is_kept(environ):
    environ.setenv("OMP_NUM_THREADS", "3")
    config = _controller(2)
    conftest._threads_per_worker(config)
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["OPENBLAS_NUM_THREADS"] != "3"
    conftest.pytest_unconfigure(config)
    assert os.environ["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize("workers", [None, 0])
def test_a_run_without_workers_keeps_the_libraries_defaults(environ, workers):
    conftest._threads_per_worker(_controller(workers))
    assert not any(name in os.environ for name in THREAD_VARS)


def test_a_worker_inherits_rather_than_decides(environ):
    config = _controller(2)
    config.workerinput = {"workerid": "gw0"}
    conftest._threads_per_worker(config)
    assert not any(name in os.environ for name in THREAD_VARS)


@pytest.mark.skipif(
    "PYTEST_XDIST_WORKER" not in os.environ, reason="checks an xdist worker's own libraries"
)
def test_in_a_worker_numpys_blas_runs_on_the_workers_share():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401  (its BLAS is what threadpoolctl reports)

    expected = os.environ.get("OPENBLAS_NUM_THREADS")
    assert expected is not None, "the controller set the variable for its workers"
    blas = [
        pool["num_threads"]
        for pool in threadpoolctl.threadpool_info()
        if pool["user_api"] == "blas"
    ]
    assert blas and set(blas) == {int(expected)}
