"""The suite's parallel set-up (tests/conftest.py): a plain ``python -m pytest`` runs on
pytest-xdist workers with ``--dist loadgroup``, ``-n 0`` and ``-p no:xdist`` run in one process,
and every worker of a run uses the one embedding cache folder the run made (and removes).

Each check runs pytest in a subprocess on this file's probe test, which only does anything when
``PROBE_ENV`` names a folder: it records which worker ran it and the cache folder it was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE_ENV = "AIGW_LAB_TEST_PARALLEL_PROBE"
CACHE_ENV = "AIGW_LAB_CACHE"
ROOT = Path(__file__).resolve().parents[1]
#: Run by each probe in a child Python: where would that process write its bytecode?
CHILD = (
    "import json, sys, aigw_lab, pathlib; print(json.dumps([sys.pycache_prefix,"
    " sys.flags.dont_write_bytecode, bool(sys.pycache_prefix and"
    " any(pathlib.Path(sys.pycache_prefix).rglob('aigw_lab/__init__.*.pyc')))]))"
)


@pytest.mark.parametrize(
    "n",
    [*range(6), *(pytest.param(n, marks=pytest.mark.xdist_group("probe")) for n in range(6, 12))],
)
def test_probe(n: int) -> None:
    """Not a check: records (worker, cache folder) for the tests below; 6 to 11 are a group."""
    out = os.environ.get(PROBE_ENV)
    if not out:
        pytest.skip("a probe for test_parallel_run's subprocesses")
    record = {
        "n": n,
        "worker": os.environ.get("PYTEST_XDIST_WORKER"),
        "cache": os.environ.get(CACHE_ENV),
        "cache_exists": Path(os.environ.get(CACHE_ENV, "/nonexistent")).is_dir(),
        "pycache_prefix": sys.pycache_prefix,
        "writes_bytecode": not sys.dont_write_bytecode,
        # What a subprocess of a test (an `aigw-lab` command, a doc block) inherits.
        "child": subprocess.run(
            [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
        ).stdout,
    }
    (Path(out) / f"{n}.json").write_text(json.dumps(record))


def _run(tmp_path: Path, *args: str, bytecode: dict[str, str] | None = None) -> list[dict]:
    """The probe's records from ``pytest ARGS``; ``bytecode``: the run's bytecode variables
    (``PYTHONDONTWRITEBYTECODE``, ``PYTHONPYCACHEPREFIX``), none of this run's by default."""
    out = tmp_path / "probe"
    out.mkdir()
    env = {**os.environ, PROBE_ENV: str(out)}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run on a worker
    env.pop(CACHE_ENV, None)
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)  # this test's own run may have set them (tests/conftest.py)
    env.update(bytecode or {"PYTHONDONTWRITEBYTECODE": "1"})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *args,
            f"{Path(__file__).relative_to(ROOT)}::test_probe",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    """`_run` with the run's default bytecode variables, once per set of arguments for the
    module: several tests check different things of the same pytest run (a run costs seconds
    of CPU, and its records are only read)."""
    runs: dict[tuple[str, ...], list[dict]] = {}

    def run(*args: str) -> list[dict]:
        if args not in runs:
            runs[args] = _run(tmp_path_factory.mktemp("probe-run"), *args)
        return runs[args]

    return run


#: The tests that read the same runs (`probe_run`) run on one xdist worker, which makes each
#: run once.
SHARED_RUNS = pytest.mark.xdist_group("parallel-run-probes")


@pytest.mark.slow  # pytest in subprocesses (a few seconds each)
@SHARED_RUNS
def test_the_workers_of_a_run_share_one_embedding_cache_folder(probe_run) -> None:
    # Failed before: each worker made its own cache folder, so the README's GSM8K blocks and
    # notebook 04 (on different workers) embedded the same prompts twice.
    records = probe_run("-n", "2")
    assert len(records) == 12
    assert {r["worker"] for r in records} == {"gw0", "gw1"}
    (cache,) = {r["cache"] for r in records}
    assert all(r["cache_exists"] for r in records)
    assert not Path(cache).exists(), "the run removes its cache folder at the end"
    # An explicit -n keeps the groups too (failed before, as below).
    assert len({r["worker"] for r in records if r["n"] >= 6}) == 1


@pytest.mark.slow
@SHARED_RUNS
@pytest.mark.parametrize("args", [["-p", "no:xdist"], ["-s"]])
def test_other_ways_to_run_still_work(probe_run, args: list[str]) -> None:
    records = probe_run(*args)
    assert len(records) == 12
    assert {r["worker"] for r in records} == {None}
    assert len({r["cache"] for r in records}) == 1 and all(r["cache_exists"] for r in records)


@pytest.mark.slow
def test_the_tests_of_an_xdist_group_run_on_one_worker(tmp_path) -> None:
    # Failed before: the workers parse the command line again, so the --dist loadgroup that
    # conftest.py sets never reached them, no test carried its group, and a group's tests (the
    # blocks of one document, the fuzz tests sharing one server) were spread over the workers.
    # No -n given (and the fast lane's -m): parallel, as a plain `python -m pytest` is.
    records = _run(tmp_path, "-m", "not slow")
    assert len(records) == 12
    assert None not in {r["worker"] for r in records}
    grouped = {r["worker"] for r in records if r["n"] >= 6}
    assert len(grouped) == 1, records
    assert len({r["cache"] for r in records}) == 1


@pytest.mark.slow
@SHARED_RUNS
@pytest.mark.parametrize("args", [["-n", "2"], ["-p", "no:xdist"]])
def test_with_bytecode_off_test_subprocesses_compile_into_one_folder(probe_run, args) -> None:
    # Failed before: with PYTHONDONTWRITEBYTECODE (set on the project's machine) every
    # subprocess of a test compiled every module of the package it imported from source.
    # (`probe_run` runs with PYTHONDONTWRITEBYTECODE=1, `_run`'s default.)
    records = probe_run(*args)
    assert len(records) == 12
    children = [json.loads(r["child"]) for r in records]
    (prefix,) = {c[0] for c in children}
    assert prefix and Path(prefix).name.startswith("aigw_lab-test-pycache-")
    # Children write there (a later one finds the package compiled).
    assert all(c[1] == 0 for c in children) and any(c[2] for c in children), children
    # The test processes keep reading the installed packages' own __pycache__ (a prefix would
    # hide it) and write nothing.
    assert {r["pycache_prefix"] for r in records} == {None}
    assert not any(r["writes_bytecode"] for r in records)
    assert not Path(prefix).exists(), "the run removes its bytecode folder at the end"


@pytest.mark.slow
def test_a_developers_own_bytecode_settings_are_kept(tmp_path) -> None:
    mine = tmp_path / "my-pycache"
    records = _run(tmp_path, "-n", "2", bytecode={"PYTHONPYCACHEPREFIX": str(mine)})
    assert {r["pycache_prefix"] for r in records} == {str(mine)}
    assert all(json.loads(r["child"])[:2] == [str(mine), 0] for r in records)
    assert mine.is_dir(), "a folder the developer chose stays"
