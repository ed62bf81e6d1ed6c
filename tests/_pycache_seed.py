"""The installed packages' own bytecode, made visible under a run's private bytecode folder.

tests/conftest.py gives the Python subprocesses of a test run a ``PYTHONPYCACHEPREFIX`` (where
the environment forbids writing bytecode beside the sources), so that they compile the
project's modules once per run rather than once per process. A prefix applies to every module,
though: a subprocess under it no longer sees the ``__pycache__`` folders of the standard library
and site-packages, and the first one to import torch, scipy or pandas in each run compiled them
from source (5 doc blocks: 4,030 files, 221 of them the project's; ``import torch,
sentence_transformers`` 12.9 s of CPU instead of 4.8 s; docs/performance.md, "The suite's
schedule, session 12"). Here the folder is seeded, before any test runs, with a link at each
place the prefix would look for an installed module's bytecode, to the file Python would read
without the prefix. Python checks such a file against its source as usual, and when it writes a
new one it replaces the link, never the installed file. The seeding runs in a thread of the run's
first process (a second or two) while the xdist workers start and collect; each test process
waits for it (`wait`) before its first test, so that no test's subprocess runs half-seeded.
"""

from __future__ import annotations

import fcntl
import os
import sys
import sysconfig
import threading
from pathlib import Path

#: A file in the folder that the seeding holds locked until it is done.
LOCK = ".seeding"
#: The ending of the plain (not -O) bytecode of this interpreter: ``.cpython-311.pyc``.
TAG = f".{sys.implementation.cache_tag}.pyc"


def installed_roots(project: Path) -> list[str]:
    """The folders whose compiled modules are linked: the standard library and every
    site-packages on ``sys.path``, not the project's tree (it has no bytecode of its own)."""
    paths = sysconfig.get_paths()
    candidates = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    candidates |= {p for p in sys.path if p.endswith("site-packages")}
    roots = []
    for candidate in sorted(candidates):
        real = os.path.realpath(candidate)
        if os.path.isdir(real) and not Path(real).is_relative_to(project):
            roots.append(real)
    # A root inside another (site-packages in the standard library's folder) is walked once.
    return [r for r in roots if not any(r != o and r.startswith(o + os.sep) for o in roots)]


def seed(prefix: str, roots: list[str]) -> int:
    """Link every ``__pycache__/*.pyc`` under ``roots`` where ``prefix`` puts the bytecode of
    its source (``<prefix>/<source folder>/<name>.pyc``); returns how many were linked."""
    linked = 0
    for root in roots:
        for folder, _subfolders, files in os.walk(root):
            if os.path.basename(folder) != "__pycache__":
                continue
            # Plain bytecode only: a subprocess under -O or -OO is not the suite's case.
            compiled = [name for name in files if name.endswith(TAG)]
            if not compiled:
                continue
            target = prefix + os.path.dirname(folder)
            os.makedirs(target, exist_ok=True)
            for name in compiled:
                try:
                    os.symlink(os.path.join(folder, name), os.path.join(target, name))
                except FileExistsError:
                    continue  # a subprocess compiled it meanwhile
                linked += 1
    return linked


def start(prefix: str, roots: list[str]) -> threading.Thread:
    """`seed` in a thread, holding `LOCK` from now until it is done (for `wait`)."""
    lock = os.open(os.path.join(prefix, LOCK), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)

    def run() -> None:
        try:
            seed(prefix, roots)
        finally:
            os.close(lock)  # releases it

    thread = threading.Thread(target=run, name="pycache-seed", daemon=True)
    thread.start()
    return thread


def wait(prefix: str) -> None:
    """Return once the seeding of ``prefix`` (by this or another process) is done."""
    try:
        lock = os.open(os.path.join(prefix, LOCK), os.O_RDONLY)
    except FileNotFoundError:
        return  # never seeded
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
    finally:
        os.close(lock)
