"""``aigw-lab simulate``: serve the simulated provider fleet over real HTTP.

Every answer it gives is simulated (model ids ``sim-...``, header ``x-aigw-simulated: true``).
"""

from __future__ import annotations

import argparse
from typing import Any

from aigw_lab.cli._args import finite_float, port
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError
from aigw_lab.sim.catalog import FAULT_KINDS
from aigw_lab.sim.fleet import SimulatedFleet
from aigw_lab.sim_server import DEFAULT_PORT, base_urls

__all__ = ["register", "run"]

# What each fault kind does, for --help (one entry per kind of FAULT_KINDS).
_FAULT_HELP = {
    "rate_limited": "HTTP 429 with a Retry-After header",
    "server_error": "HTTP 500",
    "unavailable": "HTTP 503",
    "overloaded": "HTTP 529 overloaded_error (Anthropic format; 503 elsewhere)",
    "timeout": "no answer until the client times out",
    "truncated": "streams cut before their final event",
    "malformed": "HTTP 200 with invalid JSON",
}


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a probability from 0 to 1")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "simulate",
        help=VERBS["simulate"],
        description="Serve the simulated provider fleet over HTTP, speaking the OpenAI Chat "
        "Completions, Anthropic Messages and Cloudflare Workers AI wire formats. All models "
        "and answers are simulated.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=port, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the answers, faults and latencies (default: %(default)s)",
    )
    parser.add_argument(
        "--time-scale",
        type=finite_float(),
        default=1.0,
        help="multiply the simulated latencies by this: 1 = realistic, 0 = no waiting "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="serve only these models (sim-... ids; default: the whole fleet)",
    )
    parser.add_argument(
        "--fault-rate",
        type=_probability,
        default=0.0,
        help="probability that a call fails, split evenly over the fault kinds below "
        "(default: %(default)s)",
    )
    for kind in FAULT_KINDS:
        what = _FAULT_HELP[kind]
        parser.add_argument(
            f"--{kind.replace('_', '-')}",
            dest=kind,
            type=_probability,
            default=None,
            metavar="P",
            help=f"probability of {what} (overrides --fault-rate)",
        )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Start the server and block until Ctrl-C; returns the process exit code."""
    # lazy: looked up when called, so a test can replace sim_server.serve (no real server)
    from aigw_lab.sim_server import serve

    faults: dict[str, Any] = {"fault_rate": args.fault_rate}
    faults.update({k: getattr(args, k) for k in FAULT_KINDS if getattr(args, k) is not None})
    # A bad setting raises ConfigError, which the CLI's main prints as a one-line error.
    fleet = SimulatedFleet(
        seed=args.seed, time_scale=args.time_scale, faults=faults, models=args.models
    )

    def announce(root: str) -> None:
        print(_banner(fleet, base_urls(root)), flush=True)

    try:
        serve(host=args.host, port=args.port, fleet=fleet, on_listening=announce)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, or the host is not an address of this machine
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            hint="pick another --port (0 = any free port), or a --host this machine has",
        ) from exc
    return 0


def _banner(fleet: Any, urls: dict[str, str]) -> str:
    models = ", ".join(m.id for m in fleet.models)
    active = {k: getattr(fleet.faults, k) for k in FAULT_KINDS if getattr(fleet.faults, k)}
    faults = ", ".join(f"{k}={v:g}" for k, v in active.items()) or "none"
    return "\n".join(
        [
            "aigw-lab simulated provider fleet -- every model and answer here is SIMULATED",
            f"  seed={fleet.seed} time_scale={fleet.time_scale:g} faults: {faults}",
            f"  models: {models}",
            "",
            f"  OpenAI Chat Completions    POST {urls['openai']}/chat/completions",
            f"  Anthropic Messages         POST {urls['anthropic']}/v1/messages",
            f"  Workers AI (native)        POST {urls['workers-ai']}",
            f"  Workers AI (OpenAI-compat) POST {urls['workers-ai-openai']}/chat/completions",
            f"  Model list                 GET  {urls['openai']}/models",
            "",
            "  Point the SDKs at it (any API key works):",
            f'    openai.OpenAI(base_url="{urls["openai"]}", api_key="unused")',
            f'    anthropic.Anthropic(base_url="{urls["anthropic"]}", api_key="unused")',
            "",
            "  Ctrl-C stops it.",
        ]
    )
