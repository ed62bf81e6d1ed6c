"""Owner-only files for what the gateway keeps on disk: the call log, the cache database,
spill files and the gateway key file.

Prompts, answers and key hashes must not be readable by other users of the machine, so every
file aigw_lab creates is mode 0600 and every directory it creates 0700, from the first byte:
a file that is world-readable even for a moment can be opened by another user, who keeps the
open descriptor after a later ``chmod``. DuckDB creates its database files itself, with the
process umask, so `create_private_database` lets it create the file inside a fresh 0700
staging directory, tightens the file and links it into place.

Existing files and directories are left as they are: their owner chose their mode.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "copy_database",
    "create_private_database",
    "is_private_dir",
    "make_private_dirs",
    "open_private",
    "tighten",
]

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents as owner-only directories. Directories that
    already exist keep their mode. Raises `OSError` as ``os.mkdir`` does."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: theirs, leave its mode
        # mkdir's mode is masked by the umask; 0700 & ~umask is 0700 for any usual umask, but
        # an unusual umask (0o277, say) could leave it unusable to its owner.
        os.chmod(directory, PRIVATE_DIR_MODE)
    if not folder.is_dir():  # it exists, but as a file (as Path.mkdir(exist_ok=True) says)
        raise NotADirectoryError(20, "Not a directory", str(folder))


def create_private_database(path: Path, create: Callable[[Path], None]) -> bool:
    """Create the database file ``path`` readable by its owner only, without a moment when
    it is readable by anyone else: ``create(staging_path)`` makes the database (and closes
    it) inside a fresh 0700 staging directory next to ``path``; the file is then made 0600
    and hard-linked into place (renamed where links are unsupported).

    Returns False, leaving the existing file alone, when ``path`` appeared meanwhile.
    """
    staging = Path(tempfile.mkdtemp(prefix=".aigw-new-", dir=path.parent))  # mode 0700
    try:
        made = staging / path.name
        create(made)
        os.chmod(made, PRIVATE_FILE_MODE)
        try:
            os.link(made, path)  # fails if path exists: never replaces someone's file
        except FileExistsError:
            return False
        except OSError:
            if path.exists():
                return False
            os.replace(made, path)  # filesystems without hard links
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def open_private(path: Path, mode: str = "w") -> int:
    """A file descriptor of ``path`` opened for writing, created 0600 if it is new (an
    existing file keeps its mode). ``mode``: ``"w"`` truncates, ``"a"`` appends, ``"x"``
    requires a new file."""
    extra = {"w": os.O_TRUNC, "a": os.O_APPEND, "x": os.O_EXCL}[mode]
    flags = os.O_WRONLY | os.O_CREAT | extra
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)


def is_private_dir(folder: Path) -> bool:
    """Whether ``folder`` is a directory owned by this user with no group or other
    permissions, so that no one else can reach what is created in it (POSIX only;
    elsewhere False)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:
        return False
    try:
        info = os.stat(folder)
    except OSError:
        return False
    mode = info.st_mode
    return stat.S_ISDIR(mode) and info.st_uid == geteuid() and not stat.S_IMODE(mode) & 0o077


def tighten(path: Path) -> None:
    """Make ``path`` owner-only if it exists and this process owns it (DuckDB recreates its
    write-ahead log with the process umask after every checkpoint)."""
    geteuid = getattr(os, "geteuid", None)  # POSIX only; Windows has no such modes
    if geteuid is None:
        return
    try:
        info = os.stat(path)
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == geteuid():
            os.chmod(path, PRIVATE_FILE_MODE)
    except OSError:
        pass  # gone (checkpointed) or not ours: nothing to tighten


def copy_database(source: Path, folder: Path) -> Path:
    """Copy the DuckDB file ``source`` and its write-ahead log (``<name>.wal``, when there is
    one) into ``folder``; returns the copy's path. For reading a log another process holds
    open: DuckDB refuses a second process even read-only, but a copy opens."""
    copy = folder / source.name
    shutil.copyfile(source, copy)
    wal = source.with_name(source.name + ".wal")
    if wal.is_file():
        shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
    return copy
