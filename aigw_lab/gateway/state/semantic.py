"""`RedisSemanticStore`: the semantic cache's entries in Redis, with a vector index in each
process kept in step with them, so an answer one process stored is found by the others.

Entries live in Redis (one string each: text, vector, markers, answer, times), with their
recency in a sorted set and every addition and removal appended to a stream. Each process
keeps its own `VectorIndex` per partition (searching vectors over the network per lookup
would cost far more than the search itself) and, before each search, reads the stream
from where it stopped: one round trip when nothing changed. The local mirror holds no
object per entry for the garbage collector (`LocalEntries`, as `MemorySemanticStore`):
a mirror of a million entries would otherwise make each full collection stop the process
for most of a second. Adding (with the eviction of the least recently used beyond
``max_entries``) and removing are Lua scripts, atomic on the server. Written against the
`SemanticStore` protocol on main; `SemanticCache` takes it once it accepts a ``store=``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from aigw_lab.gateway.semantic_entries import LocalEntries, entry_record
from aigw_lab.gateway.semantic_match import NumpyIndex, VectorIndex
from aigw_lab.gateway.semantic_store import SemanticEntry, SemanticStoreStats
from aigw_lab.gateway.state.cache import _decode, _encode
from aigw_lab.gateway.state.connection import Outage, SharedState

__all__ = ["RedisSemanticStore"]

_STREAM_MAX = 100_000  # events kept; a process further behind reloads every entry

# KEYS: id counter, lru zset, stream, stats hash. ARGV: entry prefix, entry, now, max.
_ADD = r"""
local id = redis.call('INCR', KEYS[1])
redis.call('SET', ARGV[1] .. id, ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), id)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'add', id)
local evicted = {}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('ZREM', KEYS[2], old); redis.call('DEL', ARGV[1] .. old)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'del', old)
    redis.call('HINCRBY', KEYS[4], 'evictions', 1)
    evicted[#evicted + 1] = old
  end
end
return {id, evicted}
"""

# KEYS: lru zset, stream, stats hash. ARGV: entry prefix, id, expired ('1'/'0'), max len.
_REMOVE = r"""
if redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('DEL', ARGV[1] .. ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'del', ARGV[2])
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[3], 'expired', 1) end
return 1
"""


class RedisSemanticStore:
    """`SemanticStore` on a Redis server (see the module doc). ``max_entries``: the bound
    over all processes; ``index_factory``: this process's index per partition (as for
    `MemorySemanticStore`); ``outage``: fail open (default: a miss, nothing kept)."""

    def __init__(
        self,
        state: SharedState,
        max_entries: int,
        *,
        index_factory: Callable[[int], VectorIndex] = NumpyIndex,
        outage: Outage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self._client = state.client
        self._outage = outage or Outage("the semantic cache", "open")
        self._clock = clock
        self._index_factory = index_factory
        self._entry = state.key("sem", "e", "")
        self._keys = {name: state.key("sem", name) for name in ("id", "lru", "log", "stats")}
        self._add = self._client.register_script(_ADD)
        self._remove = self._client.register_script(_REMOVE)
        self._lock = threading.Lock()
        self._local = LocalEntries(index_factory)  # this process's mirror
        self._seen: str | None = None  # the last stream event applied (None: load all)

    # --- the protocol ---------------------------------------------------------------------

    def add(self, entry: SemanticEntry) -> SemanticEntry:
        entry.vector = np.asarray(entry.vector, dtype=np.float32)
        keys = self._keys
        reply = self._outage.run(
            lambda: self._add(
                keys=[keys["id"], keys["lru"], keys["log"], keys["stats"]],
                args=[self._entry, _dump(entry), self._clock(), self.max_entries, _STREAM_MAX],
            ),
            lambda: None,
            admits=False,
        )
        if reply is not None:
            entry.entry_id = int(reply[0])
            record = entry_record(entry)
            with self._lock:
                if entry.entry_id not in self._local:  # a sync may have brought it already
                    self._local.put(entry.entry_id, entry, record)
                for old in reply[1]:
                    self._local.drop(int(old))
        return entry

    def search(
        self, partition: str, vector: np.ndarray, k: int
    ) -> list[tuple[SemanticEntry, float]]:
        self._outage.run(self._sync, lambda: None, admits=True)
        local = self._local
        with self._lock:
            index = local.indexes.get(partition)
            if index is None:
                return []
            if not getattr(index, "locks_itself", False):
                return local.build(partition, local.held(index.search(vector, k), index))
        found = index.search(vector, k)  # outside the lock, as MemorySemanticStore does
        with self._lock:
            held = local.held(found, None)
        return local.build(partition, held, index)

    def touch(self, entry_id: int) -> None:
        self._outage.run(
            lambda: self._client.zadd(self._keys["lru"], {entry_id: self._clock()}, xx=True),
            lambda: None,
            admits=False,
        )

    def remove(self, entry_id: int, *, expired: bool = False) -> bool:
        keys = self._keys
        removed = self._outage.run(
            lambda: self._remove(
                keys=[keys["lru"], keys["log"], keys["stats"]],
                args=[self._entry, entry_id, "1" if expired else "0", _STREAM_MAX],
            ),
            lambda: 0,
            admits=False,
        )
        with self._lock:
            self._local.drop(entry_id)
        return bool(removed)

    def purge_expired(self, now: float) -> int:
        self._outage.run(self._sync, lambda: None, admits=False)
        with self._lock:
            dead = self._local.table.expired(now)
        return sum(self.remove(entry_id, expired=True) for entry_id in dead)

    def entries(self) -> list[SemanticEntry]:
        """Every entry, least recently used first (as the server orders them)."""

        def run() -> list[SemanticEntry]:
            self._sync()
            order = [int(i) for i in self._client.zrange(self._keys["lru"], 0, -1)]
            with self._lock:
                return [self._local.entry(i) for i in order if i in self._local]

        return self._outage.run(run, list, admits=False)

    def clear(self) -> None:
        def run() -> None:
            names = list(self._client.scan_iter(match=self._entry + "*", count=1000))
            names += [self._keys["lru"], self._keys["log"], self._keys["stats"]]
            self._client.delete(*names)

        self._outage.run(run, lambda: None, admits=False)
        with self._lock:
            self._local.clear()
            self._seen = None

    def __len__(self) -> int:
        return int(
            self._outage.run(lambda: self._client.zcard(self._keys["lru"]), int, admits=False)
        )

    def stats(self) -> SemanticStoreStats:
        def run() -> SemanticStoreStats:
            pipe = self._client.pipeline(transaction=False)
            pipe.zcard(self._keys["lru"])
            pipe.hmget(self._keys["stats"], "evictions", "expired")
            entries, (evictions, expired) = pipe.execute()
            return SemanticStoreStats(
                entries=entries, evictions=int(evictions or 0), expired=int(expired or 0)
            )

        return self._outage.run(
            run, lambda: SemanticStoreStats(entries=0, evictions=0, expired=0), admits=False
        )

    def __repr__(self) -> str:
        return f"<RedisSemanticStore local={len(self._local)} max={self.max_entries}>"

    # --- keeping this process's index in step -------------------------------------------------

    def _sync(self) -> None:
        """Apply the additions and removals other processes made since the last look."""
        log = self._keys["log"]
        if self._seen is None:
            self._reload()
            return
        # From the last event applied, itself included: if it is gone, the stream was
        # trimmed past it and events may be missing, so start over.
        events = self._client.xrange(log, min=self._seen, count=_STREAM_MAX)
        if not events or _text(events[0][0]) != self._seen:
            self._reload()
            return
        events = events[1:]
        if not events:
            return
        added = [int(f[b"add"]) for _, f in events if b"add" in f]
        raws = self._client.mget([self._entry + str(i) for i in added]) if added else []
        loaded = [_load(i, raw) for i, raw in zip(added, raws, strict=True) if raw is not None]
        records = [entry_record(entry) for entry in loaded]  # decoded outside the lock
        with self._lock:
            for _, fields in events:
                if b"del" in fields:
                    self._local.drop(int(fields[b"del"]))
            for entry, record in zip(loaded, records, strict=True):
                if entry.entry_id not in self._local:
                    self._local.put(entry.entry_id, entry, record)
            self._seen = _text(events[-1][0])

    def _reload(self) -> None:
        log = self._keys["log"]
        last = self._client.xrevrange(log, count=1)
        ids = [int(i) for i in self._client.zrange(self._keys["lru"], 0, -1)]
        raws = self._client.mget([self._entry + str(i) for i in ids]) if ids else []
        with self._lock:
            self._local.clear()
            for entry_id, raw in zip(ids, raws, strict=True):
                if raw is not None:
                    entry = _load(entry_id, raw)
                    self._local.put(entry_id, entry, entry_record(entry))
            self._seen = _text(last[0][0]) if last else None  # None: reload until one


def _dump(entry: SemanticEntry) -> str:
    return json.dumps(
        {
            "partition": entry.partition,
            "text": entry.text,
            "vector": base64.b64encode(entry.vector.astype(np.float32).tobytes()).decode(),
            "response": _encode(entry.response),
            "created": entry.created,
            "expires": entry.expires,
            "markers": [list(entry.markers[0]), entry.markers[1]],
        },
        ensure_ascii=False,
    )


def _load(entry_id: int, raw: Any) -> SemanticEntry:
    data = json.loads(raw)
    vector = np.frombuffer(base64.b64decode(data["vector"]), dtype=np.float32).copy()
    return SemanticEntry(
        entry_id=entry_id,
        partition=data["partition"],
        text=data["text"],
        vector=vector,
        response=_decode(data["response"]),
        created=data["created"],
        expires=data["expires"],
        markers=(tuple(data["markers"][0]), data["markers"][1]),
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
