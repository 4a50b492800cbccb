"""The scripts of :class:`~dokobit_async._redis_worker.RedisWorker`, over the Redis
inbox's keys (``dokobit_async/_inbox_redis_layout.py``) and one more of each signing:

``q:<...>:turn``
    ``"<entry id> <worker> <event id>"`` while a worker runs the head of that queue:
    the signing's turn. A turn whose entry is no longer in the consumer group's
    pending list (acknowledged, or deleted) is stale and is cleared by the next TAKE.
    The event that holds the turn keeps its entry (no new one, ``ticket``; none
    taken out when it leaves pending, ``leave``): its worker's lease refresh and its
    reclaim need it.
``e:<id>`` field ``cf``
    Set with the attempt in which the API confirmed the event: a retry runs the
    handlers left without asking the API again (as the in-process dispatcher keeps
    ``Progress.confirmed``; a mark in Redis, because the retry may run on another
    worker). The inbox's readers ignore the field.
``delayed``
    Sorted set of event ids by the time of their next attempt (server time): failed
    events wait there, not in the stream; PROMOTE gives them an entry when due.

The invariant that keeps every signing moving: the head of every non-empty queue has
an entry in the stream (read or not), waits in ``delayed``, or its queue's turn is
held by an entry in the group's pending list. Whatever releases a turn (FINISH on
every path where the turn is still the worker's, TAKE's drop of a reclaimed entry
or of a stale turn, RELEASE) gives the queue's head a fresh entry (``wake``): a
head's entry may have been acknowledged with ``wait`` while another event (one
``inbox retry`` put behind it) held the turn. The tests check it over the keys
(``tests/test_redis_worker_turns.py``).

Times are the Redis server's (``TIME``), so the hosts' clocks do not matter.
"""

from __future__ import annotations

from ._inbox_redis_layout import FUNCTIONS

__all__ = ["BEAT", "FINISH", "PROMOTE", "RELEASE", "TAKE"]

_NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

TAKE = (
    FUNCTIONS
    + _NOW
    + """
-- May this worker run the event of this entry now? KEYS: seq (for the slot).
-- ARGV: prefix, group, entry id, worker, event id, the entry's queue ('' if none).
-- {'run', the event's hash} (the turn is the worker's: one round trip brings the
-- event too); or the entry is acknowledged and taken out with 'drop' (no such pending
-- event, not the event's current entry, or a second entry of the event that runs),
-- 'wait' (an earlier event of the signing is pending or running: its end hands the
-- turn on) or 'later' (in backoff: parked in delayed). An entry that held its queue's
-- turn (a reclaimed one, whose event was purged or set aside meanwhile) releases it.
local P, G, xid, me, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local S, e = P .. 'stream', P .. 'e:' .. id
local f = redis.call('HMGET', e, 'state', 'q', 'next', 'xid')
local q = f[2] or ARGV[6] or ''
local tk = q .. ':turn'
local function over(verdict)
  redis.call('XACK', S, G, xid)
  redis.call('XDEL', S, xid)
  local turn = q ~= '' and redis.call('GET', tk)
  if turn and string.sub(turn, 1, #xid + 1) == xid .. ' ' then
    redis.call('DEL', tk)
    wake(P, q)
  end
  return verdict
end
if f[1] ~= 'pending' then return over('drop') end
-- Only the event's current entry may run: an older one was taken out of the stream
-- (XDEL) when the event got a new one, and Redis 7's XAUTOCLAIM drops such entries
-- from the pending list at once, which would make a turn held with it look stale.
if f[4] ~= xid then return over('drop') end
local turn = redis.call('GET', tk)
if turn then
  local txid, tme, tid = string.match(turn, '^(%S+) (%S+) (.*)$')
  if txid == xid then  -- reclaimed from a worker that stopped (XAUTOCLAIM)
    redis.call('SET', tk, xid .. ' ' .. me .. ' ' .. id)
    return {'run', redis.call('HGETALL', e)}
  end
  if #redis.call('XPENDING', S, G, txid, txid, 1) > 0 then
    if tid == id then return over('drop') end
    return over('wait')
  end
  redis.call('DEL', tk)  -- stale: released, so the head is woken below
end
if redis.call('ZRANGE', q, 0, 0)[1] ~= id then
  if turn then wake(P, q) end
  return over('wait')
end
if tonumber(f[3]) > now() then
  redis.call('ZADD', P .. 'delayed', f[3], id)
  return over('later')
end
redis.call('SET', tk, xid .. ' ' .. me .. ' ' .. id)
return {'run', redis.call('HGETALL', e)}
"""
)

FINISH = (
    FUNCTIONS
    + _NOW
    + """
-- The one write of an attempt that ran: the record (handler marks, a failed attempt
-- retried after a delay in seconds, a new state, the error), the entry acknowledged,
-- the turn released and the queue's head woken (the hand-over). KEYS: seq (for the
-- slot). ARGV: prefix, group, entry id, worker, event id, its queue (the event's hash
-- may be gone), failed, delay, state ('' keeps it), has error, error, confirmed ('1':
-- the API confirmed the event, marked so that no retry asks again), then the handler
-- names. 'ok'; 'gone' (the event was purged or left pending meanwhile: only the
-- entry is acknowledged, and the turn handed on); 'lost' (the turn is no longer this
-- worker's: nothing written, not even the acknowledgement, which belongs to the
-- worker that took over).
local P, G, xid, me, id, q = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local S, e, tk = P .. 'stream', P .. 'e:' .. id, q .. ':turn'
if redis.call('GET', tk) ~= xid .. ' ' .. me .. ' ' .. id then return 'lost' end
redis.call('XACK', S, G, xid)
redis.call('XDEL', S, xid)
if redis.call('HGET', e, 'state') ~= 'pending' then
  if redis.call('HGET', e, 'xid') == xid then redis.call('HDEL', e, 'xid') end
  redis.call('DEL', tk)
  wake(P, q)
  return 'gone'
end
local next = now() + tonumber(ARGV[8])
record(P, e, id, ARGV[7], string.format('%.6f', next), ARGV[9], ARGV[10], ARGV[11], 13)
if ARGV[12] == '1' then redis.call('HSET', e, 'cf', '1') end
redis.call('HDEL', e, 'xid')  -- (deleted above) PROMOTE gives it a new one when due
redis.call('DEL', tk)
if redis.call('HGET', e, 'state') == 'pending' then
  redis.call('ZADD', P .. 'delayed', next, id)
  wake(P, q, id)
else
  wake(P, q)
end
return 'ok'
"""
)

PROMOTE = (
    FUNCTIONS
    + _NOW
    + """
-- Failed events whose retry time has come get a stream entry. KEYS: seq (for the
-- slot). ARGV: prefix, how many at most. Milliseconds until the next retry is due
-- (0 when more are due now), or -1 when none waits.
local P, t = ARGV[1], now()
local ids = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', string.format('%.6f', t),
  'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'delayed', id)
  if redis.call('HGET', P .. 'e:' .. id, 'state') == 'pending' then ticket(P, id) end
end
local first = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
if not first[2] then return -1 end
return math.max(0, math.ceil((tonumber(first[2]) - t) * 1000))
"""
)

BEAT = """
-- Keeps a running entry from being reclaimed: resets its idle time, only while this
-- worker still owns it. KEYS: stream. ARGV: prefix, group, entry id, worker. 1 or 0.
local p = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[4] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[4], 0, ARGV[3], 'JUSTID')
return 1
"""

RELEASE = (
    FUNCTIONS
    + """
-- Entries a stopping worker read but did not start: handed back at once, not after
-- the lease. Each one still this worker's is acknowledged; one that held its queue's
-- turn (reclaimed, not started again) releases it and wakes the queue's head; an
-- event it was the current entry of (still pending) gets a fresh entry that any
-- worker reads now. KEYS: seq (for the slot). ARGV: prefix, group, worker, then
-- entry id, event id, queue ('' if unknown) triples.
local P, G, me = ARGV[1], ARGV[2], ARGV[3]
local S = P .. 'stream'
for i = 4, #ARGV, 3 do
  local xid, id = ARGV[i], ARGV[i + 1]
  local p = redis.call('XPENDING', S, G, xid, xid, 1)
  if #p > 0 and p[1][2] == me then
    redis.call('XACK', S, G, xid)
    local f = redis.call('HMGET', P .. 'e:' .. id, 'state', 'xid', 'q')
    local q = f[3] or ARGV[i + 2]
    local turn = q ~= '' and redis.call('GET', q .. ':turn')
    if turn and string.sub(turn, 1, #xid + 1) == xid .. ' ' then
      redis.call('XDEL', S, xid)
      redis.call('DEL', q .. ':turn')
      wake(P, q)
    elseif f[1] == 'pending' and f[2] == xid then
      ticket(P, id)
    else
      redis.call('XDEL', S, xid)
    end
  end
end
return 0
"""
)
