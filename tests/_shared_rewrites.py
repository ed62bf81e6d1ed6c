"""The xdist workers of one run share pytest's rewritten test modules (tests/conftest.py).

pytest rewrites every test module's ``assert`` statements (parse, rewrite, compile) and caches
the result in a ``.pyc`` beside the source, unless bytecode writing is off: then every worker of
every run rewrites every test module again. On the project's machine it is off
(``PYTHONDONTWRITEBYTECODE=1``), and rewriting the fast lane's test modules is about 3.5 s of a
worker's 8 s of CPU to collect (docs/performance.md, "The fast lane's start-up, session 11"),
paid by all four workers. Here the workers keep those ``.pyc`` files in the run's private
folder instead (the one tests/conftest.py makes for its subprocesses' bytecode): the first
worker to reach a module rewrites it, the others wait for it and read it. The code each worker
runs is what pytest's own cache would give it; nothing is written next to the sources, as the
environment asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def share_rewrites(folder: str) -> Callable[[], None] | None:
    """Keep this process's rewritten test modules in ``folder`` and read other workers' from
    there; returns the function that undoes it, or None where it does not apply (no
    ``fcntl``, or a pytest whose rewriting helpers are not the ones this wraps: each worker
    then rewrites its own modules, as before)."""
    try:
        import fcntl

        from _pytest.assertion import rewrite

        get_cache_dir, rewrite_test = rewrite.get_cache_dir, rewrite._rewrite_test
        read_pyc, write_pyc = rewrite._read_pyc, rewrite._write_pyc
        tail, state_key = rewrite.PYC_TAIL, rewrite.assertstate_key
    except (ImportError, AttributeError):
        return None
    root = Path(folder, "rewritten")

    def cache_dir(file_path: Path) -> Path:
        # The layout pytest itself uses under a ``sys.pycache_prefix``.
        return root.joinpath(*file_path.parts[1:-1])

    def rewrite_once(fn: Path, pytest_config: Any) -> tuple[os.stat_result, Any]:
        # Called only after pytest found no valid .pyc in cache_dir(fn). Another worker may be
        # rewriting the same module right now (they collect in the same order): wait for it
        # and read its result rather than doing the same work twice.
        directory = cache_dir(fn)
        directory.mkdir(parents=True, exist_ok=True)
        pyc = directory / (fn.name[:-3] + tail)
        with open(directory / f"{fn.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            code = read_pyc(fn, pyc)
            if code is not None:
                return os.stat(fn), code
            source_stat, code = rewrite_test(fn, pytest_config)
            write_pyc(pytest_config.stash[state_key], code, source_stat, pyc)
            return source_stat, code

    rewrite.get_cache_dir, rewrite._rewrite_test = cache_dir, rewrite_once

    def undo() -> None:
        rewrite.get_cache_dir, rewrite._rewrite_test = get_cache_dir, rewrite_test

    return undo
