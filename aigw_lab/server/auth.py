"""Gateway keys: who is calling the server.

Clients present a *gateway* key (``Authorization: Bearer KEY``, as the OpenAI SDK sends it,
or ``x-api-key: KEY``, as the Anthropic SDK does). Each key maps to a `ClientIdentity` whose
tenant and user every call of that client carries, so per-tenant budgets and rate limits
apply and the call log shows who called. The upstream providers' keys never leave the
gateway, and no client key is ever sent upstream.

Keys live in environment variables named by the config (``[server] keys``), never in the
file. Lookups compare the SHA-256 of the presented key with every configured key's, always
all of them, with `hmac.compare_digest`: neither the time taken nor an early exit tells a
caller how much of a guess was right.

Keys can also come from a key file (``[server] key_file``, `aigw_lab.server.keyfile`): several
secrets per name, each with an optional expiry, re-read when the file changes, so keys rotate
without a restart. A key with ``signing = "required"`` is accepted only on requests signed
with it (`aigw_lab.server.signing`), never as a bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING

from aigw_lab.errors import ConfigError
from aigw_lab.server.keyfile import (
    KeyFile,
    KeyFileData,
    KeyName,
    derive_signing_key,
    secret_id,
)
from aigw_lab.server.signing import SignatureChecker

if TYPE_CHECKING:
    from aigw_lab.config import ServerKeySpec

__all__ = ["ClientIdentity", "KeyRing", "NEEDS_BODY", "presented_key"]

_log = logging.getLogger("aigw_lab.server")

#: `KeyRing.authenticate`'s answer for a signed request checked before its body was read.
NEEDS_BODY = object()


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who a gateway key belongs to. ``tenant`` and ``user`` go on every call it makes
    (a fixed ``user`` overrides the one the client sends)."""

    name: str
    # tenant and user by name only: both optional strings, and a swap would bill one
    # tenant's calls to another.
    _: KW_ONLY
    tenant: str | None = None
    user: str | None = None
    #: "required": only signed requests are accepted for this key (see signing.py).
    signing: str = "off"


class KeyRing:
    """The configured gateway keys and the identity of each: secrets given directly (from
    environment variables) and, optionally, the secrets of a key file, re-read when it
    changes. ``clock`` decides key-file expiries and signed requests' freshness;
    ``signing_window`` is the replay window in seconds."""

    __slots__ = ("_entries", "_signing_keys", "_key_file", "_file_data", "_file_stamp",
                 "_clock", "checker")  # fmt: skip

    def __init__(
        self,
        keys: Mapping[str, ClientIdentity],
        *,
        key_file: KeyFile | None = None,
        clock: Callable[[], float] = time.time,
        signing_window: float = 300.0,
    ) -> None:
        entries: list[tuple[bytes, ClientIdentity]] = []
        # Env keys that may sign: key id (the name) -> (signing key, identity).
        self._signing_keys: dict[str, tuple[bytes, ClientIdentity]] = {}
        for secret, identity in keys.items():
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"gateway key {identity.name!r} is empty")
            entries.append((_digest(secret), identity))
            if identity.signing == "required":
                self._signing_keys[identity.name] = (derive_signing_key(secret), identity)
        self._entries = tuple(entries)
        self._clock = clock
        self.checker = SignatureChecker(window=signing_window, clock=clock)
        self._key_file = key_file
        self._file_data = KeyFileData()
        self._file_stamp: object = None
        if key_file is not None:
            self._file_stamp = key_file.stamp()
            self._file_data = key_file.load(missing_ok=True)

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[ServerKeySpec],
        env: Mapping[str, str],
        *,
        key_file: KeyFile | None = None,
        clock: Callable[[], float] = time.time,
        signing_window: float = 300.0,
    ) -> KeyRing:
        """Read each key's secret from the environment variable its spec names."""
        keys: dict[str, ClientIdentity] = {}
        for spec in specs:
            secret = env.get(spec.key_env, "")
            if not secret:
                raise ConfigError(
                    f"gateway key {spec.name!r}: environment variable {spec.key_env} is unset "
                    "or empty",
                    hint=f"export {spec.key_env}=<a long random secret> before starting, or "
                    "remove the key from [server] keys",
                )
            if secret in keys:
                raise ConfigError(
                    f"gateway keys {keys[secret].name!r} and {spec.name!r} have the same secret",
                    hint="give each client its own key",
                )
            signing = getattr(spec, "signing", "off")
            keys[secret] = ClientIdentity(
                spec.name, tenant=spec.tenant, user=spec.user, signing=signing
            )
        return cls(keys, key_file=key_file, clock=clock, signing_window=signing_window)

    def __len__(self) -> int:
        return len(self._entries) + len(self._file_data.keys)

    @property
    def names(self) -> list[str]:
        self._refresh()
        return [identity.name for _, identity in self._entries] + [
            key.name for key in self._file_data.keys
        ]

    def identify(self, presented: str | None) -> ClientIdentity | None:
        """The identity of ``presented`` as a bearer key, or None if it is no configured
        key, or a key-file secret that is expired or revoked."""
        if not presented:
            return None
        digest = _digest(presented)
        found: ClientIdentity | None = None
        for expected, identity in self._entries:  # every entry, match or not
            if hmac.compare_digest(expected, digest) and found is None:
                found = identity
        if found is None and self._key_file is not None:
            found = self._identify_in_file(presented)
        return found

    def authenticate(
        self,
        headers: Mapping[bytes, bytes],
        method: str,
        target: str,
        body: bytes | None,
    ) -> ClientIdentity | str | object:
        """Who sent this request: a `ClientIdentity`, or the reason it is refused (a
        string, for a 401), or `NEEDS_BODY` for a signed request when ``body`` is None
        (call again with the body). ``target`` is the request path and query as sent."""
        if SignatureChecker.is_signed(headers):
            return self._check_signed(headers, method, target, body)
        identity = self.identify(presented_key(headers))
        if identity is None:
            return (
                "missing, unknown, expired or revoked gateway key: send it as 'Authorization: "
                "Bearer KEY' or 'x-api-key: KEY' (a key of this gateway's [server] keys or "
                "key file, not a provider's API key)"
            )
        if identity.signing == "required":
            return (
                f"gateway key {identity.name!r} requires signed requests: send x-aigw-key-id, "
                "x-aigw-timestamp, x-aigw-nonce and x-aigw-signature (see "
                "aigw_lab.server.signing.signing_hook and docs/security.md)"
            )
        return identity

    # --- internals ------------------------------------------------------------------------

    def _check_signed(
        self, headers: Mapping[bytes, bytes], method: str, target: str, body: bytes | None
    ) -> ClientIdentity | str | object:
        key_id = SignatureChecker.key_id(headers)
        found = self._signing_key(key_id) if key_id else None
        if found is None:
            return (
                "unknown, expired or revoked signing key id in x-aigw-key-id, or a key "
                'without signing = "required"; sign with the key\'s own id and secret'
            )
        if body is None:
            return NEEDS_BODY
        signing_key, identity = found
        problem = self.checker.check(signing_key, str(key_id), method, target, headers, body)
        return identity if problem is None else problem

    def _signing_key(self, key_id: str) -> tuple[bytes, ClientIdentity] | None:
        if key_id in self._signing_keys:
            return self._signing_keys[key_id]
        if self._key_file is None:
            return None
        self._refresh()
        hit = self._file_data.find_secret(key_id)
        if hit is None:
            return None
        key, stored = hit
        if key.signing != "required" or not stored.signing_key:
            return None
        if not stored.active(self._clock()):
            return None
        return bytes.fromhex(stored.signing_key), _file_identity(key)

    def _identify_in_file(self, presented: str) -> ClientIdentity | None:
        sid = secret_id(presented)
        if sid is None:
            return None
        self._refresh()
        hit = self._file_data.find_secret(sid)
        if hit is None:
            return None
        key, stored = hit
        if not stored.matches(presented) or not stored.active(self._clock()):
            return None
        return _file_identity(key)

    def _refresh(self) -> None:
        """Re-read the key file if it changed since it was read (one os.stat)."""
        if self._key_file is None:
            return
        stamp = None
        try:
            stamp = self._key_file.stamp()
            if stamp == self._file_stamp:
                return
            data = self._key_file.load(missing_ok=True)
        except ConfigError as exc:
            # Keep serving with the keys read last: a broken edit must not lock every
            # client out (nor let anyone in). Said once per change of the file.
            _log.error("gateway key file not reloaded, still using the previous keys: %s", exc)
            self._file_stamp = stamp
            return
        self._file_stamp, self._file_data = stamp, data
        _log.info("gateway key file reloaded: %d keys", len(data.keys))


def _file_identity(key: KeyName) -> ClientIdentity:
    tenant = key.tenant if key.tenant is not None else key.name
    return ClientIdentity(key.name, tenant=tenant, user=key.user, signing=key.signing)


def presented_key(headers: Mapping[bytes, bytes]) -> str | None:
    """The key a request presents: ``x-api-key``, else an ``Authorization: Bearer`` token.
    ``headers`` has lower-case names, as ASGI gives them."""
    value = headers.get(b"x-api-key")
    if value:
        return value.decode("latin-1").strip()
    authorization = headers.get(b"authorization")
    if authorization:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()
