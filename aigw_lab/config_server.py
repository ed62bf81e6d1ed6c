"""``[server]`` of the gateway's TOML configuration: what ``aigw-lab serve`` listens on, the
gateway keys clients present, its timeouts and limits, and who a call's user is. Parsed
strictly, like the rest of `aigw_lab.config` (which re-exports these names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aigw_lab._keys import reject_unknown_keys
from aigw_lab.errors import ConfigError
from aigw_lab.server_limits import LIMIT_KEYS, ServerLimits, parse_server_limits

__all__ = ["ServerKeySpec", "ServerSettings", "parse_server"]

_SERVER_KEYS = {"host", "port", "keys", "key_file", "signing_window"} | LIMIT_KEYS
# Issue 9: whether a body's `user` may set the per-user identity (budgets, limits).
_SERVER_KEYS |= {"trust_client_user"}
_SERVER_KEY_KEYS = {"key_env", "name", "tenant", "user", "signing"}


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
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table", hint="write it as [server]")
    reject_unknown_keys(table, _SERVER_KEYS, where)
    host = table.get("host")
    if host is not None and (not isinstance(host, str) or not host):
        raise ConfigError(f'{where}: host must be an address string, e.g. "127.0.0.1"')
    port = table.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 <= port <= 65535):  # fmt: skip
        raise ConfigError(f"{where}: port = {port!r} must be an integer from 0 to 65535")
    keys = table.get("keys", [])
    if not isinstance(keys, list):
        raise ConfigError(
            f"{where}: keys must be a list",
            hint='keys = [{ key_env = "AIGW_KEY_TEAM_A", name = "team-a", tenant = "a" }]',
        )
    specs: list[ServerKeySpec] = []
    for i, key in enumerate(keys):
        at = f"{where} keys[{i}]"
        if not isinstance(key, Mapping):
            raise ConfigError(f"{at} must be a table like {{ key_env = ..., name = ... }}")
        reject_unknown_keys(key, _SERVER_KEY_KEYS, at)
        for field_name in ("key_env", "name"):
            if not isinstance(key.get(field_name), str) or not key[field_name]:
                raise ConfigError(
                    f"{at} needs {field_name} (a non-empty string)",
                    hint="key_env names the environment variable holding the secret; the "
                    "secret itself never goes in the file",
                )
        for field_name in ("tenant", "user"):
            if field_name in key and not isinstance(key[field_name], str):
                raise ConfigError(f"{at}: {field_name} must be a string")
        if key.get("signing", "off") not in ("off", "required"):
            raise ConfigError(f'{at}: signing must be "off" or "required"')
        if any(spec.name == key["name"] for spec in specs):
            raise ConfigError(f"{at}: name {key['name']!r} is used twice")
        specs.append(
            ServerKeySpec(key["name"], key["key_env"], key.get("tenant", key["name"]),
                          key.get("user"), key.get("signing", "off"))
        )  # fmt: skip
    from aigw_lab.config_security import parse_server_extras

    trust_client_user = table.get("trust_client_user", False)
    if not isinstance(trust_client_user, bool):
        raise ConfigError(f"{where}: trust_client_user must be true or false")
    return ServerSettings(
        host,
        port,
        tuple(specs),
        parse_server_limits(table, where),
        trust_client_user=trust_client_user,
        **parse_server_extras(table, where, base_dir),
    )
