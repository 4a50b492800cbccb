"""The Redis inbox's data: its keys, the Lua scripts that write them (each write is
one script, so that Redis runs it alone and no other client sees half of it), and how
an event is read back.

The key layout (every key under the inbox's prefix, which holds a Redis Cluster hash
tag, so that one inbox is one slot and a script may reach each of its keys):

``seq``
    The counter that numbers events (``INCR``). Never decremented nor deleted by the
    inbox, so a ``seq`` is never reused, even after a purge.
``e:<id>``
    One hash per event: ``id``, ``seq``, ``sig`` (the signing token), ``action``, ``body``,
    ``ctype``, ``at`` (received_at), ``state``, ``attempts``, ``next``
    (next_attempt_at), ``err`` (last_error, absent when none), ``tp`` (the opaque
    traceparent, absent when none), ``q`` (the key of its queue), ``xid`` (its
    stream entry while pending), ``rp`` and ``rh`` (how many times it was replayed
    and the one handler of its last replay, each absent when none) and one field
    ``h:<name>`` per handler that
    succeeded (a mark: set once, never read back as a counter). A worker reads the
    whole hash (``HGETALL``), so it gets what ``get()`` gets.
``all`` and ``s:<state>``
    Sorted sets of event ids scored by ``seq``: every event, and the events in each
    state (``list``, ``pending``, ``counts``, ``retry``, ``purge`` read them).
``q:<sha256 of the signing token>`` (``q:-<id>`` for an event without a token)
    The pending events of one signing, scored by ``seq``: its head is the only event
    of the signing a worker may run (per-signing order across workers); an event
    without a token is a queue of its own. Hashed: a key never holds a token.
``stream``
    At most one entry ``{id, q}`` per pending event (its ``xid``), with the entry id
    ``0-<n>`` where ``n`` comes from the ``seq`` counter: the stream's ids rise with
    ``seq``, and a lost or reset counter makes ``XADD`` refuse the write instead of
    reusing a number. An event leaving ``pending`` takes its entry out (``XDEL``)
    and gives the next event of its signing a new one; workers in a consumer group
    read it (``dokobit_async/_redis_worker.py``).

Every script makes its checks (the duplicate, the event's existence) before an event's
first write, and that first write is the one a damaged key would refuse (``INCR`` of a
counter that is not a number, ``XADD`` of an id that is not above the stream's last):
what is written after it cannot fail but on a key of the wrong type written by
something else, or a server out of memory. ``ADD`` stores a batch of events (the adds
that queued up while the previous batch was on its way): an error part way leaves the
events before it stored, and every add of the batch raises; an add that raised may
thus be stored, never the reverse.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Awaitable
from typing import cast

import redis.asyncio as aioredis

from ._inbox_base import STATES, InboxState, StoredEvent
from ._inbox_replay import Selection

__all__ = [
    "ADD",
    "FUNCTIONS",
    "PAGE",
    "PURGE",
    "READ_PAGE",
    "REPLAY",
    "RETRY",
    "UPDATE",
    "event_from_flat",
    "event_from_hash",
    "ids_after",
    "pages_of",
    "queue_key",
    "replay_args",
    "state_counts",
]

PAGE = 500
"""Ids a read, purge or retry script looks at per call: short scripts, so that the
server (which runs one at a time) is never held up by a long one."""


def queue_key(prefix: str, signing_token: str, id: str) -> str:
    """The key of the queue of pending events that event ``id`` joins: its signing's,
    named by the token hashed (SHA-256), or one of its own without a token."""
    if not signing_token:
        return f"{prefix}q:-{id}"
    return f"{prefix}q:{hashlib.sha256(signing_token.encode()).hexdigest()}"


FUNCTIONS = """
-- Whether event id holds the turn of queue q (a worker runs it): its running entry
-- must stay as it is (see dokobit_async/_redis_worker_lua.py).
local function holds(q, id)
  local turn = redis.call('GET', q .. ':turn')
  return turn ~= false and string.match(turn, '^%S+ %S+ (.*)$') == id
end

-- A fresh stream entry for a pending event (its old one, if any, taken out): what
-- tells a worker the event may be its signing's turn. Never for the event that holds
-- the turn: its worker's entry would go, and the turn would look stale.
local function ticket(P, id)
  local e = P .. 'e:' .. id
  local f = redis.call('HMGET', e, 'xid', 'q')
  if holds(f[2], id) then return end
  if f[1] then redis.call('XDEL', P .. 'stream', f[1]) end
  local n = redis.call('INCR', P .. 'seq')
  local xid = redis.call('XADD', P .. 'stream', '0-' .. n, 'id', id, 'q', f[2])
  redis.call('HSET', e, 'xid', xid)
end

-- The hand-over, whenever a queue's turn is released or its head changes: the head
-- (unless it is skip, an event that waits in delayed) gets a fresh entry. The
-- invariant it keeps: the head of every non-empty queue has an entry in the stream
-- (read or not), waits in delayed, or its queue's turn is held (and its release
-- wakes the queue). A second entry is harmless: TAKE drops an entry that is not the
-- event's current one.
local function wake(P, q, skip)
  local head = redis.call('ZRANGE', q, 0, 0)[1]
  if head and head ~= skip then ticket(P, head) end
end

-- An event leaves pending (for another state, or purged): out of its queue and of
-- delayed, its stream entry taken out. When it was the head of its queue, the next
-- event gets an entry (wake). An event that a worker runs keeps its entry, and
-- the hand-over waits for the end of its run (FINISH, or TAKE of a reclaimed entry).
local function leave(P, e, id)
  local f = redis.call('HMGET', e, 'q', 'xid')
  local held = holds(f[1], id)
  if f[2] and not held then
    redis.call('XDEL', P .. 'stream', f[2])
    redis.call('HDEL', e, 'xid')
  end
  redis.call('ZREM', P .. 'delayed', id)
  local head = redis.call('ZRANGE', f[1], 0, 0)[1]
  redis.call('ZREM', f[1], id)
  if head == id and not held then wake(P, f[1]) end
end

-- An event between states: the state indexes; its queue and stream entry when it
-- leaves pending or comes back to it.
local function move(P, e, id, old, new)
  if old == new then return end
  local f = redis.call('HMGET', e, 'seq', 'q')
  redis.call('ZREM', P .. 's:' .. old, id)
  redis.call('ZADD', P .. 's:' .. new, f[1], id)
  if old == 'pending' then
    leave(P, e, id)
  elseif new == 'pending' then
    redis.call('ZADD', f[2], f[1], id)
    ticket(P, id)
  end
end

-- One attempt's record (or one of its parts) on an event that exists: handler marks
-- (ARGV[names_at] onwards), a failed attempt with its retry time, a new state ('' keeps
-- it), the error (if has_error is '1'). The failed attempts after it.
local function record(P, e, id, failed, next, state, has_error, error, names_at)
  local cur = redis.call('HMGET', e, 'state', 'attempts')
  local attempts = tonumber(cur[2])
  for i = names_at, #ARGV do redis.call('HSET', e, 'h:' .. ARGV[i], '1') end
  if failed == '1' then
    attempts = attempts + 1
    redis.call('HSET', e, 'attempts', attempts, 'next', next)
  end
  if has_error == '1' then redis.call('HSET', e, 'err', error) end
  if state ~= '' then
    move(P, e, id, cur[1], state)
    redis.call('HSET', e, 'state', state)
  end
  return attempts
end
"""

ADD = """
-- Store new events, each as one pending event unless its id is taken (then nil).
-- KEYS: seq (for the slot). ARGV: prefix, then 8 per event: id, signing token,
-- action, body, content type, received_at, its signing's queue key, and '' for no
-- traceparent or '=' followed by it. The seq of each event, or nil for a duplicate
-- (also within the call: the first keeps its traceparent).
local P = ARGV[1]
local out = {}
for i = 2, #ARGV, 8 do
  local id, q = ARGV[i], ARGV[i + 6]
  local e = P .. 'e:' .. id
  if redis.call('EXISTS', e) == 1 then
    out[#out + 1] = false
  else
    local seq = redis.call('INCR', KEYS[1])
    local xid = redis.call('XADD', P .. 'stream', '0-' .. seq, 'id', id, 'q', q)
    redis.call('HSET', e, 'id', id, 'seq', seq, 'sig', ARGV[i + 1], 'action', ARGV[i + 2],
      'body', ARGV[i + 3], 'ctype', ARGV[i + 4], 'at', ARGV[i + 5], 'state', 'pending',
      'attempts', 0, 'next', '0', 'q', q, 'xid', xid)
    if ARGV[i + 7] ~= '' then redis.call('HSET', e, 'tp', string.sub(ARGV[i + 7], 2)) end
    redis.call('ZADD', P .. 'all', seq, id)
    redis.call('ZADD', P .. 's:pending', seq, id)
    redis.call('ZADD', q, seq, id)
    out[#out + 1] = seq
  end
end
return out
"""

UPDATE = (
    FUNCTIONS
    + """
-- One attempt's record. KEYS: e:<id>. ARGV: prefix, id, failed, next_attempt_at,
-- state ('' keeps it), has error, error, then the handler names. The failed attempts
-- after it, or nil if there is no such event.
if not redis.call('HGET', KEYS[1], 'state') then return false end
return record(ARGV[1], KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], 8)
"""
)

RETRY = (
    FUNCTIONS
    + """
-- Dead or unconfirmed events back to pending now. KEYS: seq (for the slot).
-- ARGV: prefix, then ids. How many moved.
local P = ARGV[1]
local moved = 0
for i = 2, #ARGV do
  local e = P .. 'e:' .. ARGV[i]
  local state = redis.call('HGET', e, 'state')
  if state == 'dead' or state == 'unconfirmed' then
    move(P, e, ARGV[i], state, 'pending')
    redis.call('HSET', e, 'state', 'pending', 'attempts', 0, 'next', '0')
    moved = moved + 1
  end
end
return moved
"""
)

REPLAY = (
    FUNCTIONS
    + """
-- Done events back to pending now, as a replay: for every handler (their marks
-- cleared) or for one (its mark cleared, its name kept in rh), the replay counted
-- (rp), back in the queue and the stream as RETRY does. KEYS: seq (for the slot).
-- ARGV: prefix, handler ('' for all), received_after and received_before ('' for
-- none), action ('' for any, else '=' and the action), then ids. How many moved.
local P, h, after, before, action = ARGV[1], ARGV[2], tonumber(ARGV[3]),
  tonumber(ARGV[4]), ARGV[5]
local moved = 0
for i = 6, #ARGV do
  local id = ARGV[i]
  local e = P .. 'e:' .. id
  local f = redis.call('HMGET', e, 'state', 'at', 'action')
  if f[1] == 'done' and (after == nil or tonumber(f[2]) >= after)
      and (before == nil or tonumber(f[2]) < before)
      and (action == '' or '=' .. f[3] == action) then
    if h == '' then
      for _, k in ipairs(redis.call('HKEYS', e)) do
        if string.sub(k, 1, 2) == 'h:' then redis.call('HDEL', e, k) end
      end
      redis.call('HDEL', e, 'rh')
    else
      redis.call('HDEL', e, 'h:' .. h)
      redis.call('HSET', e, 'rh', h)
    end
    move(P, e, id, 'done', 'pending')
    redis.call('HSET', e, 'state', 'pending', 'attempts', 0, 'next', '0')
    redis.call('HINCRBY', e, 'rp', 1)
    moved = moved + 1
  end
end
return moved
"""
)

PURGE = (
    FUNCTIONS
    + """
-- Delete the events among ids that are in a state and (if given) received before a
-- time (a pending one hands its signing's turn on). KEYS: seq (for the slot). ARGV:
-- prefix, state, older_than ('' for any), ids. How many were deleted.
local P, state, older = ARGV[1], ARGV[2], tonumber(ARGV[3])
local deleted = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local e = P .. 'e:' .. id
  local f = redis.call('HMGET', e, 'state', 'at')
  if f[1] == state and (older == nil or tonumber(f[2]) < older) then
    if state == 'pending' then leave(P, e, id) end
    redis.call('ZREM', P .. 's:' .. state, id)
    redis.call('ZREM', P .. 'all', id)
    redis.call('DEL', e)
    deleted = deleted + 1
  end
end
return deleted
"""
)

READ_PAGE = """
-- One page of an index, by seq: up to ARGV[3] ids after seq ARGV[2] are looked at;
-- those whose event is (still) stored, in ARGV[5] if given, and due by ARGV[4] if
-- given, are returned whole. KEYS: the index. ARGV: prefix, after_seq, how many to
-- look at, due_before ('' for any), state ('' for any).
-- Returns {last seq looked at, how many were looked at, {event hashes}}.
local P, due, state = ARGV[1], tonumber(ARGV[4]), ARGV[5]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES',
  'LIMIT', 0, tonumber(ARGV[3]))
local found = {}
local last = ARGV[2]
for i = 1, #ids, 2 do
  last = ids[i + 1]
  local e = P .. 'e:' .. ids[i]
  local f = redis.call('HMGET', e, 'state', 'next')
  if f[1] and (state == '' or f[1] == state)
      and (due == nil or tonumber(f[2]) <= due) then
    found[#found + 1] = redis.call('HGETALL', e)
  end
end
return {last, #ids / 2, found}
"""


def replay_args(handler: str | None, selection: Selection) -> builtins.list[str]:
    """The arguments of :data:`REPLAY` before its ids."""
    bounds = (selection.received_after, selection.received_before)
    args = [handler or "", *("" if t is None else repr(float(t)) for t in bounds)]
    return [*args, "" if selection.action is None else "=" + selection.action]


def pages_of(ids: builtins.list[str]) -> builtins.list[builtins.list[str]]:
    """``ids`` in pages of at most :data:`PAGE` (one script call each)."""
    return [ids[at : at + PAGE] for at in range(0, len(ids), PAGE)]


async def state_counts(prefix: str, client: aioredis.Redis) -> dict[str, int]:
    """How many events are in each state (every state present, zeros included), read
    in one transaction."""
    states = sorted(STATES)
    async with client.pipeline(transaction=True) as pipe:
        for state in states:
            pipe.zcard(prefix + "s:" + state)
        counted = cast("builtins.list[int]", await pipe.execute())
    return dict(zip(states, counted, strict=True))


def ids_after(
    index: str, cursor: str, client: aioredis.Redis
) -> Awaitable[builtins.list[tuple[bytes, float]]]:
    """A page of an index's ids with their seq, after ``cursor`` (a ZRANGE bound)."""
    page = client.zrangebyscore(index, cursor, "+inf", start=0, num=PAGE, withscores=True)
    return cast("Awaitable[builtins.list[tuple[bytes, float]]]", page)


def event_from_flat(flat: builtins.list[bytes]) -> StoredEvent:
    """The event of a hash returned flat (``HGETALL`` in a script)."""
    return event_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


def event_from_hash(fields: dict[bytes, bytes]) -> StoredEvent:
    """The :class:`StoredEvent` of an event's hash."""
    error, traceparent, handler = fields.get(b"err"), fields.get(b"tp"), fields.get(b"rh")
    return StoredEvent(
        id=fields[b"id"].decode(),
        seq=int(fields[b"seq"]),
        signing_token=fields[b"sig"].decode(),
        action=fields[b"action"].decode(),
        body=fields[b"body"],
        content_type=fields[b"ctype"].decode(),
        received_at=float(fields[b"at"]),
        state=cast("InboxState", fields[b"state"].decode()),
        attempts=int(fields[b"attempts"]),
        next_attempt_at=float(fields[b"next"]),
        last_error=None if error is None else error.decode(),
        handlers_done=frozenset(k[2:].decode() for k in fields if k.startswith(b"h:")),
        traceparent=None if traceparent is None else traceparent.decode(),
        replays=int(fields.get(b"rp", 0)),
        replay_handler=None if handler is None else handler.decode(),
    )
