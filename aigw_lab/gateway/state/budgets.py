"""`RedisBudgetStore`: a `Budget`'s accounts and reservations in Redis, shared by every
process whose budget uses the same server and prefix.

Reserving (check every account, then hold the estimate on all of them or none), settling
(replace the reservation by the cost) and opening an account (the first process to open it
wins) are each one Lua script, atomic on the server: processes together overshoot a limit by
no more than the estimates of the calls in flight, as threads of one process do. A
reservation carries a lease (``lease`` seconds): a process that dies with calls in flight
stops holding their estimates once it runs out. Time is the budget's clock (wall time; the
periods are calendar days and months, and rolling windows).

After Redis restarts empty, `missing` reports the accounts gone (it checks each account at
most every ``recheck`` seconds, so a call does not pay a round trip for it), so the budget
seeds them again from its call log (with a team log, everyone's calls), as after a gateway
restart; calls admitted meanwhile counted from zero, and the account keeps the larger of
that count and the seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from aigw_lab.gateway.budget_limits import _SLACK_USD, Limit, _Account, _calendar_bounds, _row
from aigw_lab.gateway.budget_store import BudgetKey, Refused
from aigw_lab.gateway.state.connection import Outage, SharedState

__all__ = ["RedisBudgetStore", "SharedReservation"]

_FAR = 1e300  # "never": the end of a "total" period (Lua has no infinity literal)

# Bring account i to ``now`` (ARGV: period seconds, 0 for calendar; the calendar period's end
# for ``now``) and drop reservations whose lease ran out. Fields: spent, gen, ends,
# reserved, inflight; ':ev' the rolling window's "time cost" entries; ':r' reservation ->
# usd, ':x' reservation -> lease end.
_ROLL = r"""
local function num(x, default)
  local v = tonumber(x); if v == nil then return default end return v
end
local function fmt(x) return string.format('%.17g', x) end
local function roll(key, now, period, new_ends)
  local h = redis.call('HMGET', key, 'spent', 'gen', 'ends', 'reserved', 'inflight')
  local a = {spent = num(h[1], 0), gen = num(h[2], 0), ends = num(h[3], new_ends),
             reserved = num(h[4], 0), inflight = num(h[5], 0)}
  if period == 0 then
    if now >= a.ends then a.gen = a.gen + 1; a.spent = 0; a.ends = new_ends end
  else
    local ev = key .. ':ev'
    while true do
      local first = redis.call('LINDEX', ev, 0)
      if not first then break end
      local sp = string.find(first, ' ')
      if tonumber(string.sub(first, 1, sp - 1)) > now - period then break end
      redis.call('LPOP', ev)
      a.spent = a.spent - tonumber(string.sub(first, sp + 1))
    end
    if redis.call('LLEN', ev) == 0 then a.spent = 0 end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key .. ':x', '-inf', now)) do
    local usd = tonumber(redis.call('HGET', key .. ':r', id))
    redis.call('HDEL', key .. ':r', id); redis.call('ZREM', key .. ':x', id)
    if usd then a.reserved = a.reserved - usd; a.inflight = a.inflight - 1 end
  end
  if a.inflight <= 0 then a.inflight = 0; a.reserved = 0 end
  return a
end
local function save(key, a)
  redis.call('HSET', key, 'spent', fmt(a.spent), 'gen', a.gen, 'ends', fmt(a.ends),
             'reserved', fmt(a.reserved), 'inflight', a.inflight)
end
"""

# KEYS: accounts. ARGV: now, usd, reservation id, lease end, slack, then per account: limit
# usd, period seconds (0: calendar), the calendar end for now. Returns {'ok', gen...} or
# {'refused', index, spent, reserved, ends}.
_RESERVE = (
    _ROLL
    + r"""
local now, usd, id, lease, slack = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3],
  tonumber(ARGV[4]), tonumber(ARGV[5])
local accounts = {}
for i, key in ipairs(KEYS) do
  local off = 6 + (i - 1) * 3
  local a = roll(key, now, tonumber(ARGV[off + 1]), tonumber(ARGV[off + 2]))
  accounts[i] = a
  save(key, a)
  local used, limit = a.spent + a.reserved, tonumber(ARGV[off])
  if used >= limit or used + usd > limit + slack then
    return {'refused', i, fmt(a.spent), fmt(a.reserved), fmt(a.ends)}
  end
end
local gens = {'ok'}
for i, key in ipairs(KEYS) do
  local a = accounts[i]
  a.reserved = a.reserved + usd; a.inflight = a.inflight + 1
  save(key, a)
  redis.call('HSET', key .. ':r', id, fmt(usd)); redis.call('ZADD', key .. ':x', lease, id)
  gens[#gens + 1] = a.gen
end
return gens
"""
)

# KEYS: accounts. ARGV: now, reservation id, cost, then per account: the generation it was
# reserved in, period seconds (0: calendar), the calendar end for now.
_SETTLE = (
    _ROLL
    + r"""
local now, id, cost = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local off = 4 + (i - 1) * 3
  local period = tonumber(ARGV[off + 1])
  local a = roll(key, now, period, tonumber(ARGV[off + 2]))
  local usd = tonumber(redis.call('HGET', key .. ':r', id))
  if usd then
    redis.call('HDEL', key .. ':r', id); redis.call('ZREM', key .. ':x', id)
    a.inflight = a.inflight - 1
    if a.inflight > 0 then a.reserved = a.reserved - usd else a.inflight = 0; a.reserved = 0 end
  end
  if cost > 0 and tonumber(ARGV[off]) == a.gen then
    a.spent = a.spent + cost
    if period > 0 then redis.call('RPUSH', key .. ':ev', fmt(now) .. ' ' .. fmt(cost)) end
  end
  save(key, a)
end
return 1
"""
)

# KEYS: accounts. ARGV per account: spent, ends, events as JSON [[t, cost], ...]. An
# account that exists keeps its state (the first process to open it won), unless a
# reservation made it after Redis lost it (no 'seeded' field): then it keeps the larger of
# its spend since and the seed (the seed counts the calls logged since, too).
_OPEN = r"""
for i, key in ipairs(KEYS) do
  local off = (i - 1) * 3
  if redis.call('EXISTS', key) == 1 and redis.call('HEXISTS', key, 'seeded') == 0 then
    local spent = tonumber(redis.call('HGET', key, 'spent')) or 0
    local seed = tonumber(ARGV[off + 1])
    if seed > spent then redis.call('HSET', key, 'spent', ARGV[off + 1]) end
    redis.call('HSET', key, 'seeded', 1)
  elseif redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'spent', ARGV[off + 1], 'gen', 0, 'ends', ARGV[off + 2],
               'reserved', 0, 'inflight', 0, 'seeded', 1)
    redis.call('DEL', key .. ':ev')
    for _, e in ipairs(cjson.decode(ARGV[off + 3])) do
      redis.call('RPUSH', key .. ':ev', string.format('%.17g %.17g', e[1], e[2]))
    end
  end
end
return 1
"""


class SharedReservation:
    """The estimate one call holds on its accounts in Redis until settled (exactly once).
    ``usd``: what was reserved; ``offline``: reserved while Redis was unreachable (failing
    open), so nothing is held and settling records nothing."""

    __slots__ = ("keys", "generations", "usd", "ident", "settled", "offline")

    def __init__(self, keys: list[BudgetKey], generations: list[int], usd: float, ident: str):
        self.keys = keys
        self.generations = generations
        self.usd = usd
        self.ident = ident
        self.settled = False
        self.offline = not ident


class RedisBudgetStore:
    """`BudgetStore` on a Redis server (see the module doc). ``state``: the `SharedState`;
    ``outage``: what to do while Redis does not answer (default: fail closed, refusing
    calls with `SharedStateUnavailableError`: money is at stake); ``lease``: seconds a
    reservation holds without being settled (longer than any call may take); ``recheck``:
    seconds between checks that Redis still has an account (``clock``: monotonic)."""

    def __init__(
        self,
        state: SharedState,
        *,
        outage: Outage | None = None,
        lease: float = 3600.0,
        recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._client = state.client
        self.io = state.io  # the async drivers wait on Redis from these threads
        self._outage = outage or Outage("budgets", "closed")
        self._lease = lease
        self._recheck = recheck
        self._clock = clock
        self._checked: dict[BudgetKey, float] = {}  # key -> when Redis last had it seeded
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (("reserve", _RESERVE), ("settle", _SETTLE), ("open", _OPEN))
        }
        self._lock = threading.Lock()
        # Reservation ids: unique across processes (a random token) and calls (a counter;
        # next() on itertools.count is atomic under the GIL).
        self._token = secrets.token_hex(8)
        self._ids = itertools.count()
        # The limit behind each account this process opened (its key in Redis is derived
        # from the limit's scope, id and period and the owner, never its position).
        self._limits: dict[BudgetKey, Limit] = {}
        self._keys: dict[BudgetKey, str] = {}

    # --- the protocol ---------------------------------------------------------------------

    def missing(self, keys: Sequence[BudgetKey]) -> list[BudgetKey]:
        unknown = [key for key in keys if key not in self._keys]
        now = self._clock()
        checked = self._checked
        due = [k for k in keys if k in self._keys and now - checked.get(k, -1e300) >= self._recheck]
        if not due:
            return unknown

        def run() -> list[BudgetKey]:
            pipe = self._client.pipeline(transaction=False)
            for key in due:
                pipe.hexists(self._keys[key], "seeded")
            gone = []
            for key, there in zip(due, pipe.execute(), strict=True):
                if there:
                    checked[key] = now
                else:
                    gone.append(key)  # Redis restarted empty: seed it again
            return unknown + gone

        return self._outage.run(run, lambda: unknown, admits=False)

    def open(self, accounts: Sequence[tuple[BudgetKey, _Account]]) -> None:
        if not accounts:
            return
        args: list[Any] = []
        with self._lock:
            for key, account in accounts:
                self._limits[key] = account.limit
                self._keys[key] = self._redis_key(account.limit, account.owner)
                events = list(account.events or ())
                ends = account.ends if account.ends < _FAR else _FAR
                args += [repr(account.spent), repr(ends), json.dumps(events)]
        names = [self._keys[key] for key, _ in accounts]
        self._outage.run(
            lambda: self._scripts["open"](keys=names, args=args), lambda: None, admits=False
        )

    def reserve(
        self, keys: Sequence[BudgetKey], usd: float, now: float
    ) -> SharedReservation | Refused:
        keys = list(keys)
        ident = f"{self._token}.{next(self._ids)}"
        args: list[Any] = [repr(now), repr(usd), ident, repr(now + self._lease), repr(_SLACK_USD)]
        for key in keys:
            limit = self._limits[key]
            args += [repr(limit.usd), *self._period_args(limit, now)]

        def run() -> SharedReservation | Refused:
            reply = self._scripts["reserve"](keys=[self._keys[k] for k in keys], args=args)
            if _text(reply[0]) == "ok":
                return SharedReservation(keys, [int(g) for g in reply[1:]], usd, ident)
            index, spent, reserved, ends = int(reply[1]) - 1, *map(float, reply[2:5])
            key = keys[index]
            account = _Account(self._limits[key], key[1], now)
            account.spent, account.reserved = spent, reserved
            if account.events is None:
                account.ends = ends if ends < _FAR else math.inf
            return Refused(account, spent, reserved)

        return self._outage.run(run, lambda: SharedReservation(keys, [], usd, ""), admits=True)

    def settle(self, reservation: SharedReservation, cost: float, now: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        if reservation.offline:
            return  # nothing was held; the call log still has the call's cost
        args: list[Any] = [repr(now), reservation.ident, repr(cost)]
        for key, generation in zip(reservation.keys, reservation.generations, strict=True):
            args += [generation, *self._period_args(self._limits[key], now)]
        names = [self._keys[key] for key in reservation.keys]
        self._outage.run(
            lambda: self._scripts["settle"](keys=names, args=args), lambda: None, admits=False
        )

    def snapshot(
        self, now: float, fixed: Sequence[tuple[BudgetKey, _Account]]
    ) -> list[dict[str, Any]]:
        """The accounts this process has opened, as the server holds them now (rolled to
        ``now`` for display only), and ``fixed`` ones it has not."""
        with self._lock:
            opened = [(key, self._limits[key], self._keys[key]) for key in self._keys]

        def run() -> list[dict[str, Any]]:
            pipe = self._client.pipeline(transaction=True)
            for _, _, name in opened:
                pipe.hmget(name, "spent", "ends", "reserved", "inflight")
                pipe.lrange(name + ":ev", 0, -1)
            replies = pipe.execute()
            rows = {}
            for i, (key, limit, _) in enumerate(opened):
                (spent, ends, reserved, inflight), events = replies[2 * i], replies[2 * i + 1]
                account = _Account(limit, key[1], now)
                account.spent = float(spent or 0.0)
                account.reserved = float(reserved or 0.0)
                account.in_flight = int(inflight or 0)
                if account.events is None:
                    if ends is not None and float(ends) < _FAR:
                        account.ends = float(ends)
                    if now >= account.ends:
                        account.spent = 0.0
                        account.ends = _calendar_bounds(limit.period, now)[1]  # type: ignore[arg-type]
                else:
                    horizon = now - float(limit.period)
                    account.spent = sum(
                        float(c)
                        for t, c in (_text(e).split(" ") for e in events)
                        if float(t) > horizon
                    )
                rows[key] = _row(account)
            for key, account in fixed:
                if key not in rows:
                    account.roll(now)
                    rows[key] = _row(account)
            return list(rows.values())

        return self._outage.run(run, list, admits=False)

    # --- helpers ------------------------------------------------------------------------------

    def _redis_key(self, limit: Limit, owner: str | None) -> str:
        ident = json.dumps([limit.scope, limit.id, limit.period, owner])
        return self._state.key("budget", hashlib.sha256(ident.encode()).hexdigest()[:32])

    @staticmethod
    def _period_args(limit: Limit, now: float) -> list[str]:
        if limit.rolling:
            return [repr(float(limit.period)), "0"]
        ends = _calendar_bounds(limit.period, now)[1]  # type: ignore[arg-type]
        return ["0", repr(ends if ends < _FAR else _FAR)]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
