"""The security settings of a config: the ``[log]`` table (what stored data keeps and how it
is protected) and the ``[server]`` key file and signing window.

```toml
[log]
bodies = "redacted"                    # "full" (default) | "redacted" | "hash" | "none"
redact_patterns = { employee_id = "EMP-[0-9]{6}" }   # extra patterns -> [REDACTED:name]
hash_key_env = "AIGW_LOG_HASH_KEY"     # "hash" mode: HMAC-SHA256 with this key
encryption_key_env = "AIGW_LOG_KEY"    # encrypt the call log and the DuckDB cache file
encryption_crypto = "openssl"          # or "builtin" (DuckDB's mbedtls; see docs/security.md)
```

Secrets come from environment variables named here, never from the file. A named variable
that is unset or empty is a `ConfigError` at load time, not a surprise at the first call.
See docs/security.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aigw_lab.config_schema import NUMBER, TABLE, Key, Table
from aigw_lab.config_server import parse_server_extras  # re-exported: it was defined here
from aigw_lab.config_team_log import TEAM_LOG_KEYS
from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.store.encryption import CRYPTO_CHOICES, Encryption
from aigw_lab.store.redact import BODY_MODES, BodyPolicy, Redactor
from aigw_lab.store.spool import DURABILITY_LEVELS

__all__ = ["LogSettings", "parse_log_settings", "parse_server_extras", "LOG_TABLE"]


def _env_key(name: str, doc: str) -> Key:
    return Key(
        name=name,
        types=(str,),
        pattern=r"\w+",
        what="the name of an environment variable (letters, digits, _)",
        doc=doc,
        hint=f'{name} = "AIGW_LOG_KEY"; the secret itself never goes in the file',
    )


#: ``[log]`` (docs/security.md, docs/call_log.md).
LOG_TABLE = Table(
    keys=(
        Key(name="bodies", choices=BODY_MODES, what="a body mode", doc="what rows keep of bodies"),
        Key(
            name="redact_patterns",
            types=TABLE,
            items=(str,),
            what="a table of name = regular expression",
            hint='redact_patterns = { employee_id = "EMP-[0-9]{6}" }',
        ),
        _env_key("hash_key_env", 'the HMAC key of bodies = "hash"'),
        _env_key("encryption_key_env", "encrypts the call log and the DuckDB cache"),
        Key(
            name="encryption_crypto",
            choices=CRYPTO_CHOICES,
            what=f"one of {', '.join(CRYPTO_CHOICES)}",
            hint='"openssl" needs DuckDB\'s httpfs extension installed; "builtin" is DuckDB\'s '
            "weaker built-in crypto (see docs/security.md)",
        ),
        # Its levels live in aigw_lab.store.spool, imported only when a table sets it.
        Key(name="durability", types=(str,), what="a durability level"),
        Key(
            name="fsync_interval",
            types=NUMBER,
            low=0,
            high=60,
            what="a number of seconds from 0 to 60",
            hint="e.g. fsync_interval = 0.05 (0 syncs after every write)",
        ),
        Key(
            name="flush_interval",
            types=NUMBER,
            low=0,
            low_open=True,
            high=60,
            what="a number of seconds above 0, at most 60",
            doc="the oldest row's wait before the writer inserts its batch (unset: 5 s, or "
            '0.2 s with durability = "none"); longer costs the log\'s threads less per call, '
            "and other processes (`CallLog.snapshot`, `aigw-lab report` on a live log) see "
            "rows that much later",
            hint="e.g. flush_interval = 10 (see docs/call_log.md)",
        ),
        # Parsed by aigw_lab.config (GatewayConfig.max_body_chars).
        Key(name="max_body_chars", what="a number of characters"),
        # backend, url_env, team_spool: parsed by aigw_lab.config_team_log.
        *TEAM_LOG_KEYS,
    )
)


@dataclass(frozen=True)
class LogSettings:
    """``[log]``, resolved: the `BodyPolicy` every call-log row goes through and the
    `Encryption` of the call log and the DuckDB cache (None: not encrypted)."""

    bodies: str = "full"
    redact_patterns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    hash_key_env: str | None = None
    encryption_key_env: str | None = None
    body_policy: BodyPolicy = field(default_factory=BodyPolicy, repr=False)
    encryption: Encryption | None = field(default=None, repr=False)
    #: The crash spool's durability level and fsync batching (`aigw_lab.store.spool`);
    #: None leaves `CallLog`'s default.
    durability: str | None = None
    fsync_interval: float | None = None
    #: The writer's batch age (`CallLog`'s ``flush_interval``); None leaves its default.
    flush_interval: float | None = None

    def calllog_options(self) -> dict[str, Any]:
        """Keyword arguments for `aigw_lab.store.CallLog`: the settings the table sets."""
        options: dict[str, Any] = {}
        if self.body_policy.mode != "full":
            options["bodies"] = self.body_policy
        if self.encryption is not None:
            options["encryption"] = self.encryption
        if self.durability is not None:
            options["durability"] = self.durability
        if self.fsync_interval is not None:
            options["fsync_interval"] = self.fsync_interval
        if self.flush_interval is not None:
            options["flush_interval"] = self.flush_interval
        return options


def parse_log_settings(table: Any, source: str, env: Mapping[str, str]) -> LogSettings:
    """Validate ``[log]`` and read the secrets it names from ``env``."""
    where = f"{source}: [log]"
    LOG_TABLE.validate(table, where)
    bodies = table.get("bodies", "full")
    patterns = table.get("redact_patterns", {})
    try:
        redactor = Redactor(dict(patterns))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc
    hash_env = table.get("hash_key_env")
    hash_key = _secret(env, hash_env, where, "hash_key_env") if hash_env else None
    if hash_env and bodies != "hash":
        raise ConfigError(
            f'{where}: hash_key_env applies only to bodies = "hash" (bodies is {bodies!r})',
            hint='set bodies = "hash", or remove hash_key_env',
        )
    key_env = table.get("encryption_key_env")
    crypto = table.get("encryption_crypto", "openssl")
    encryption = None
    if key_env:
        try:
            encryption = Encryption(_secret(env, key_env, where, "encryption_key_env"), key_env,
                                    crypto)  # fmt: skip
        except StoreError as exc:
            raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc
    elif "encryption_crypto" in table:
        raise ConfigError(
            f"{where}: encryption_crypto is set but encryption_key_env is not",
            hint='add encryption_key_env = "AIGW_LOG_KEY" (the variable holding the key)',
        )
    durability, fsync_interval = _durability(table, where)
    if encryption is not None and durability not in (None, "none"):
        raise ConfigError(
            f"{where}: durability = {durability!r} cannot be used with encryption_key_env: "
            "the crash spool is not encrypted",
            hint="remove durability (an encrypted log runs without a spool) or the encryption",
        )
    flush_interval = table.get("flush_interval")
    return LogSettings(
        durability=durability,
        fsync_interval=fsync_interval,
        flush_interval=None if flush_interval is None else float(flush_interval),
        bodies=bodies,
        redact_patterns=MappingProxyType(dict(patterns)),
        hash_key_env=hash_env,
        encryption_key_env=key_env,
        body_policy=BodyPolicy(
            bodies, redactor, None if hash_key is None else hash_key.encode("utf-8")
        ),
        encryption=encryption,
    )


def _durability(table: Mapping[str, Any], where: str) -> tuple[str | None, float | None]:
    """``durability`` (``"os"``, ``"fsync"``, ``"none"``) and ``fsync_interval``: how the
    crash spool protects rows against the process being killed (docs/call_log.md)."""
    durability = table.get("durability")
    if durability is not None and durability not in DURABILITY_LEVELS:
        raise ConfigError(
            f"{where}: durability = {durability!r} is not a durability level",
            hint=f"use one of {', '.join(repr(d) for d in DURABILITY_LEVELS)} "
            "(see docs/call_log.md for what each costs)",
        )
    interval = table.get("fsync_interval")
    return durability, None if interval is None else float(interval)


def _secret(env: Mapping[str, str], name: str, where: str, key: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(
            f"{where}: {key} names {name}, which is unset or empty",
            hint=f"export {name}=<a long random secret> before starting (python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'), or remove "
            f"{key} from [log]",
        )
    return value
