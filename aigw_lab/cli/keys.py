"""`aigw-lab keys`: manage the gateway key file (rotation without downtime).

    aigw-lab keys create team-a --tenant a --file keys.json     # prints the secret, once
    aigw-lab keys list --file keys.json
    aigw-lab keys rotate team-a --old-expires-in 1d --file keys.json
    aigw-lab keys revoke team-a --id 3f9a1c2b --file keys.json

``--file`` is the key file; ``--config gateway.toml`` takes it from ``[server] key_file``. A
running ``aigw-lab serve`` picks every change up on its next request: rotate, move the
clients to the new secret, then revoke the old one (or let ``--old-expires-in`` do it).
The secret is printed once, on stdout, and is never stored (see docs/security.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import help_without_subcommand
from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys",
        help=VERBS["keys"],
        description="Gateway keys in the key file of [server] key_file: several secrets per "
        "key name, each with an optional expiry; the server reloads the file on change.",
    )
    commands = parser.add_subparsers(dest="keys_command", metavar="ACTION")

    create = commands.add_parser(
        "create",
        help="add a key name with its first secret",
        description="Add a client key name to the key file with its first secret. The "
        "secret is printed once: store it now, it cannot be shown again.",
    )
    create.add_argument("name", help="the client's key name (tagged on its calls)")
    create.add_argument("--tenant", help="tenant of its calls (default: the name)")
    create.add_argument("--user", help="fixed user of its calls (default: the client's)")
    create.add_argument(
        "--signing",
        choices=("off", "required"),
        default="off",
        help="required: accept only HMAC-signed requests from this key (default: %(default)s)",
    )
    _expiry(create, "--expires-in", "the secret expires after this long (30d, 12h, ...)")
    _common(create)
    create.set_defaults(func=run_create)

    listing = commands.add_parser(
        "list",
        help="list key names and their secrets' ids and expiries",
        description="List the key names of the key file with their secrets' ids, creation "
        "and expiry times, and whether each is active, expired or revoked. The secrets "
        "themselves are never shown.",
    )
    _common(listing)
    listing.set_defaults(func=run_list)

    rotate = commands.add_parser(
        "rotate",
        help="add a new secret to a key (old ones stay)",
        description="Add a new secret to a key name, printed once. The old secrets keep "
        "working until they expire (--old-expires-in) or are revoked, so clients can switch "
        "without downtime.",
    )
    rotate.add_argument("name", help="the key name to give a new secret")
    _expiry(rotate, "--expires-in", "the new secret expires after this long (30d, 12h, ...)")
    _expiry(rotate, "--old-expires-in", "the old secrets expire after this long (e.g. 1d)")
    _common(rotate)
    rotate.set_defaults(func=run_rotate)

    revoke = commands.add_parser(
        "revoke",
        help="revoke secrets of a key (all without --id)",
        description="Revoke secrets of a key name: the ones named by --id, or every one. A "
        "running server refuses them once it reloads the changed file.",
    )
    revoke.add_argument("name", help="the key name whose secrets to revoke")
    revoke.add_argument(
        "--id",
        action="append",
        default=[],
        dest="ids",
        help="secret id to revoke (repeatable); default: every secret",
    )
    _common(revoke)
    revoke.set_defaults(func=run_revoke)
    parser.set_defaults(func=help_without_subcommand(parser))


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--file", help="the key file (JSON, created owner-only if missing)")
    where.add_argument("--config", help="a gateway config whose [server] key_file to use")


def _expiry(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    parser.add_argument(flag, type=_duration, help=text)


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 90s, 15m, 12h, 30d, 2w"
        )
    return float(match.group(1)) * _SECONDS[match.group(2)]


def _key_file(args: argparse.Namespace) -> Any:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.server.keyfile import KeyFile

    if args.file:
        return KeyFile(args.file)
    if args.config:
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.config import read_toml
        from aigw_lab.config_security import parse_server_extras

        # Only [server] key_file is read: the secrets other tables name (provider keys, the
        # log's encryption key) need not be set in the administrator's shell.
        path = Path(args.config)
        data = read_toml(path, "config", hint="pass the gateway's config file")
        server = data.get("server")
        where = f"{path}: [server]"
        extras = parse_server_extras(server, where, path.parent) if isinstance(server, dict) else {}
        if not extras.get("key_file"):
            raise ConfigError(
                f"{args.config} has no [server] key_file",
                hint='add key_file = "keys.json" to its [server] table, or pass --file',
            )
        return KeyFile(extras["key_file"])
    raise ConfigError("which key file?", hint="pass --file keys.json or --config gateway.toml")


def _after(seconds: float | None) -> float | None:
    return None if seconds is None else time.time() + seconds


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _announce(key_file: Any, name: str, secret: str, stored: Any, signing: str) -> None:
    print(secret)  # stdout: the secret alone, for $(...) or a secret manager
    expiry = f", expires {_when(stored.expires_at)}" if stored.expires_at else ""
    print(
        f"key {name!r}: new secret {stored.id}{expiry} in {key_file.path}. It is shown only "
        "now: store it in the client's secret manager.",
        file=sys.stderr,
    )
    if signing == "required":
        print(
            f"  signing required: sign requests with key id {stored.id} "
            "(aigw_lab.server.signing.signing_hook)",
            file=sys.stderr,
        )


def run_create(args: argparse.Namespace) -> int:
    key_file = _key_file(args)
    secret, stored = key_file.create(
        args.name,
        tenant=args.tenant,
        user=args.user,
        signing=args.signing,
        expires_at=_after(args.expires_in),
    )
    _announce(key_file, args.name, secret, stored, args.signing)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    key_file = _key_file(args)
    secret, stored = key_file.rotate(
        args.name, expires_at=_after(args.expires_in), old_expire_at=_after(args.old_expires_in)
    )
    signing = key_file.load().get(args.name).signing
    _announce(key_file, args.name, secret, stored, signing)
    if args.old_expires_in is None:
        print(
            f"  the old secrets stay valid: revoke them once clients use {stored.id} "
            f"(aigw-lab keys revoke {args.name} --id OLD_ID)",
            file=sys.stderr,
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    key_file = _key_file(args)
    revoked = key_file.revoke(args.name, secret_ids=tuple(args.ids))
    if revoked:
        print(f"key {args.name!r}: revoked {', '.join(revoked)}")
    else:
        print(f"key {args.name!r}: nothing to revoke (already revoked)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    key_file = _key_file(args)
    data = key_file.load(missing_ok=True)
    now = time.time()
    print(f"{key_file.path}: {len(data.keys)} keys")
    print(f"{'name':<20} {'tenant':<12} {'signing':<8} {'secret':<8} {'state':<8} "
          f"{'created':<20} {'expires':<20}")  # fmt: skip
    for key in data.keys:
        for stored in key.secrets or ():
            print(
                f"{key.name:<20} {key.tenant or '-':<12} {key.signing:<8} {stored.id:<8} "
                f"{stored.state(now):<8} {_when(stored.created_at):<20} "
                f"{_when(stored.revoked_at or stored.expires_at):<20}"
            )
    return 0
