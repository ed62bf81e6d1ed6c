"""A real PostgreSQL cluster on a loopback port, for tests and benches of the team log.

    with PostgresCluster.start_new() as pg:      # initdb + pg_ctl start, in a temp dir
        url = pg.url                             # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.stop(); pg.start()                    # an outage and a recovery

It runs Debian's binaries (``/usr/lib/postgresql/<version>/bin``, or ``AIGW_PG_BIN``).
PostgreSQL refuses to run as root, so under root (CI) every command runs as the
``postgres`` user through ``runuser``, in a data directory that user owns. Only
127.0.0.1 may connect (trust authentication, no Unix socket). `find_pg_bin` returns None
when the binaries are absent: tests skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "find_pg_bin"]

_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/15/bin")  # fmt: skip


def find_pg_bin(env: dict[str, str] | None = None) -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (``AIGW_PG_BIN`` first), or None."""
    env = dict(os.environ) if env is None else env
    for folder in ([env["AIGW_PG_BIN"]] if env.get("AIGW_PG_BIN") else []) + list(_CANDIDATES):
        path = Path(folder)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One throwaway PostgreSQL cluster: `start_new` creates and starts it, `close` stops
    it and deletes its files. ``fast``: no fsync (tests); False keeps PostgreSQL's
    defaults (benches of the write path)."""

    def __init__(self, bin_dir: Path, root: Path, port: int, *, fast: bool) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.fast = fast
        self.running = False

    @property
    def url(self) -> str:
        """A libpq URL of the cluster's ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start_new(cls, *, bin_dir: Path | None = None, fast: bool = True) -> PostgresCluster:
        """initdb a new cluster in a temporary directory and start it."""
        bin_dir = bin_dir or find_pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl not found (set AIGW_PG_BIN)")
        root = Path(tempfile.mkdtemp(prefix="aigw-pg-"))
        cluster = cls(bin_dir, root, _free_port(), fast=fast)
        try:
            if os.geteuid() == 0:
                shutil.chown(root, user="postgres", group="postgres")
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            # Loopback TCP only: no Unix socket, no other host.
            (cluster.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
            cluster.start()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr[-2000:]}")

    def start(self) -> None:
        """Start the (stopped) cluster; returns once it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.running = True

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: open connections are cut)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def close(self) -> None:
        """Stop the cluster and delete its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
