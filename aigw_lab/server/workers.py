"""``aigw-lab serve --workers N``: N worker processes serving one listening socket.

The parent binds the socket once (so ``--port 0`` and a busy port behave as with one
process), then starts N copies of ``aigw-lab serve`` that inherit the socket's descriptor
(``--worker-fd``) and each build their own gateway from the config. The kernel hands each
new connection to one of the processes blocked in ``accept``. Chosen over uvicorn's own
multi-process mode, which needs an import string and rebuilds its socket and signal
handling, and over SO_REUSEPORT, which cannot share a port-0 bind and would let a stale
process on the same port take connections silently.

The parent only supervises: SIGTERM or SIGINT is passed on to every worker as SIGTERM, and
each worker drains gracefully (requests in flight finish, the call log is flushed). The
workers run in their own process group, so Ctrl-C in a terminal reaches the parent alone
and each worker gets exactly one signal (a second one would make uvicorn skip the drain).
A worker whose parent dies (``kill -9``) notices within a second and stops too. The
parent gives the workers one private folder for their Prometheus counters
(``PROMETHEUS_MULTIPROC_DIR``), so a scrape of ``/metrics`` on any worker shows the whole
server's counts.

Before starting N > 1 workers, `check_workers` refuses configs whose state would multiply:
rate limits, budgets, caches or breakers held in each process's memory (the fix is
``[state] backend = "redis"``), and a plain DuckDB call log, which one process alone can
write (the fix is the team log, ``[log] backend = "postgres"``, beside which each worker
keeps its own local file, see `worker_log_path`, or ``[gateway] log = false``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = [
    "WORKER_HEADER",
    "check_workers",
    "run_workers",
    "watch_parent",
    "worker_log_path",
    "WorkerTagged",
]

#: Response header naming the worker that served a request (``<index>/<pid>``), sent only
#: with ``--workers`` above 1.
WORKER_HEADER = b"x-aigw-worker"

#: The variable naming the workers' shared metrics folder (prometheus-client's own).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds the parent waits for its workers to drain after passing a signal on, before it
#: kills those still running.
DRAIN_TIMEOUT_S = 60.0


def check_workers(config: Any, workers: int, *, logs: bool) -> list[str]:
    """Refuse (`ConfigError`) a config that ``workers`` processes cannot share; returns the
    warnings to print. ``config`` is a `GatewayConfig` (None: the simulated fleet);
    ``logs`` says whether the server would write a call log."""
    if workers <= 1:
        return []
    warnings: list[str] = []
    held = _stateful_tables(config)
    redis = config is not None and config.state is not None and config.state.backend == "redis"
    if held and not redis:
        raise ConfigError(
            f"--workers {workers} would give each worker its own {', '.join(held)} "
            f"(a limit of 10 would admit {10 * workers})",
            hint='add [state] backend = "redis" with url_env (docs/deployment.md, "Shared '
            'state on Redis or Valkey"), or serve with --workers 1',
        )
    if not held:
        warnings.append(
            "the config has no rate limits, budgets, caches or breakers: the workers share "
            "nothing but the port"
        )
    if logs and (config is None or config.team_log is None):
        raise ConfigError(
            f"--workers {workers}: a DuckDB call log can be written by one process only",
            hint='add [log] backend = "postgres" (the team log; each worker then keeps its '
            "own calls.wN.duckdb beside it, docs/deployment.md) or set [gateway] log = false",
        )
    return warnings


def _stateful_tables(config: Any) -> list[str]:
    """The config's tables whose state lives in each process unless shared."""
    if config is None:
        return []
    tables = (
        ("rate limits", config.rate_limits),
        ("budgets", config.budgets),
        ("exact cache", config.cache),
        ("semantic cache", config.semantic_cache),
        ("circuit breakers", config.health),
    )
    return [name for name, table in tables if table is not None]


def worker_log_path(path: str, index: int) -> str:
    """Worker ``index``'s own DuckDB file beside ``path``: ``calls.duckdb`` ->
    ``calls.w0.duckdb``; a name without a suffix gets ``.w0`` appended."""
    p = Path(path)
    if p.suffix:
        return str(p.with_name(f"{p.stem}.w{index}{p.suffix}"))
    return str(p.with_name(f"{p.name}.w{index}"))


class WorkerTagged:
    """An ASGI app wrapping ``app`` that adds ``x-aigw-worker: <index>/<pid>`` to every
    response, so operators (and tests) see which worker answered. ``limits`` and ``busy``
    are the wrapped app's (the runner reads them)."""

    def __init__(self, app: Any, index: int, pid: int) -> None:
        self.app = app
        self.limits = getattr(app, "limits", None)
        self.busy = getattr(app, "busy", None)
        self._tag = (WORKER_HEADER, f"{index}/{pid}".encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tag = self._tag

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        await self.app(scope, receive, tagged)


def watch_parent(on_orphaned: Callable[[], object], *, every_s: float = 1.0) -> threading.Thread:
    """Call ``on_orphaned`` once when this process's parent has died (its parent id
    changes), checking every ``every_s`` seconds in a daemon thread."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        on_orphaned()

    thread = threading.Thread(target=watch, name="aigw-parent-watch", daemon=True)
    thread.start()
    return thread


def run_workers(
    sock: socket.socket,
    workers: int,
    worker_argv: Callable[[int], Sequence[str]],
    *,
    on_started: Callable[[list[int]], object] | None = None,
) -> int:
    """Start ``workers`` processes (``worker_argv(index)``: each one's command line; the
    socket's descriptor is passed to them), pass SIGTERM/SIGINT on to them, wait for all to
    end; returns 0 if every worker exited cleanly after a signal, else 1 (the first to fail
    stops the others)."""
    fd = sock.fileno()
    stopping = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    # One /metrics for the whole server: every worker's Prometheus counters go to files in
    # a private folder (prometheus-client's multiprocess mode), which any worker's scrape
    # sums. New (so empty) at start, owner-only, removed when the workers are gone.
    metrics_dir = tempfile.mkdtemp(prefix="aigw-metrics-")
    env = {**os.environ, METRICS_DIR_ENV: metrics_dir}

    def stop_all(*_: object) -> None:
        stopping.set()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(workers):
            # process_group=0: Ctrl-C in a terminal reaches the parent only (see the module).
            procs.append(
                subprocess.Popen(list(worker_argv(index)), pass_fds=(fd,), process_group=0, env=env)
            )
            if stopping.is_set():
                stop_all()
        if on_started is not None:
            on_started([proc.pid for proc in procs])
        failed = False
        while any(proc.poll() is None for proc in procs):
            if not stopping.is_set() and any(proc.poll() not in (None, 0) for proc in procs):
                failed = True
                print("aigw-lab serve: a worker failed; stopping the others", file=sys.stderr)
                stop_all()
            stopping.wait(0.2)
            if stopping.is_set():
                break
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                failed = True
        return 1 if failed or any(proc.returncode != 0 for proc in procs) else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in procs:  # anything still running (an exception above) dies with us
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)
