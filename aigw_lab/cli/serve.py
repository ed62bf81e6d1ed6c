"""``aigw-lab serve``: run the gateway as an HTTP server with OpenAI- and Anthropic-compatible
endpoints, authenticating clients by the gateway keys of the config's ``[server]`` table.

Without ``--config`` it serves the simulated fleet (and says so). Without keys it refuses to
start unless ``--no-auth`` is given. SIGTERM or Ctrl-C shut it down gracefully: requests in
flight finish and the call log is flushed. Timeouts and limits come from ``[server]`` (see
`aigw_lab.server_limits.ServerLimits`); the flags of the same names override them. See
docs/serving.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError
from aigw_lab.server_limits import ServerLimits

__all__ = ["register", "run", "DEFAULT_PORT", "DEFAULT_DB"]

#: Port of ``aigw-lab serve`` unless the config or --port says otherwise (``simulate``
#: uses 8787).
DEFAULT_PORT = 8788
#: The call log of a server started without --db and without a config that names one.
DEFAULT_DB = "aigw-serve.duckdb"

_LOOPBACK = frozenset(("127.0.0.1", "::1", "localhost"))


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
            print(f"aigw-lab serve: {warmed}", flush=True)
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
    )

    def announce(root: str) -> None:
        print(_banner(gateway, config is None, root, keys, host), flush=True)

    try:
        serve(app, host, port, on_listening=announce, log_level=args.log_level)
    finally:
        gateway.close()  # already closed by a graceful shutdown; this covers the rest
    print("aigw-lab serve: stopped; call log flushed", file=sys.stderr, flush=True)
    return 0


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
