"""`RedisCacheStore`: the exact cache's answers in Redis, so an answer one gateway process
paid for is a hit in every other process sharing the server and prefix.

An entry is one string (JSON of the fields a hit needs, never the raw payload or the prompt:
keys are the cache's SHA-256 digests) set with Redis's own expiry (``PX``), so an expired
entry is never returned and Redis drops it itself. Bound the memory with TTLs and Redis's
``maxmemory`` with an eviction policy (``allkeys-lru``), not here.
"""

from __future__ import annotations

import json
from typing import Any

from aigw_lab.gateway.cache_stores import StoreStats, check_ttl
from aigw_lab.gateway.state.connection import Outage, SharedState
from aigw_lab.types import ChatResponse, Usage

__all__ = ["RedisCacheStore"]

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=dict)


class RedisCacheStore:
    """`CacheStore` on a Redis server (see the module doc). ``state``: the `SharedState`;
    ``outage``: what to do while Redis does not answer (default: fail open, i.e. a miss,
    and answers are not kept)."""

    def __init__(self, state: SharedState, *, outage: Outage | None = None) -> None:
        self._client = state.client
        self.io = state.io  # the async drivers wait on Redis from these threads
        self._outage = outage or Outage("the exact cache", "open")
        self._prefix = state.key("cache", "")

    def get(self, key: str) -> ChatResponse | None:
        raw = self._outage.run(lambda: self._client.get(self._prefix + key), _none, admits=True)
        return None if raw is None else _decode(raw)

    def set(self, key: str, response: ChatResponse, ttl: float | None) -> None:
        check_ttl(ttl)
        value = _encode(response)
        px = None if ttl is None else max(1, int(ttl * 1000))
        self._outage.run(
            lambda: self._client.set(self._prefix + key, value, px=px), _none, admits=False
        )

    def delete(self, key: str) -> bool:
        return bool(
            self._outage.run(lambda: self._client.delete(self._prefix + key), _zero, admits=False)
        )

    def clear(self) -> None:
        """Remove every entry under this store's prefix (other prefixes are untouched)."""

        def run() -> None:
            batch = []
            for name in self._client.scan_iter(match=self._pattern(), count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)

        self._outage.run(run, _none, admits=False)

    def __len__(self) -> int:
        return self.stats().entries

    def stats(self) -> StoreStats:
        """Entries and bytes under this prefix (a scan of the keys: for notebooks, not for
        the hot path). Expiry and eviction are Redis's, so they are not counted here."""

        def run() -> StoreStats:
            names = list(self._client.scan_iter(match=self._pattern(), count=1000))
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.strlen(name)
            sizes = pipe.execute() if names else []
            live = [s for s in sizes if s]
            return StoreStats(entries=len(live), bytes=sum(live))

        return self._outage.run(run, lambda: StoreStats(entries=0, bytes=0), admits=False)

    def close(self) -> None:
        """Nothing to release (the `SharedState` owns the connection)."""

    def __repr__(self) -> str:
        return f"<RedisCacheStore prefix={self._prefix!r}>"

    def _pattern(self) -> str:
        # The prefix is validated to hold no glob characters but braces, which are literal.
        return self._prefix + "*"


def _none() -> None:
    return None


def _zero() -> int:
    return 0


def _encode(response: ChatResponse) -> str:
    usage = response.usage
    tool_calls = None if response.tool_calls is None else list(response.tool_calls)
    return _JSON.encode(
        [
            response.text,
            response.finish_reason,
            [
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.reasoning_tokens,
            ],
            response.provider,
            response.model,
            response.response_id,
            tool_calls,
            response.simulated,
            response.cost_usd,
        ]
    )


def _decode(raw: Any) -> ChatResponse:
    text, finish, usage, provider, model, response_id, tool_calls, simulated, cost = json.loads(raw)
    return ChatResponse(
        text=text,
        finish_reason=finish,
        usage=Usage(
            input_tokens=usage[0],
            output_tokens=usage[1],
            cache_read_tokens=usage[2],
            cache_write_tokens=usage[3],
            reasoning_tokens=usage[4],
        ),
        provider=provider,
        model=model,
        response_id=response_id,
        tool_calls=None if tool_calls is None else tuple(tool_calls),
        simulated=simulated,
        cost_usd=cost,
    )
