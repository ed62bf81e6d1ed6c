"""The Lua scripts of `RedisBucketStore` (`aigw_lab.gateway.state.buckets`): each bucket
operation runs as one script, so it is atomic across every process sharing the server.

A bucket is a hash (``level``, ``updated``) and two sorted sets: ``:q``, its queue (member:
the waiter's ticket, score: the ticket: one global arrival order across processes) and
``:s``, when each queued waiter last looked (a waiter whose process died stops looking; after
``lease`` seconds it is dropped from the head so the queue moves on). ``:a`` holds each queued
waiter's amount (to count the calls ahead in a refusal's wait). Times are the server's
(``TIME``) unless the caller passes its own ``now``.
"""

from __future__ import annotations

__all__ = ["COMMON", "STEP", "LEAVE", "WAIT_FOR", "CHARGE", "PAUSE"]

# KEYS: the buckets. ARGV[1]: now ('' for the server's time), ARGV[2]: lease seconds,
# then per bucket (from ARGV[OFF]) capacity, rate, amount.
COMMON = r"""
local function clock(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
local now = clock(ARGV[1])
local lease = tonumber(ARGV[2])
local n = #KEYS
local cap, rate, amount, level = {}, {}, {}, {}
local function load(off)
  for i = 1, n do
    cap[i] = tonumber(ARGV[off + (i - 1) * 3])
    rate[i] = tonumber(ARGV[off + (i - 1) * 3 + 1])
    amount[i] = tonumber(ARGV[off + (i - 1) * 3 + 2])
    local h = redis.call('HMGET', KEYS[i], 'level', 'updated')
    local l, u = tonumber(h[1]), tonumber(h[2])
    if l == nil then l = cap[i]; u = now end
    if now > u then l = math.min(cap[i], l + (now - u) * rate[i]) end
    level[i] = l
  end
end
local function save(i)
  redis.call('HSET', KEYS[i], 'level', fmt(level[i]), 'updated', fmt(now))
  -- Idle, a bucket refills to full: forget it once it would be full anyway.
  local ttl = math.ceil((cap[i] - level[i]) / rate[i] + 60)
  redis.call('EXPIRE', KEYS[i], ttl)
end
local function time_for(i, amt)
  local short = amt - level[i]
  if short <= 1e-9 then return 0 end
  return short / rate[i]
end
local function head(i, me)
  -- The queue's head, dropping waiters that stopped looking (their process is gone).
  local q, s = KEYS[i] .. ':q', KEYS[i] .. ':s'
  while true do
    local h = redis.call('ZRANGE', q, 0, 0)
    if #h == 0 then return nil end
    if h[1] == me then return me end
    local seen = tonumber(redis.call('ZSCORE', s, h[1]))
    if seen ~= nil and seen >= now - lease then return h[1] end
    redis.call('ZREM', q, h[1]); redis.call('ZREM', s, h[1])
    redis.call('HDEL', KEYS[i] .. ':a', h[1])
  end
end
local function leave(me)
  -- Leave every queue; the new heads of the queues it led (they may go now).
  local heads = {}
  for i = 1, n do
    local q = KEYS[i] .. ':q'
    local was = redis.call('ZRANGE', q, 0, 0)
    if redis.call('ZREM', q, me) == 1 then
      redis.call('ZREM', KEYS[i] .. ':s', me); redis.call('HDEL', KEYS[i] .. ':a', me)
      if was[1] == me then
        local h = head(i, nil)
        if h then heads[#heads + 1] = h end
      end
    end
  end
  return heads
end
local function paused(pauses, targets)
  local left = 0
  for _, t in ipairs(targets) do
    local u = tonumber(redis.call('HGET', pauses, t))
    if u ~= nil then
      if u <= now then redis.call('HDEL', pauses, t) else left = math.max(left, u - now) end
    end
  end
  return left
end
"""

# ARGV[3]: ticket ('' to draw one), ARGV[4]: join ('1'/'0'), ARGV[5]: queued ('1'/'0'),
# ARGV[6]: the pauses hash, ARGV[7]: provider, ARGV[8]: provider/model, ARGV[9..]: buckets.
# Returns {status, ticket, value, queued, heads...}: status 'go' (taken), 'wait' (value:
# seconds), 'behind' (queued behind others), 'no' (cannot go, not joined), 'paused' (value:
# seconds, out of every queue).
STEP = (
    COMMON
    + r"""
local ticket = ARGV[3]
if ticket == '' then ticket = tostring(redis.call('INCR', ARGV[6] .. ':ticket')) end
local join, queued = ARGV[4] == '1', ARGV[5] == '1'
load(9)
if redis.call('EXISTS', ARGV[6]) == 1 then
  local p = paused(ARGV[6], {ARGV[7], ARGV[8]})
  if p > 0 then
    return {'paused', ticket, fmt(p), '0', unpack(leave(ticket))}
  end
end
if not queued then
  local free = true
  for i = 1, n do
    if redis.call('EXISTS', KEYS[i] .. ':q') == 1 and head(i, nil) ~= nil then free = false end
    if time_for(i, amount[i]) > 0 then free = false end
  end
  if free then
    for i = 1, n do level[i] = level[i] - amount[i]; save(i) end
    return {'go', ticket, '0', '0'}
  end
  if not join then return {'no', ticket, '0', '0'} end
end
local lead = true
for i = 1, n do
  local q = KEYS[i] .. ':q'
  redis.call('ZADD', q, 'NX', tonumber(ticket), ticket)
  redis.call('ZADD', KEYS[i] .. ':s', now, ticket)
  redis.call('HSET', KEYS[i] .. ':a', ticket, fmt(amount[i]))
  local ttl = math.ceil(cap[i] / rate[i] + lease + 60)
  redis.call('EXPIRE', q, ttl); redis.call('EXPIRE', KEYS[i] .. ':s', ttl)
  redis.call('EXPIRE', KEYS[i] .. ':a', ttl)
  if head(i, ticket) ~= ticket then lead = false end
end
if not lead then return {'behind', ticket, '0', '1'} end
local wait = 0
for i = 1, n do wait = math.max(wait, time_for(i, amount[i])) end
if wait > 0 then return {'wait', ticket, fmt(wait), '1'} end
for i = 1, n do level[i] = level[i] - amount[i]; save(i) end
return {'go', ticket, '0', '0', unpack(leave(ticket))}
"""
)

# ARGV[3]: ticket. Returns the new heads of the queues it led.
LEAVE = (
    COMMON
    + r"""
return leave(ARGV[3])
"""
)

# ARGV[3]: ticket, ARGV[4]: pauses hash, ARGV[5]: provider, ARGV[6]: provider/model,
# ARGV[7..]: buckets. Returns {paused seconds, bucket seconds, paused target, slowest index}.
WAIT_FOR = (
    COMMON
    + r"""
load(7)
local me = ARGV[3]
local p = paused(ARGV[4], {ARGV[5], ARGV[6]})
local target = ARGV[5]
if redis.call('HEXISTS', ARGV[4], ARGV[6]) == 1 then target = ARGV[6] end
local wait, slowest, slow = 0, 1, -1
for i = 1, n do
  local ahead = 0
  for _, other in ipairs(redis.call('ZRANGE', KEYS[i] .. ':q', 0, -1)) do
    if other == me then break end
    ahead = ahead + (tonumber(redis.call('HGET', KEYS[i] .. ':a', other)) or 0)
  end
  wait = math.max(wait, time_for(i, ahead + amount[i]))
  local own = time_for(i, amount[i])
  if own > slow then slow = own; slowest = i end
end
return {fmt(p), fmt(wait), target, slowest}
"""
)

# ARGV[3..]: buckets, with each one's amount being the charge's difference from what the
# bucket reserved (+: a debt, -: a refund). Returns the heads of queues a refund may move.
CHARGE = (
    COMMON
    + r"""
load(3)
local heads = {}
for i = 1, n do
  if amount[i] ~= 0 then
    level[i] = math.min(cap[i], level[i] - amount[i])
    save(i)
    if amount[i] < 0 then
      local h = head(i, nil)
      if h then heads[#heads + 1] = h end
    end
  end
end
return heads
"""
)

# KEYS: the pauses hash. ARGV[1]: now, ARGV[2]: target, ARGV[3]: seconds from now.
# Returns 1 when the pause is longer than the one holding (everyone waiting looks again).
PAUSE = r"""
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local untilt = now + tonumber(ARGV[3])
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[2]))
if old ~= nil and old >= untilt then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], string.format('%.17g', untilt))
local ttl = math.ceil(tonumber(ARGV[3]) + 60)
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""
