"""The Redis (or Valkey) connection the shared stores use, and how they ride out an outage.

`SharedState` is one client, a key prefix and a clock, built from a URL that an environment
variable holds (never the URL itself in a config file: it may carry a password). `Outage` is
one primitive's answer to "Redis did not answer": fail open (carry on as if the state allowed
the call) or fail closed (refuse it with `SharedStateUnavailableError`), one log line when an
outage starts and one when it ends (never one per call), and no new attempt for
``retry_every`` seconds after a failure, so an outage costs calls no connect timeout each.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from aigw_lab.errors import ConfigError, MissingExtraError, SharedStateUnavailableError

__all__ = [
    "REDIS_INSTALL",
    "FailMode",
    "Outage",
    "SharedState",
    "import_redis",
]

#: The install command of the ``redis`` extra (redis-py).
REDIS_INSTALL = 'pip install "aigw-lab[redis]"'

FailMode = Literal["open", "closed"]
T = TypeVar("T")

_log = logging.getLogger("aigw_lab.state")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_PREFIX = re.compile(r"[A-Za-z0-9_.:{}-]{1,64}")
_SCHEMES = ("redis", "rediss", "unix")


def import_redis() -> Any:
    """The ``redis`` module (redis-py), or a `MissingExtraError` naming the install command."""
    try:
        # lazy: redis-py is the optional `redis` extra, needed only with [state] backend=redis
        import redis
    except ImportError as exc:
        raise MissingExtraError(
            "shared state on Redis needs the redis package", hint=REDIS_INSTALL
        ) from exc
    return redis


def check_url(url: str, where: str) -> str:
    """``url`` if it is a Redis URL (redis://, rediss:// or unix://) with a host or path;
    else a `ConfigError` at ``where`` that never repeats the URL (it may hold a password)."""
    hint = "set it to redis://HOST:PORT/DB (rediss:// for TLS, unix:///path/to/redis.sock)"
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        raise ConfigError(f"{where} is empty or holds whitespace", hint=hint)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid URL", hint=hint) from exc
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"{where} has scheme {parts.scheme!r}, not a Redis one", hint=hint)
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{where} names no socket path", hint=hint)
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{where} names no host", hint=hint)
    del port
    return url


def check_env_name(name: Any, where: str) -> str:
    """``name`` if it is a valid environment variable name, else a `ConfigError`."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            f"{where} = {name!r} is not an environment variable name",
            hint='name the variable holding the URL, e.g. url_env = "AIGW_REDIS_URL"',
        )
    return name


def check_prefix(prefix: Any, where: str) -> str:
    """``prefix`` if it is 1-64 characters of letters, digits and ``_.:{}-``."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"{where} = {prefix!r} is not a key prefix",
            hint='use 1-64 letters, digits or _.:{}- , e.g. prefix = "aigw:prod:"',
        )
    return prefix


class SharedState:
    """One Redis client and the key prefix every shared store of a gateway adds to its keys
    (so several gateways, or a test, can share one server). ``client``: a ``redis.Redis``."""

    def __init__(self, client: Any, *, prefix: str = "aigw:", io_threads: int = 16) -> None:
        self.client = client
        self.prefix = check_prefix(prefix, "prefix")
        # The threads the async drivers wait on Redis from (`AsyncIO.offload`), so a slow
        # answer never blocks an event loop; made here, started on first use, one set per
        # state, so every store of a gateway shares them and the client's connection pool.
        # io_threads=0: none, the stores' calls run on the loop. On loopback Redis that costs
        # 2-2.7x less CPU per call, but blocks every other task of the loop meanwhile
        # (bench/bench_shared_state.py; docs/deployment.md, "Redis off the event loop").
        self.io: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="aigw-redis")
            if io_threads
            else None
        )
        self.closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "aigw:",
        timeout: float = 1.0,
        where: str = "url",
        io_threads: int = 16,
    ) -> SharedState:
        """A client for ``url``; ``timeout``: seconds to connect or wait for an answer (short:
        during an outage a call waits at most this long before its store fails open or
        closed)."""
        redis = import_redis()
        client = redis.Redis.from_url(
            check_url(url, where),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
        )
        return cls(client, prefix=prefix, io_threads=io_threads)

    @classmethod
    def from_env(
        cls,
        url_env: str,
        *,
        env: Mapping[str, str] | None = None,
        prefix: str = "aigw:",
        timeout: float = 1.0,
        io_threads: int = 16,
    ) -> SharedState:
        """A client for the URL held by the environment variable ``url_env``."""
        env = os.environ if env is None else env
        name = check_env_name(url_env, "[state] url_env")
        url = env.get(name)
        if not url:
            raise ConfigError(
                f"[state] url_env names {name}, which is not set",
                hint=f"export {name}=redis://HOST:PORT/0 before starting the gateway",
            )
        return cls.from_url(
            url, prefix=prefix, timeout=timeout, where=f"${name}", io_threads=io_threads
        )

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def close(self) -> None:
        """Stop the threads (after what they run) and close every pooled connection;
        idempotent (a gateway and its stores may each close it)."""
        if self.closed:
            return
        self.closed = True
        if self.io is not None:
            self.io.shutdown(wait=True)
        self.client.close()
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()


class Outage:
    """How one primitive's store behaves while Redis does not answer (see the module doc).

    ``what`` names the primitive in log lines; ``fail``: ``"open"`` or ``"closed"``;
    ``clock``: monotonic seconds (injectable)."""

    def __init__(
        self,
        what: str,
        fail: FailMode = "open",
        *,
        retry_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = _log,
    ) -> None:
        if fail not in ("open", "closed"):
            raise ConfigError(f"{what}: fail = {fail!r} is unknown", hint='use "open" or "closed"')
        self.what = what
        self.fail = fail
        self.retry_every = retry_every
        self._clock = clock
        self._log = logger
        self._since: float | None = None  # when the outage began (None: Redis answers)
        self._next_try = 0.0
        self.failures = 0  # operations that met an outage, for tests and notebooks

    @property
    def down(self) -> bool:
        return self._since is not None

    def run(self, operation: Callable[[], T], fallback: Callable[[], T], *, admits: bool) -> T:
        """``operation()`` against Redis; during an outage ``fallback()`` when failing open
        or when the operation admits nothing (a settlement, a write: nothing to refuse),
        else `SharedStateUnavailableError`."""
        now = self._clock()
        if self._since is not None and now < self._next_try:
            return self._failed(fallback, admits, now)
        redis = import_redis()
        try:
            result = operation()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            now = self._clock()
            if self._since is None:
                self._since = now
                self._log.warning(
                    "shared state unreachable (%s: %s); %s fails %s until it answers",
                    type(exc).__name__,
                    exc,
                    self.what,
                    self.fail,
                )
            self._next_try = now + self.retry_every
            return self._failed(fallback, admits, now)
        if self._since is not None:
            self._log.warning(
                "shared state reachable again after %.1fs; %s uses it again",
                self._clock() - self._since,
                self.what,
            )
            self._since = None
        return result

    def _failed(self, fallback: Callable[[], T], admits: bool, now: float) -> T:
        self.failures += 1
        if admits and self.fail == "closed":
            retry = max(0.0, self._next_try - now) or self.retry_every
            raise SharedStateUnavailableError(
                f"the shared state (Redis) is unreachable and {self.what} fails closed",
                retry_after=retry,
                hint="bring Redis back, or set the primitive to fail open in [state]",
            )
        return fallback()
