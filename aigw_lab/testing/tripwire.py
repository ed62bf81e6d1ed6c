"""A network tripwire: any attempt to reach a non-loopback address fails loudly.

Tests must never touch the internet. `install()` wraps socket connects and name lookups
so that anything but loopback (127.0.0.0/8, ::1, localhost, Unix sockets) raises
`NetworkTripwireError`; the pytest plugin (`aigw_lab.testing.pytest_plugin`) turns that into
a failed test even when the code under test swallows the exception.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

__all__ = ["NetworkTripwireError", "install", "uninstall", "is_installed", "violations"]


class NetworkTripwireError(OSError):
    """Raised when code under test tries to reach a non-loopback network address."""


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})
_lock = threading.Lock()
_originals: dict[str, Any] = {}
_violations: list[str] = []


def violations() -> list[str]:
    """Every blocked attempt since the last `reset`, as readable strings."""
    return list(_violations)


def reset() -> None:
    _violations.clear()


def _is_loopback_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check_address(family: int, address: Any, what: str) -> None:
    if family == getattr(socket, "AF_UNIX", object()):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if not _is_loopback_host(host):
        message = f"tests may not reach the network: {what} to {address!r} was blocked"
        _violations.append(message)
        raise NetworkTripwireError(message)


def install() -> None:
    """Start refusing non-loopback connections and name lookups (idempotent)."""
    with _lock:
        if _originals:
            return
        _originals["connect"] = socket.socket.connect
        _originals["connect_ex"] = socket.socket.connect_ex
        _originals["getaddrinfo"] = socket.getaddrinfo
        _originals["sendto"] = socket.socket.sendto

        orig_connect = _originals["connect"]
        orig_connect_ex = _originals["connect_ex"]
        orig_getaddrinfo = _originals["getaddrinfo"]
        orig_sendto = _originals["sendto"]

        def connect(self: socket.socket, address: Any) -> Any:
            _check_address(self.family, address, "connect")
            return orig_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> Any:
            _check_address(self.family, address, "connect")
            return orig_connect_ex(self, address)

        def sendto(self: socket.socket, data: Any, *args: Any) -> Any:
            address = args[-1]
            _check_address(self.family, address, "sendto")
            return orig_sendto(self, data, *args)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if not _is_loopback_host(host):
                message = f"tests may not reach the network: name lookup of {host!r} was blocked"
                _violations.append(message)
                raise NetworkTripwireError(message)
            return orig_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.socket.sendto = sendto  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo


def uninstall() -> None:
    """Restore the real socket functions."""
    with _lock:
        if not _originals:
            return
        socket.socket.connect = _originals.pop("connect")  # type: ignore[method-assign]
        socket.socket.connect_ex = _originals.pop("connect_ex")  # type: ignore[method-assign]
        socket.socket.sendto = _originals.pop("sendto")  # type: ignore[method-assign]
        socket.getaddrinfo = _originals.pop("getaddrinfo")


def is_installed() -> bool:
    return bool(_originals)
