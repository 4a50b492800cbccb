"""The Lua scripts of the rate limit shared through Redis (one token's keys).

Each script runs atomically on the Redis server and reads the server's own clock
(``TIME``, in integer microseconds), so the hosts' clocks never meet: their skew does
not matter. The keys of one token (``KEYS``, in this order) share one Redis Cluster
hash tag, so one script can touch them all:

* ``open``: a sorted set of the slots held by calls under way, scored by the end of
  their lease;
* ``ended``: a sorted set of the slots whose call ended, scored by when it ended;
  a slot is free again one ``period`` after that;
* ``state``: a hash with the leaky bucket's ``next`` time, the ``paused`` time that
  a 429 set, and ``seq``, the counter that names slots.

The rule is the in-process limiter's (docs/architecture.md#the-rate-limit): a slot is
taken from admission until one period after its call ended, and a call is admitted
only while fewer than ``calls`` slots are taken. A lease that ran out (its holder died,
or could not renew it) counts as the call's end, stamped at the lease's end: the call
ended by then at the latest, so the stamp errs on the safe side
(docs/architecture.md#the-rate-limit-across-processes).

Numbers are formatted with ``%.0f`` before they reach ``redis.call``: Lua 5.1 would
print a 16-digit microsecond time as ``1.7e+15``.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "PAUSE", "RELEASE", "RENEW"]

_PRELUDE = """
local function s(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- idle keys go after ttl ms; never sooner than a longer expiry set before (a pause's)
local function expire(ttl)
  for i = 1, #KEYS do
    if redis.call('PTTL', KEYS[i]) < tonumber(ttl) then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
"""

ACQUIRE = (
    _PRELUDE
    + """
-- ARGV: calls, period, interval, slack, lease (microseconds), want, ttl (ms)
local calls, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval, slack = tonumber(ARGV[3]), tonumber(ARGV[4])
local lease, want = tonumber(ARGV[5]), tonumber(ARGV[6])
-- a lease that ran out: its call ended by the lease's end at the latest
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', s(now), 'WITHSCORES')
for i = 1, #lapsed, 2 do
  redis.call('ZADD', KEYS[2], lapsed[i + 1], lapsed[i])
end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', s(now)) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', s(now - period))
local open, ended = redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])
local state = redis.call('HMGET', KEYS[3], 'next', 'paused')
local nxt, paused = tonumber(state[1]) or 0, tonumber(state[2]) or 0
local granted = {0}
while #granted <= want do
  local at = math.max(nxt - slack, paused)
  if open + ended >= calls then
    if ended == 0 then
      -- every slot is under way: none frees sooner than a period after a release
      at = math.max(at, now + period)
    else
      local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
      at = math.max(at, tonumber(oldest[2]) + period)
    end
  end
  if at > now then
    granted[1] = at - now
    break
  end
  local id = s(redis.call('HINCRBY', KEYS[3], 'seq', 1)) .. '@' .. s(now)
  redis.call('ZADD', KEYS[1], s(now + lease), id)
  open = open + 1
  nxt = math.max(nxt, now) + interval
  granted[#granted + 1] = id
end
if #granted > 1 then
  redis.call('HSET', KEYS[3], 'next', s(nxt))
  expire(ARGV[7])
end
granted[1] = s(granted[1])
return granted
"""
)
"""Admit up to ``want`` calls now: ``[wait, id, ...]``, the slots granted and, when
fewer than ``want``, the microseconds until the next may go."""

RELEASE = (
    _PRELUDE
    + """
-- ARGV: 'end' or 'return', interval (microseconds), ttl (ms), slot ids...
local returned = 0
for i = 4, #ARGV do
  local held = redis.call('ZREM', KEYS[1], ARGV[i]) == 1
  if ARGV[1] == 'return' then
    if held then returned = returned + 1 end
  elseif held or redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[2], s(now), ARGV[i])
  end
end
if returned > 0 then
  local nxt = tonumber(redis.call('HGET', KEYS[3], 'next') or '0')
  redis.call('HSET', KEYS[3], 'next', s(nxt - returned * tonumber(ARGV[2])))
end
expire(ARGV[3])
return returned
"""
)
"""End slots (``'end'``: stamped now, or later than their lapsed lease's stamp), or
give back slots whose call was never sent (``'return'``)."""

RENEW = (
    _PRELUDE
    + """
-- ARGV: lease (microseconds), ttl (ms), slot ids...
local missing = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], s(now + tonumber(ARGV[1])), ARGV[i])
  else
    missing = missing + 1
  end
end
expire(ARGV[2])
return missing
"""
)
"""Extend the leases of slots still held; how many had already lapsed."""

PAUSE = (
    _PRELUDE
    + """
-- ARGV: seconds (microseconds), ttl (ms)
local until_ = now + tonumber(ARGV[1])
local paused = tonumber(redis.call('HGET', KEYS[3], 'paused') or '0')
if until_ > paused then redis.call('HSET', KEYS[3], 'paused', s(until_)) end
expire(s(math.max(tonumber(ARGV[2]), math.ceil(tonumber(ARGV[1]) / 1000))))
return 0
"""
)
"""Hold every call of the token until ``seconds`` from now (extends, never shortens)."""
