"""Where the exact cache keeps its answers: the `CacheStore` protocol and two stores.

- `MemoryStore`: an in-process LRU bounded in bytes. Fast (a dict lookup); gone with the
  process.
- `DuckDBStore`: a table in a DuckDB file (``cache.duckdb`` by default), so a notebook re-run
  costs nothing across sessions. A lookup costs a few hundred microseconds, a write about a
  millisecond (DuckDB commits each one to its write-ahead log).

A store keeps the fields needed to rebuild an answer: text, finish reason, usage, provider,
model, response id, tool calls, the simulated flag and the original cost (for the savings
statistic). It never keeps the provider's raw payload. Each entry has a TTL in seconds
(``None``: no expiry); expired entries are never returned, and are purged when met.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.gateway.cache_common import stored_answer
from aigw_lab.store import encryption as encrypted
from aigw_lab.store import files
from aigw_lab.store.files import tighten
from aigw_lab.types import ChatResponse, Usage

if TYPE_CHECKING:
    import duckdb

    from aigw_lab.store.encryption import Encryption

__all__ = ["CacheStore", "StoreStats", "MemoryStore", "DuckDBStore", "entry_size"]

Clock = Callable[[], float]

#: What an entry costs beyond its strings: the key, the object headers, the numbers.
_ENTRY_OVERHEAD_BYTES = 256

# One encoder for every entry: json.dumps with options builds a new encoder each time.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """A store's size and housekeeping counts since it was opened."""

    entries: int
    bytes: int
    evictions: int = 0
    expired: int = 0


@runtime_checkable
class CacheStore(Protocol):
    """What `ExactCache` needs from a store. Implementations must be thread-safe, and
    should raise `StoreError` (the cache then carries on without the store, with a warning).
    """

    def get(self, key: str) -> ChatResponse | None:
        """The answer stored under ``key``, or None when absent or expired."""
        ...

    def set(self, key: str, response: ChatResponse, ttl: float | None) -> None:
        """Store ``response`` under ``key`` for ``ttl`` seconds (None: no expiry)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        ...

    def clear(self) -> None:
        """Remove every entry."""
        ...

    def __len__(self) -> int:
        """The number of live (unexpired) entries."""
        ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...


def entry_size(key: str, response: ChatResponse, tool_calls_json: str | None = None) -> int:
    """The approximate bytes an entry takes: its strings in UTF-8 plus a fixed overhead."""
    text = response.text
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    size += len(key) + len(response.model) + len(response.provider)
    size += len(response.response_id or "") + len(tool_calls_json or "")
    return size + _ENTRY_OVERHEAD_BYTES


def _tool_calls_to_json(response: ChatResponse) -> str | None:
    return None if response.tool_calls is None else _JSON.encode(list(response.tool_calls))


def _tool_calls_from_json(text: str | None) -> tuple[Mapping[str, Any], ...] | None:
    return None if text is None else tuple(json.loads(text))


def check_ttl(ttl: Any, what: str = "cache ttl") -> None:
    """Raise `ConfigError` unless ``ttl`` is a number of seconds > 0, or None (no expiry)."""
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ConfigError(
            f"{what}={ttl!r} is invalid", hint="use seconds > 0, or None for no expiry"
        )


class _MemoryEntry:
    __slots__ = ("response", "tool_calls_json", "expires_at", "size")

    def __init__(
        self,
        response: ChatResponse,
        tool_calls_json: str | None,
        expires_at: float | None,
        size: int,
    ) -> None:
        self.response = response
        self.tool_calls_json = tool_calls_json
        self.expires_at = expires_at
        self.size = size


class MemoryStore:
    """An in-memory LRU store holding at most ``max_bytes`` (estimated by `entry_size`).

    Adding an entry evicts the least recently used ones until it fits; an entry bigger than
    the whole store is not kept. Thread-safe. ``clock`` (seconds, default `time.time`) is
    injectable for TTL tests.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, *, clock: Clock = time.time) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ConfigError(
                f"MemoryStore max_bytes={max_bytes!r} is invalid",
                hint="use a positive number of bytes, e.g. 64 * 1024 * 1024",
            )
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _MemoryEntry] = OrderedDict()
        self._bytes = 0
        self._evictions = 0
        self._expired = 0

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at is not None and entry.expires_at <= self._clock():
                self._remove(key)
                self._expired += 1
                return None
            self._entries.move_to_end(key)
        if entry.tool_calls_json is None:
            return entry.response
        # Tool calls are dicts, so every hit gets its own copy: a caller that edits one must
        # not change what later hits see.
        return _replace_tool_calls(entry.response, entry.tool_calls_json)

    def set(self, key: str, response: ChatResponse, ttl: float | None) -> None:
        check_ttl(ttl)
        tool_calls_json = _tool_calls_to_json(response)
        size = entry_size(key, response, tool_calls_json)
        expires_at = None if ttl is None else self._clock() + ttl
        entry = _MemoryEntry(response, tool_calls_json, expires_at, size)
        with self._lock:
            if key in self._entries:
                self._remove(key)
            if size > self.max_bytes:
                return
            while self._bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size
                self._evictions += 1
            self._entries[key] = entry
            self._bytes += size

    def delete(self, key: str) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._remove(key)
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(
                entries=len(self._entries),
                bytes=self._bytes,
                evictions=self._evictions,
                expired=self._expired,
            )

    def close(self) -> None:
        """Nothing to release; present for the `CacheStore` protocol."""

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self)} entries, {self._bytes}/{self.max_bytes} bytes>"

    def _remove(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size


def _replace_tool_calls(response: ChatResponse, tool_calls_json: str) -> ChatResponse:
    return stored_answer(response, tool_calls=_tool_calls_from_json(tool_calls_json))


# --- DuckDB ------------------------------------------------------------------------------

_TABLE = "cache_entries"

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    key VARCHAR PRIMARY KEY,
    text VARCHAR NOT NULL,
    finish_reason VARCHAR NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    response_id VARCHAR,
    tool_calls_json VARCHAR,
    simulated BOOLEAN NOT NULL,
    cost_usd DOUBLE,
    created_at DOUBLE NOT NULL,  -- epoch seconds
    expires_at DOUBLE,           -- epoch seconds; NULL: never
    size_bytes BIGINT NOT NULL
)
"""

_INSERT = f"INSERT OR REPLACE INTO {_TABLE} VALUES ({', '.join('?' * 17)})"

_SELECT = f"""
SELECT text, finish_reason, input_tokens, output_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, provider, model, response_id, tool_calls_json,
       simulated, cost_usd, expires_at
FROM {_TABLE} WHERE key = ?
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"

# As for the call log: DuckDB otherwise keeps written blocks cached up to 80% of RAM.
_DEFAULT_MEMORY_LIMIT = "256MB"


class DuckDBStore:
    """A persistent store: table ``cache_entries`` in the DuckDB file at ``path``.

    Entries survive the process, so re-running a notebook costs nothing. Expired entries are
    never returned; they are deleted when met and on opening (`purge_expired`). The store
    has no size bound: bound it with TTLs. Thread-safe (one connection behind a lock).

    DuckDB lets one process at a time open a file for writing: give each process (or
    notebook kernel) its own cache file. ``config`` is passed to ``duckdb.connect``.
    A new file is created owner-only (0600), new directories 0700; ``encryption`` (an
    `aigw_lab.store.encryption.Encryption`) opens it as an encrypted database. The store
    holds answers (it must, to serve them), never prompts: keys are SHA-256 digests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "cache.duckdb",
        *,
        clock: Clock = time.time,
        config: Mapping[str, Any] | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        self.path: Path | str = path if str(path) == ":memory:" else Path(path).expanduser()
        self._clock = clock
        self._lock = threading.Lock()
        self._expired = 0
        self._conn: duckdb.DuckDBPyConnection | None = _connect(self.path, config, encryption)
        try:
            self._rows(_CREATE_TABLE)
            self.purge_expired()
        except BaseException:
            self.close()
            raise

    def get(self, key: str) -> ChatResponse | None:
        rows = self._rows(_SELECT, [key])
        if not rows:
            return None
        row = rows[0]
        expires_at = row[13]
        if expires_at is not None and expires_at <= self._clock():
            self._rows(f"DELETE FROM {_TABLE} WHERE key = ?", [key])
            self._expired += 1
            return None
        return ChatResponse(
            text=row[0],
            finish_reason=row[1],
            usage=Usage(
                input_tokens=row[2],
                output_tokens=row[3],
                cache_read_tokens=row[4],
                cache_write_tokens=row[5],
                reasoning_tokens=row[6],
            ),
            provider=row[7],
            model=row[8],
            response_id=row[9],
            tool_calls=_tool_calls_from_json(row[10]),
            simulated=row[11],
            cost_usd=row[12],
        )

    def set(self, key: str, response: ChatResponse, ttl: float | None) -> None:
        check_ttl(ttl)
        tool_calls_json = _tool_calls_to_json(response)
        now = self._clock()
        usage = response.usage
        self._rows(
            _INSERT,
            [
                key,
                response.text,
                response.finish_reason,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.reasoning_tokens,
                response.provider,
                response.model,
                response.response_id,
                tool_calls_json,
                response.simulated,
                response.cost_usd,
                now,
                None if ttl is None else now + ttl,
                entry_size(key, response, tool_calls_json),
            ],
        )
        if isinstance(self.path, Path):
            # DuckDB recreates its write-ahead log with the process umask after checkpoints.
            tighten(self.path.with_name(self.path.name + ".wal"))

    def delete(self, key: str) -> bool:
        return self._rows(f"DELETE FROM {_TABLE} WHERE key = ?", [key])[0][0] > 0

    def clear(self) -> None:
        self._rows(f"DELETE FROM {_TABLE}")

    def purge_expired(self) -> int:
        """Delete expired entries; returns how many."""
        purged = self._rows(f"DELETE FROM {_TABLE} WHERE NOT {_LIVE}", [self._clock()])[0][0]
        self._expired += purged
        return purged

    def __len__(self) -> int:
        return self._rows(f"SELECT count(*) FROM {_TABLE} WHERE {_LIVE}", [self._clock()])[0][0]

    def stats(self) -> StoreStats:
        entries, size = self._rows(
            f"SELECT count(*), coalesce(sum(size_bytes), 0) FROM {_TABLE} WHERE {_LIVE}",
            [self._clock()],
        )[0]
        return StoreStats(entries=entries, bytes=int(size), evictions=0, expired=self._expired)

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<DuckDBStore {str(self.path)!r} ({state})>"

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement and fetch its rows, under the lock (a DuckDB connection runs
        one statement at a time)."""
        # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
        import duckdb

        with self._lock:
            if self._conn is None:
                raise StoreError(
                    f"the cache store {self.path} is closed",
                    hint="open a new DuckDBStore, or stop using the cache after closing it",
                )
            try:
                return self._conn.execute(sql, params).fetchall()
            except duckdb.Error as exc:
                raise StoreError(
                    f"the cache store {self.path} failed: {exc}",
                    hint="check the file is a cache written by this version of aigw_lab, "
                    "or delete it to start an empty cache",
                ) from exc


def _connect(
    path: Path | str, config: Mapping[str, Any] | None, encryption: Encryption | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the cache database, turning failures into a `StoreError` that says what to do.
    A new file is created owner-only (see `aigw_lab.store.files`)."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    what = f"the cache {path}"
    if isinstance(path, Path):
        if path.is_dir():
            raise StoreError(
                f"the cache path {path} is a directory",
                hint=f"pass a file path such as {path / 'cache.duckdb'}",
            )
        try:
            files.make_private_dirs(path.parent)
            if not path.exists():
                files.create_private_database(
                    path, encrypted.database_creator(what, config, encryption)
                )
        except OSError as exc:
            raise StoreError(
                f"cannot create the cache {path}: {exc.strerror or exc}",
                hint="choose a writable location for the cache file",
            ) from exc
    elif encryption is not None:
        raise StoreError("an in-memory cache cannot be encrypted", hint="give it a file path")
    try:
        if encryption is not None:
            conn: Any = encrypted.open_encrypted(
                Path(path), encryption, what=what, config=dict(config or {})
            )
        else:
            conn = duckdb.connect(str(path), config=dict(config or {}))
    except duckdb.Error as exc:
        if "without a key" in str(exc):
            raise StoreError(
                f"{what} is encrypted",
                hint="open it with the key it was created with (encryption_key_env)",
            ) from exc
        lowered = str(exc).lower()
        if "lock" in lowered:
            raise StoreError(
                f"the cache {path} is in use by another process",
                hint="DuckDB allows one writing process per file: close the cache in that "
                "process (or notebook kernel), or give this one its own cache file",
            ) from exc
        raise StoreError(
            f"cannot open the cache {path}: {exc}",
            hint="check that the file is a DuckDB database, or choose another path",
        ) from exc
    if not config or "memory_limit" not in config:
        conn.execute(f"SET memory_limit = '{_DEFAULT_MEMORY_LIMIT}'")
    return conn
