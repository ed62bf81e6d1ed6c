"""HMAC request signing for service-to-service callers of ``aigw-lab serve``.

A key with ``signing = "required"`` is refused as a bearer token: its requests carry

- ``x-aigw-key-id``: the key's id (a key-file secret's id, or an env key's name);
- ``x-aigw-timestamp``: Unix time in seconds;
- ``x-aigw-nonce``: a random string, unique per request;
- ``x-aigw-signature``: ``v1=<hex HMAC-SHA256(signing_key, canonical)>``, where
  ``canonical = METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex SHA-256(body)`` and
  ``signing_key = HMAC-SHA256(secret, "aigw-signing-v1")``; PATH is the request target as
  sent (path and query).

The server accepts a request whose timestamp is within ``window`` seconds of its clock
(either way) and whose (key id, nonce) it has not seen within the window, so a captured
request cannot be replayed, changed or moved to another path. The secret never travels:
only its id and the signature do. The nonce (not in every scheme) lets a client's own retry
of an identical request within the same second through.

Clients: `sign_request` returns the headers for any HTTP client; `signing_hook` (and
`async_signing_hook`) is an ``event_hooks={"request": [...]}`` hook for ``httpx`` and
``httpx2`` clients, which is how the official SDKs take it: openai 3.x and anthropic 2.x build
on ``httpx2``, so pass ``http_client=openai.DefaultHttpxClient(event_hooks=...)`` (or
``anthropic.DefaultHttpxClient``), with ``api_key`` set to the key id (it is not checked for
signed requests; the SDKs insist on one).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from aigw_lab.server.keyfile import derive_signing_key, secret_id

__all__ = [
    "DEFAULT_WINDOW",
    "KEY_ID_HEADER",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureChecker",
    "async_signing_hook",
    "sign_request",
    "signing_hook",
]

KEY_ID_HEADER = "x-aigw-key-id"
TIMESTAMP_HEADER = "x-aigw-timestamp"
NONCE_HEADER = "x-aigw-nonce"
SIGNATURE_HEADER = "x-aigw-signature"
#: Seconds a signed request stays valid either side of the server's clock.
DEFAULT_WINDOW = 300.0
_HOW = "sign it with aigw_lab.server.signing.sign_request or signing_hook (see docs/security.md)"


def canonical(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n{digest}".encode()


def signature(signing_key: bytes, message: bytes) -> str:
    """``v1=<hex HMAC-SHA256>``."""
    return "v1=" + hmac.new(signing_key, message, hashlib.sha256).hexdigest()


def sign_request(
    secret: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    key_id: str | None = None,
    timestamp: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The signing headers of one request. ``target`` is the path (and query) as sent, e.g.
    ``/v1/chat/completions``; ``key_id`` defaults to the id inside a key-file secret (pass
    the key's name for an env-var key)."""
    key_id = key_id or secret_id(secret)
    if not key_id:
        raise ValueError("key_id is needed for a secret that is not from a key file")
    stamp = str(int(time.time() if timestamp is None else timestamp))
    nonce = nonce or secrets.token_hex(16)
    message = canonical(method, target, stamp, nonce, body)
    return {
        KEY_ID_HEADER: key_id,
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(derive_signing_key(secret), message),
    }


def signing_hook(
    secret: str, *, key_id: str | None = None, clock: Callable[[], float] = time.time
) -> Callable[[Any], None]:
    """A request event hook for ``httpx.Client`` / ``httpx2.Client`` (and their async
    versions' sync hooks) that signs every request it sends."""

    def hook(request: Any) -> None:
        body = request.content  # the SDKs send JSON bodies as bytes, already read
        headers = sign_request(
            secret,
            request.method,
            request.url.raw_path.decode("ascii"),
            body,
            key_id=key_id,
            timestamp=clock(),
        )
        request.headers.update(headers)

    return hook


def async_signing_hook(
    secret: str, *, key_id: str | None = None, clock: Callable[[], float] = time.time
) -> Callable[[Any], Any]:
    """`signing_hook` for ``httpx.AsyncClient`` / ``httpx2.AsyncClient`` (the async SDKs'
    ``DefaultAsyncHttpxClient``), whose event hooks must be coroutines."""
    sign = signing_hook(secret, key_id=key_id, clock=clock)

    async def hook(request: Any) -> None:
        sign(request)

    return hook


class SignatureChecker:
    """Checks signed requests: timestamp within ``window`` seconds of ``clock()``, a fresh
    nonce (remembered for the window, at most ``max_nonces`` of them: the oldest are
    forgotten first), and the HMAC."""

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
        max_nonces: int = 200_000,
    ) -> None:
        self.window = float(window)
        self._clock = clock
        self._max = max_nonces
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Nonces remembered (those of the last two windows at most)."""
        return len(self._seen)

    @staticmethod
    def is_signed(headers: Mapping[bytes, bytes]) -> bool:
        return SIGNATURE_HEADER.encode() in headers

    @staticmethod
    def key_id(headers: Mapping[bytes, bytes]) -> str | None:
        value = headers.get(KEY_ID_HEADER.encode())
        return value.decode("latin-1").strip() if value else None

    def check(
        self,
        signing_key: bytes,
        key_id: str,
        method: str,
        target: str,
        headers: Mapping[bytes, bytes],
        body: bytes,
    ) -> str | None:
        """None when the request is validly signed, else the reason, for a 401 message."""
        raw = {h: headers.get(h.encode(), b"").decode("latin-1").strip()
               for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)}  # fmt: skip
        stamp, nonce, sent = raw[TIMESTAMP_HEADER], raw[NONCE_HEADER], raw[SIGNATURE_HEADER]
        if not stamp.isdigit() or len(stamp) > 12:
            return f"{TIMESTAMP_HEADER} must be Unix time in seconds; {_HOW}"
        if not 8 <= len(nonce) <= 128 or not nonce.isascii() or not nonce.isprintable():
            return f"{NONCE_HEADER} must be 8-128 printable characters, new per request; {_HOW}"
        now = self._clock()
        if abs(now - int(stamp)) > self.window:
            return (
                f"the signed request's timestamp is {int(now) - int(stamp)} s away from the "
                f"gateway's clock (allowed: {self.window:g} s); check the caller's clock and "
                "sign each request when it is sent"
            )
        expected = signature(signing_key, canonical(method, target, stamp, nonce, body))
        if not hmac.compare_digest(expected.encode(), sent.encode("latin-1", "replace")):
            return (
                f"the request signature does not match (method, path, timestamp, nonce and "
                f"body are signed with the key's secret); {_HOW}"
            )
        with self._lock:
            self._forget_expired(now)
            seen = (key_id, nonce)
            if seen in self._seen:
                return f"this signed request was already received (replay); {_HOW}"
            self._seen[seen] = now + 2 * self.window
            if len(self._seen) > self._max:
                self._seen.popitem(last=False)
        return None

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            _, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            self._seen.popitem(last=False)
