"""``aigw-lab serve``: run the gateway as an HTTP server with OpenAI- and Anthropic-compatible
endpoints, authenticating clients by the gateway keys of the config's ``[server]`` table.

Without ``--config`` it serves the simulated fleet (and says so). Without keys it refuses to
start unless ``--no-auth`` is given. SIGTERM or Ctrl-C shut it down gracefully: requests in
flight finish and the call log is flushed. Timeouts and limits come from ``[server]`` (see
`aigw_lab.server_limits.ServerLimits`); the flags of the same names override them. See
docs/serving.md. ``--workers N`` runs N processes on the port (`aigw_lab.server.workers`;
docs/deployment.md, "Serve on every core").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError
from aigw_lab.server_limits import ServerLimits

__all__ = ["register", "run", "DEFAULT_PORT", "DEFAULT_DB", "GC_FREEZE_ENV", "gc_freezer"]

#: Port of ``aigw-lab serve`` unless the config or --port says otherwise (``simulate``
#: uses 8787).
DEFAULT_PORT = 8788
#: The call log of a server started without --db and without a config that names one.
DEFAULT_DB = "aigw-serve.duckdb"

_LOOPBACK = frozenset(("127.0.0.1", "::1", "localhost"))

#: The variable that turns the garbage-collector freeze after start-up off ("0"), for
#: measuring it (bench/bench_serve_workers.py --gc-compare); unset or "1": on.
GC_FREEZE_ENV = "AIGW_SERVE_GC_FREEZE"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port from 0 to 65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


#: Flags overriding ``[server]`` limits: (flag, ServerLimits field, type, help).
_LIMIT_FLAGS = (
    ("--header-timeout", "header_timeout", _seconds,
     "seconds a client has to send its request headers (default 10)"),
    ("--body-timeout", "body_timeout", _seconds,
     "seconds a client has to send its request body; 408 past it (default 30)"),
    ("--keepalive-timeout", "keepalive_timeout", _seconds,
     "seconds an idle keep-alive connection stays open (default 5)"),
    ("--max-connections", "max_connections", _count,
     "open connections; past it 503 with Retry-After (default 1000)"),
    ("--max-requests-in-flight", "max_requests_in_flight", _count,
     "requests served at once; past it 503 with Retry-After (default 512)"),
    ("--max-body-bytes", "max_body_bytes", _count,
     "largest request body; 413 past it (default 32 MiB)"),
)  # fmt: skip


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "serve",
        help=VERBS["serve"],
        description="Serve the gateway over HTTP: POST /v1/chat/completions (OpenAI), "
        "POST /v1/messages (Anthropic), GET /v1/models. Clients authenticate with the "
        "gateway keys of the config's [server] table; every call is logged. See "
        "docs/serving.md.",
    )
    parser.add_argument(
        "--config",
        metavar="GATEWAY.toml",
        help="gateway config file (default: the simulated fleet, no real provider)",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help=f"the DuckDB call log (default: the config's [gateway] db, else {DEFAULT_DB})",
    )
    parser.add_argument(
        "--host", help="address to listen on (default: the config's, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        help=f"port to listen on; 0 takes a free one (default: the config's, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="accept every client without a key (only for local experiments)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="how much the HTTP server (uvicorn) logs (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_count,
        default=1,
        help="processes serving the port (default 1); above 1 needs [state] backend = "
        '"redis" when the config has limits, budgets, caches or breakers, and the team log '
        'or no log (docs/deployment.md, "Serve on every core")',
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="event loop; auto takes uvloop when installed (pip install 'aigw-lab[fast-serve]') "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--http",
        default="auto",
        choices=["auto", "httptools", "h11", "aigw"],
        help="HTTP front; auto takes aigw, our own protocol on httptools' parser (it times "
        "every request's headers, also those arriving during an answer), when httptools is "
        "installed, else h11; httptools and h11 are uvicorn's protocols (default: %(default)s)",
    )
    # A --workers worker's inherited listening socket and its index (set by the parent).
    parser.add_argument(
        "--worker-fd",
        type=int,
        help="internal, set by a --workers parent: the listening socket a worker inherits",
    )
    parser.add_argument(
        "--worker-index",
        type=int,
        default=0,
        help="internal, set by a --workers parent: this worker's index (default: %(default)s)",
    )
    limits = parser.add_argument_group(
        "timeouts and limits", "override the config's [server] values (docs/serving.md)"
    )
    for flag, dest, kind, text in _LIMIT_FLAGS:
        limits.add_argument(flag, dest=dest, type=kind, help=text)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the gateway, serve until SIGTERM/Ctrl-C; returns the process exit code. A
    `ConfigError` propagates to the CLI's main, which prints it as one line (exit 2)."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.config import load_config
    from aigw_lab.gateway.gateway import Gateway
    from aigw_lab.server import GatewayApp, KeyRing, serve
    from aigw_lab.server.limits import resolve_http
    from aigw_lab.server.workers import WorkerTagged, watch_parent, worker_log_path

    check_loop(args.loop)
    freeze = gc_freezer(os.environ)  # a bad value is refused before anything is built
    resolve_http(args.http)  # refused before anything is built if httptools is missing
    config = load_config(args.config) if args.config else None
    settings = config.server if config is not None else None
    keys: KeyRing | None = None
    if not args.no_auth:
        if settings is None or not (settings.keys or settings.key_file):
            raise ConfigError(
                "no gateway keys are configured, so every client would be let in",
                hint='add [server] keys = [{ key_env = "AIGW_KEY_TEAM_A", name = "team-a" }] '
                'or key_file = "keys.json" (managed by aigw-lab keys) to the config (see '
                "docs/serving.md), or pass --no-auth for local use",
            )
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.server.keyfile import KeyFile

        key_file = KeyFile(settings.key_file) if settings.key_file else None
        keys = KeyRing.from_specs(
            settings.keys, os.environ, key_file=key_file, signing_window=settings.signing_window
        )
    host = args.host or (settings.host if settings and settings.host else "127.0.0.1")
    port = args.port if args.port is not None else (
        settings.port if settings and settings.port is not None else DEFAULT_PORT
    )  # fmt: skip

    logs = config is None or bool(args.db) or config.log
    if args.workers > 1 and args.worker_fd is None:
        return _supervise(args, config, host, port, logs=logs)
    worker = args.worker_fd is not None
    if worker and logs:
        # Each worker writes its own local file (beside the team log; see check_workers).
        base = args.db or (config.db if config is not None else None) or DEFAULT_DB
        args.db = base if base == ":memory:" else worker_log_path(base, args.worker_index)

    if config is None:
        gateway = Gateway.simulated_fleet(log=args.db or DEFAULT_DB)
    elif args.db or (config.log and config.db is None):
        # A server's log must outlive it: never the in-memory default.
        gateway = Gateway.from_config(args.config, log=args.db or DEFAULT_DB)
    else:
        gateway = Gateway.from_config(args.config)  # the config's db, or no log at all
    if config is not None and config.cache is not None:
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.cli.warm import warm_at_startup

        try:  # before listening: the server is ready once its caches are warm
            warmed = warm_at_startup(config, gateway)
        except BaseException:
            gateway.close()
            raise
        if warmed:
            say(f"aigw-lab serve: {warmed}")
    overrides = {
        dest: getattr(args, dest)
        for _, dest, _, _ in _LIMIT_FLAGS
        if getattr(args, dest, None) is not None
    }
    limits = replace(settings.limits if settings else ServerLimits(), **overrides)
    app = GatewayApp(
        gateway,
        keys,
        close_gateway=True,
        limits=limits,
        trust_client_user=bool(settings is not None and settings.trust_client_user),
        on_started=freeze,
    )

    def announce(root: str) -> None:
        say(_banner(gateway, config is None, root, keys, host))

    served: Any = app
    sock = None
    on_server = None
    if worker:
        served = WorkerTagged(app, args.worker_index, os.getpid())
        sock = socket.socket(fileno=args.worker_fd)
        log_path = getattr(gateway.log, "path", None) or "off"

        def announce(root: str) -> None:
            say(f"aigw-lab serve: worker {args.worker_index} (pid {os.getpid()}) "
                f"serving {root}; call log: {log_path}")  # fmt: skip

        def on_server(server: Any) -> None:
            # The parent died without stopping us (kill -9): stop, drain, flush.
            watch_parent(lambda: server.handle_exit(signal.SIGTERM, None))

    try:
        serve(served, host, port, on_listening=announce, log_level=args.log_level,
              limits=limits, sock=sock, loop=args.loop, on_server=on_server,
              http=args.http)  # fmt: skip
    finally:
        gateway.close()  # already closed by a graceful shutdown; this covers the rest
    say("aigw-lab serve: stopped; call log flushed", sys.stderr)
    return 0


def gc_freezer(environ: Mapping[str, str], gc: Any = None) -> Callable[[], None] | None:
    """What serve calls once started (imports done, gateway built, caches and policies
    warm, not yet accepting requests): a collection, then `gc.freeze`; None when
    ``environ[GC_FREEZE_ENV]`` is "0". A `ConfigError` for any other value than "0", "1" or
    empty. ``gc`` is the `gc` module unless given."""
    value = environ.get(GC_FREEZE_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ConfigError(
            f"{GC_FREEZE_ENV} must be 0 or 1, not {value[:20]!r}",
            hint=f"unset {GC_FREEZE_ENV} (the default freezes) or set it to 0 to turn it off",
        )
    if value == "0":
        return None
    if gc is None:
        import gc  # lazy: only serve touches the collector

    def freeze() -> None:
        # Why: a served process holds ~100k start-up objects (DuckDB's, pyarrow's, pandas'
        # imports, the config, the gateway) that live as long as it does, yet every full
        # (gen-2) collection walks them all again; with the call log on that was ~15 us
        # per call at 2,000 calls/s. Frozen objects move to a permanent generation that
        # collections skip. Collecting first keeps start-up garbage out of it (frozen
        # garbage would never be freed). The library never does this (the process is
        # its user's); serve is our own application. With --workers each worker is its
        # own process (started with exec, not fork) and freezes after its own start-up.
        gc.collect()
        gc.freeze()

    return freeze


def say(text: str, stream: Any = None) -> None:
    """Write ``text`` and its newline to ``stream`` (stdout unless given) in one write.

    With ``--workers`` several processes share one stdout and stderr. ``print`` writes its
    text and its newline separately where Python's output is unbuffered (``PYTHONUNBUFFERED``,
    ``-u``), so two workers announcing themselves at once came out as one line holding both
    and an empty line, and a reader waiting for one line per worker waited for ever. One
    write of a short line to a pipe is atomic."""
    stream = sys.stdout if stream is None else stream
    stream.write(text + "\n")
    stream.flush()


def check_loop(loop: str, find_spec: Any = None) -> None:
    """Refuse ``--loop uvloop`` when uvloop is not installed (`ConfigError` naming the
    install command); ``find_spec`` is `importlib.util.find_spec` unless given."""
    if loop != "uvloop":
        return
    if find_spec is None:
        # lazy: only --loop uvloop needs it
        from importlib.util import find_spec
    if find_spec("uvloop") is None:
        raise ConfigError(
            "--loop uvloop: uvloop is not installed",
            hint="pip install 'aigw-lab[fast-serve]', or use --loop auto",
        )


def _supervise(args: argparse.Namespace, config: Any, host: str, port: int, *, logs: bool) -> int:
    """``--workers N`` above 1: check the config can be shared, bind the port, run N worker
    processes on it until SIGTERM/Ctrl-C (see `aigw_lab.server.workers`)."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.server.runner import bind_socket, root_url
    from aigw_lab.server.workers import check_workers, run_workers

    for warning in check_workers(config, args.workers, logs=logs):
        say(f"aigw-lab serve: warning: {warning}", sys.stderr)
    sock = bind_socket(host, port)
    root = root_url(host, sock.getsockname()[1])

    def started(pids: list[int]) -> None:
        listed = ", ".join(map(str, pids))
        text = f"aigw-lab gateway with {args.workers} workers (pids {listed})\n"
        text += f"  listening on {root}\n  Ctrl-C or SIGTERM stops them all."
        say(text)

    try:
        code = run_workers(sock, args.workers, lambda i: _worker_argv(args, sock.fileno(), i),
                           on_started=started)  # fmt: skip
    finally:
        sock.close()
    say("aigw-lab serve: all workers stopped; call logs flushed", sys.stderr)
    return code


def _worker_argv(args: argparse.Namespace, fd: int, index: int) -> list[str]:
    """The command line of worker ``index``: this serve's options, plus the socket."""
    argv = [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--log-level", args.log_level]
    argv += ["--loop", args.loop, "--http", args.http]
    argv += ["--worker-fd", str(fd), "--worker-index", str(index)]
    for flag, value in (("--config", args.config), ("--db", args.db), ("--host", args.host)):
        if value:
            argv += [flag, value]
    if args.no_auth:
        argv.append("--no-auth")
    for flag, dest, _, _ in _LIMIT_FLAGS:
        if getattr(args, dest, None) is not None:
            argv += [flag, str(getattr(args, dest))]
    return argv


def _banner(gateway: Any, simulated: bool, root: str, keys: Any, host: str) -> str:
    log = gateway.log
    lines = []
    if simulated:
        lines.append(
            "aigw-lab gateway over the SIMULATED fleet -- every model and answer is simulated "
            "(pass --config for real providers)"
        )
    else:
        lines.append("aigw-lab gateway")
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.server.app import served_models

    models = [model for model, _ in served_models(gateway)]
    lines += [
        f"  listening on {root}",
        f"  OpenAI Chat Completions  POST {root}/v1/chat/completions",
        f"  Anthropic Messages       POST {root}/v1/messages",
        f"  Model list               GET  {root}/v1/models",
        f"  models: {', '.join(models) or '(any the providers accept)'}",
        f"  call log: {getattr(log, 'path', None) or 'off'}",
    ]
    recovered = getattr(log, "recovered", 0)
    if recovered:
        # Rows a killed process left in the crash spool, written when the log was opened.
        lines.append(
            f"  recovered {recovered} rows from the crash spool of a process that died "
            "(calls in flight then are status 'interrupted')"
        )
    if keys is None:
        lines.append("  authentication: OFF (--no-auth): any client may call")
        if host not in _LOOPBACK:
            lines.append(f"  WARNING: listening on {host} without authentication")
    else:
        lines.append(f"  gateway keys: {', '.join(keys.names)}")
    lines += [
        "",
        f'  openai.OpenAI(base_url="{root}/v1", api_key="<gateway key>")',
        f'  anthropic.Anthropic(base_url="{root}", api_key="<gateway key>")',
        "",
        "  Ctrl-C or SIGTERM stops it.",
    ]
    return "\n".join(lines)
