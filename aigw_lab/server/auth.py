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
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    from aigw_lab.config import ServerKeySpec

__all__ = ["ClientIdentity", "KeyRing", "presented_key"]


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who a gateway key belongs to. ``tenant`` and ``user`` go on every call it makes
    (a fixed ``user`` overrides the one the client sends)."""

    name: str
    tenant: str | None = None
    user: str | None = None


class KeyRing:
    """The configured gateway keys and the identity of each."""

    __slots__ = ("_entries",)

    def __init__(self, keys: Mapping[str, ClientIdentity]) -> None:
        entries: list[tuple[bytes, ClientIdentity]] = []
        for secret, identity in keys.items():
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"gateway key {identity.name!r} is empty")
            entries.append((_digest(secret), identity))
        self._entries = tuple(entries)

    @classmethod
    def from_specs(cls, specs: Iterable[ServerKeySpec], env: Mapping[str, str]) -> KeyRing:
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
            keys[secret] = ClientIdentity(spec.name, spec.tenant, spec.user)
        return cls(keys)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return [identity.name for _, identity in self._entries]

    def identify(self, presented: str | None) -> ClientIdentity | None:
        """The identity of ``presented``, or None if it is no configured key."""
        if not presented:
            return None
        digest = _digest(presented)
        found: ClientIdentity | None = None
        for expected, identity in self._entries:  # every entry, match or not
            if hmac.compare_digest(expected, digest) and found is None:
                found = identity
        return found


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
