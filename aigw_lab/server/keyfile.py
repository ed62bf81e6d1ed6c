"""The gateway key file: rotating client keys without a restart.

``[server] key_file = "keys.json"`` names an owner-only JSON file managed by ``aigw-lab keys
create | list | rotate | revoke``. Each key *name* (a client: its tenant, user and signing
rule) has one or more *secrets*, each with an id, an optional expiry and a revocation time.
Several secrets of one name are valid at once, which is what rotation without downtime
needs: create the new secret, move the clients, then revoke (or let expire) the old one. The
server re-reads the file when it changes (checked with ``os.stat`` on every request, about a
microsecond), so a new secret works and a revoked one stops on the next request.

Secrets are shown once, at creation, and never stored: the file keeps a random salt and
SHA-256(salt + secret). Secrets look like ``aigw_<id>_<43 random characters>`` (256 random
bits), so the server finds a presented secret's entry by its id and checks one hash; a
salted fast hash is enough for secrets of that entropy (a password hash would make every
request slow). For keys with ``signing = "required"`` the file also keeps the request
signing key HMAC-SHA256(secret, "aigw-signing-v1") (see `aigw_lab.server.signing`): it must,
to check signatures, so the file is as sensitive as the keys it signs for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.store.files import make_private_dirs, open_private

__all__ = [
    "KeyFile",
    "KeyFileData",
    "KeyName",
    "KeySecret",
    "SIGNING_MODES",
    "derive_signing_key",
    "secret_id",
]

FORMAT = "aigw-keys/1"
SIGNING_MODES = ("off", "required")
_SECRET = re.compile(r"aigw_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SIGNING_LABEL = b"aigw-signing-v1"


def derive_signing_key(secret: str) -> bytes:
    """The key requests are signed with: HMAC-SHA256(secret, "aigw-signing-v1"). Client and
    server derive it from the same secret; the secret itself never travels."""
    return hmac.new(secret.encode("utf-8"), _SIGNING_LABEL, hashlib.sha256).digest()


def salted_sha256(salt: bytes, secret: str) -> str:
    """What the key file stores of a secret: SHA-256 of the salt and the secret, as hex."""
    return hashlib.sha256(salt + secret.encode("utf-8")).hexdigest()


def secret_id(secret: str) -> str | None:
    """The id embedded in a key-file secret (``aigw_<id>_...``), None for other strings."""
    match = _SECRET.fullmatch(secret)
    return match.group(1) if match else None


@dataclass(frozen=True)
class KeySecret:
    """One secret of a key name, as stored: never the secret itself."""

    id: str
    salt: str
    sha256: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    signing_key: str | None = field(default=None, repr=False)

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(salted_sha256(bytes.fromhex(self.salt), secret), self.sha256)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True)
class KeyName:
    """A client: its name, tenant, fixed user, signing rule and secrets."""

    name: str
    tenant: str | None = None
    user: str | None = None
    signing: str = "off"
    secrets: tuple[KeySecret, ...] = ()


@dataclass(frozen=True)
class KeyFileData:
    """The parsed contents of a key file: key names in file order."""

    keys: tuple[KeyName, ...] = ()

    def get(self, name: str) -> KeyName | None:
        return next((k for k in self.keys if k.name == name), None)

    def find_secret(self, sid: str) -> tuple[KeyName, KeySecret] | None:
        for key in self.keys:
            for stored in key.secrets:
                if stored.id == sid:
                    return key, stored
        return None


class KeyFile:
    """Reads and edits one key file. Edits are atomic (a new owner-only file renamed over
    the old one), so a server reading it never sees half a file; ``clock`` gives "now"."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.path = Path(path).expanduser()
        self._clock = clock

    # --- reading --------------------------------------------------------------------------

    def stamp(self) -> tuple[int, ...] | None:
        """What changes when the file is replaced or edited (None if it is missing)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {self.path}: {exc.strerror}") from exc
        return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)

    def load(self, *, missing_ok: bool = False) -> KeyFileData:
        """The file's keys; a missing file is empty when ``missing_ok``, else a ConfigError."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return KeyFileData()
            raise ConfigError(
                f"the key file {self.path} does not exist",
                hint=f"create a key with: aigw-lab keys create NAME --file {self.path}",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the key file {self.path}: {exc}") from exc
        return _parse(text, str(self.path))

    # --- editing (the CLI) ----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        tenant: str | None = None,
        user: str | None = None,
        signing: str = "off",
        expires_at: float | None = None,
    ) -> tuple[str, KeySecret]:
        """Add key ``name`` with its first secret; return (the secret, shown once; its entry).
        A ConfigError if the name exists (use `rotate` to add a secret to it)."""
        _check_name(name)
        if signing not in SIGNING_MODES:
            raise ConfigError(f"signing = {signing!r} is not one of {', '.join(SIGNING_MODES)}")
        with self._editing() as edit:
            data = edit.data
            if data.get(name) is not None:
                raise ConfigError(
                    f"key {name!r} already exists in {self.path}",
                    hint=f"add a secret to it with: aigw-lab keys rotate {name}",
                )
            secret, stored = self._new_secret(data, signing, expires_at)
            key = KeyName(name, tenant if tenant is not None else name, user, signing, (stored,))
            edit.data = KeyFileData((*data.keys, key))
        return secret, stored

    def rotate(
        self, name: str, *, expires_at: float | None = None, old_expire_at: float | None = None
    ) -> tuple[str, KeySecret]:
        """Add a new secret to ``name`` (the old ones stay valid: no downtime); with
        ``old_expire_at``, the old active secrets expire then (sooner expiries are kept)."""
        with self._editing() as edit:
            key = self._existing(edit.data, name)
            secret, stored = self._new_secret(edit.data, key.signing, expires_at)
            kept = tuple(
                replace(s, expires_at=_sooner(s.expires_at, old_expire_at))
                if old_expire_at is not None and s.revoked_at is None
                else s
                for s in key.secrets
            )
            edit.data = _with_key(edit.data, replace(key, secrets=(*kept, stored)))
        return secret, stored

    def revoke(self, name: str, *, secret_ids: tuple[str, ...] = ()) -> list[str]:
        """Revoke the given secrets of ``name`` (all of its secrets when none are given);
        return the ids revoked. Unknown ids are a ConfigError (nothing changes)."""
        now = self._clock()
        with self._editing() as edit:
            key = self._existing(edit.data, name)
            known = {s.id for s in key.secrets}
            unknown = sorted(set(secret_ids) - known)
            if unknown:
                raise ConfigError(
                    f"key {name!r} has no secret {', '.join(unknown)}",
                    hint=f"list its secrets with: aigw-lab keys list --file {self.path}",
                )
            chosen = set(secret_ids) or known
            revoked = [s.id for s in key.secrets if s.id in chosen and s.revoked_at is None]
            secrets_ = tuple(
                replace(s, revoked_at=now) if s.id in revoked else s for s in key.secrets
            )
            edit.data = _with_key(edit.data, replace(key, secrets=secrets_))
        return revoked

    # --- internals ------------------------------------------------------------------------

    def _existing(self, data: KeyFileData, name: str) -> KeyName:
        key = data.get(name)
        if key is None:
            raise ConfigError(
                f"no key {name!r} in {self.path}",
                hint=f"create it with: aigw-lab keys create {name} --file {self.path}",
            )
        return key

    def _new_secret(
        self, data: KeyFileData, signing: str, expires_at: float | None
    ) -> tuple[str, KeySecret]:
        while True:
            sid = secrets.token_hex(4)
            if data.find_secret(sid) is None:
                break
        secret = f"aigw_{sid}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_bytes(16)
        stored = KeySecret(
            id=sid,
            salt=salt.hex(),
            sha256=salted_sha256(salt, secret),
            created_at=self._clock(),
            expires_at=expires_at,
            signing_key=derive_signing_key(secret).hex() if signing == "required" else None,
        )
        return secret, stored

    @contextmanager
    def _editing(self) -> Iterator[_Edit]:
        """Load, let the caller change ``edit.data``, write atomically; one editor at a time
        (an advisory lock on ``<file>.lock``)."""
        try:
            # lazy: POSIX only (no fcntl on Windows: the except branch handles it)
            import fcntl
        except ImportError:  # not POSIX: no advisory lock, one editor at a time by hand
            fcntl = None  # type: ignore[assignment]

        make_private_dirs(self.path.parent)
        lock_fd = open_private(self.path.with_name(self.path.name + ".lock"), "a")
        try:
            if fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            edit = _Edit(self.load(missing_ok=True))
            yield edit
            self._write(edit.data)
        finally:
            os.close(lock_fd)

    def _write(self, data: KeyFileData) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(open_private(tmp, "w"), "w", encoding="utf-8") as out:
            json.dump(_dump(data), out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


@dataclass
class _Edit:
    data: KeyFileData


def _with_key(data: KeyFileData, key: KeyName) -> KeyFileData:
    return KeyFileData(tuple(key if k.name == key.name else k for k in data.keys))


def _sooner(current: float | None, new: float | None) -> float | None:
    if current is None:
        return new
    if new is None:
        return current
    return min(current, new)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"key name {name!r} must be 1-64 letters, digits, _ . - (starting with a letter "
            "or digit)",
            hint="e.g. team-a or batch_jobs",
        )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _epoch(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _dump(data: KeyFileData) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "keys": [
            {
                "name": k.name,
                "tenant": k.tenant,
                "user": k.user,
                "signing": k.signing,
                "secrets": [
                    {
                        "id": s.id,
                        "salt": s.salt,
                        "sha256": s.sha256,
                        "created_at": _iso(s.created_at),
                        "expires_at": _iso(s.expires_at),
                        "revoked_at": _iso(s.revoked_at),
                        **({"signing_key": s.signing_key} if s.signing_key else {}),
                    }
                    for s in k.secrets
                ],
            }
            for k in data.keys
        ],
    }


def _parse(text: str, source: str) -> KeyFileData:
    """Validate a key file's JSON; any problem is a ConfigError naming where it is."""
    hint = "the file is written by aigw-lab keys; restore it from a backup or recreate the keys"
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the key file {source} is not valid JSON: {exc}", hint=hint) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ConfigError(f"{source} is not an aigw-lab key file ({FORMAT})", hint=hint)
    keys: list[KeyName] = []
    seen_ids: set[str] = set()
    for i, entry in enumerate(raw.get("keys") or []):
        where = f"{source}: keys[{i}]"
        try:
            name = entry["name"]
            _check_name(name)
            signing = entry.get("signing", "off")
            if signing not in SIGNING_MODES:
                raise ConfigError(f"{where}: signing = {signing!r} is not one of {SIGNING_MODES}")
            stored: list[KeySecret] = []
            for j, s in enumerate(entry.get("secrets") or []):
                at = f"{where}.secrets[{j}]"
                if not re.fullmatch(r"[0-9a-f]{8}", str(s["id"])) or s["id"] in seen_ids:
                    raise ConfigError(f"{at}: bad or repeated id {s['id']!r}", hint=hint)
                seen_ids.add(s["id"])
                bytes.fromhex(s["salt"])
                if not re.fullmatch(r"[0-9a-f]{64}", s["sha256"]):
                    raise ConfigError(f"{at}: sha256 is not a hex digest", hint=hint)
                signing_key = s.get("signing_key")
                if signing_key is not None:
                    bytes.fromhex(signing_key)
                created = _epoch(s["created_at"], at)
                stored.append(
                    KeySecret(
                        id=s["id"],
                        salt=s["salt"],
                        sha256=s["sha256"],
                        created_at=created if created is not None else 0.0,
                        expires_at=_epoch(s.get("expires_at"), at),
                        revoked_at=_epoch(s.get("revoked_at"), at),
                        signing_key=signing_key,
                    )
                )
            for field_name in ("tenant", "user"):
                if entry.get(field_name) is not None and not isinstance(entry[field_name], str):
                    raise ConfigError(f"{where}: {field_name} must be a string")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{where} is malformed: {exc!r}", hint=hint) from None
        if any(k.name == name for k in keys):
            raise ConfigError(f"{where}: name {name!r} is used twice", hint=hint)
        keys.append(KeyName(name, entry.get("tenant"), entry.get("user"), signing, tuple(stored)))
    return KeyFileData(tuple(keys))
