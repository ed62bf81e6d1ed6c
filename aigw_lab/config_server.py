"""``[server]`` of the gateway's TOML configuration: what ``aigw-lab serve`` listens on, the
gateway keys clients present, its timeouts and limits, and who a call's user is. Parsed
strictly, like the rest of `aigw_lab.config` (which re-exports these names)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigw_lab.config_schema import NUMBER, Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.server_limits import LIMIT_KEYS, ServerLimits, parse_server_limits

__all__ = ["ServerKeySpec", "ServerSettings", "parse_server", "parse_server_extras", "SERVER_TABLE"]

_ENV_HINT = (
    "key_env names the environment variable holding the secret; the secret itself never "
    "goes in the file"
)
#: One table of ``[server] keys``.
SERVER_KEY_TABLE = Table(
    keys=(
        Key(
            name="key_env",
            types=(str,),
            nonempty=True,
            required=True,
            what="a non-empty string",
            hint=_ENV_HINT,
            doc="the variable holding the secret",
        ),
        Key(
            name="name",
            types=(str,),
            nonempty=True,
            required=True,
            what="a non-empty string",
            doc="the key's name in logs and the key file",
        ),
        Key(name="tenant", types=(str,), what="a string", doc="its calls' tenant (default: name)"),
        Key(name="user", types=(str,), what="a string", doc="its calls' user"),
        Key(
            name="signing",
            choices=("off", "required"),
            what="a signing mode",
            doc='"required": signed requests only',
        ),
    ),
    hint="write it as { key_env = ..., name = ... }",
)
#: ``[server]`` (docs/serving.md); `ServerLimits` checks the values of its keys.
SERVER_TABLE = Table(
    keys=(
        Key(name="host", types=(str,), nonempty=True, what='an address string, e.g. "127.0.0.1"'),
        Key(name="port", types=(int,), low=0, high=65535, what="an integer from 0 to 65535"),
        Key(
            name="keys",
            types=(list,),
            array=True,
            table=SERVER_KEY_TABLE,
            what="a list",
            hint='keys = [{ key_env = "AIGW_KEY_TEAM_A", name = "team-a", tenant = "a" }]',
        ),
        Key(
            name="key_file",
            types=(str,),
            nonempty=True,
            what="a file path string",
            doc="the rotating key file, relative to the config file",
        ),
        Key(
            name="signing_window",
            types=NUMBER,
            low=1,
            high=3600,
            what="a number of seconds from 1 to 3600",
            hint="the default, 300, allows five minutes of clock skew and delay",
        ),
        # Issue 9: whether a body's `user` may set the per-user identity (budgets, limits).
        Key(name="trust_client_user", types=(bool,), what="true or false"),
        # ServerLimits checks their values (the serve command's flags build one too).
        *(
            Key(name=key, what="a positive number", doc="see docs/serving.md, Limits")
            for key in sorted(LIMIT_KEYS)
        ),
    )
)


@dataclass(frozen=True)
class ServerKeySpec:
    """One gateway key of ``[server] keys``: the NAME of the environment variable holding
    the secret, and who its calls are for (``tenant`` defaults to ``name``)."""

    name: str
    key_env: str
    tenant: str | None = None
    user: str | None = None
    signing: str = "off"  # "required": signed requests only (docs/security.md)


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: what ``aigw-lab serve`` listens on and the keys clients present
    (see docs/serving.md)."""

    host: str | None = None
    port: int | None = None
    keys: tuple[ServerKeySpec, ...] = ()
    #: Timeouts and limits (docs/serving.md, "Limits and timeouts").
    limits: ServerLimits = field(default_factory=ServerLimits)
    #: The rotating key file (`aigw_lab.server.keyfile`) and the signed-request window (s).
    key_file: str | None = None
    signing_window: float = 300.0
    #: Let a request body's ``user`` (``metadata.user_id``) be the call's user when the
    #: key fixes none; off by default, so per-user budgets and limits cannot be escaped by
    #: rotating the field (see docs/serving.md).
    trust_client_user: bool = False


def parse_server(table: Any, source: str, base_dir: Any = None) -> ServerSettings:
    """``[server]``: ``host``, ``port`` and ``keys = [{ key_env, name, tenant, user }]``."""
    where = f"{source}: [server]"
    SERVER_TABLE.validate(table, where)
    specs: list[ServerKeySpec] = []
    for i, key in enumerate(table.get("keys", [])):
        if any(spec.name == key["name"] for spec in specs):
            raise ConfigError(f"{where} keys #{i + 1}: name {key['name']!r} is used twice")
        specs.append(
            ServerKeySpec(key["name"], key["key_env"], key.get("tenant", key["name"]),
                          key.get("user"), key.get("signing", "off"))
        )  # fmt: skip
    trust_client_user = table.get("trust_client_user", False)
    return ServerSettings(
        table.get("host"),
        table.get("port"),
        tuple(specs),
        parse_server_limits(table, where),
        trust_client_user=trust_client_user,
        **parse_server_extras(table, where, base_dir),
    )


def parse_server_extras(table: Mapping[str, Any], where: str, base_dir: Any) -> dict[str, Any]:
    """``[server] key_file`` (resolved against the config's folder) and ``signing_window``
    (seconds a signed request stays valid), for `aigw_lab.config.ServerSettings`."""
    # Checked here too: `aigw-lab keys --config` reads these two keys alone.
    schema = SERVER_TABLE.by_name()
    for name in ("key_file", "signing_window"):
        schema[name].check(table.get(name), where)
    extras: dict[str, Any] = {}
    key_file = table.get("key_file")
    if key_file is not None:
        path = Path(key_file).expanduser()
        if base_dir is not None and not os.path.isabs(path):
            path = Path(base_dir) / path
        extras["key_file"] = str(path)
    window = table.get("signing_window")
    if window is not None:
        extras["signing_window"] = float(window)
    return extras
