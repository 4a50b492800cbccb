"""``RedisTracker``: tracked signings in Redis, shared by every process and host.

The guarantee is :class:`~dokobit_async.reconcile.Tracker`'s, across processes: a
claim is one Lua script (Redis runs it while no other client's command runs), which
takes the due signings that nobody holds and stamps each with the end of its lease,
so two reconcilers never hold one signing at once; a reconciler that dies loses its
claims when their leases end (``docs/architecture.md#reconciliation``).

Three keys, all in one Redis Cluster hash tag (``dokobit:tracker:{name}:...``): a hash
of records by signing token, a sorted set of when each is due, and a sorted set of
when each claim ends. No key or value holds the access token. Times are the callers'
Unix clocks: keep the hosts' clocks in step (NTP), or a skewed host's leases end
early or late by the skew.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from ._tracker import Schedule, TrackedSigning
from ._urls import server_address

__all__ = ["RedisTracker"]

_TRACK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
"""

# KEYS: records, due, held; ARGV: now, limit, lease end
_CLAIM = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local scan = limit + redis.call('ZCARD', KEYS[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, scan)
local out = {}
for _, token in ipairs(due) do
  if #out >= 2 * limit then break end
  local held = redis.call('ZSCORE', KEYS[3], token)
  if (not held) or tonumber(held) <= now then
    redis.call('ZADD', KEYS[3], ARGV[3], token)
    table.insert(out, token)
    table.insert(out, redis.call('HGET', KEYS[1], token))
  end
end
return out
"""

_UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
redis.call('ZREM', KEYS[3], ARGV[1])
"""


def _record(signing: TrackedSigning) -> str:
    return json.dumps(
        {
            "flow": signing.flow,
            "created_at": signing.created_at,
            "next_at": signing.next_at,
            "polls": signing.polls,
            "status": signing.status,
            "signers": dict(signing.signers),
        },
        sort_keys=True,
    )


def _signing(token: str | bytes, record: str | bytes) -> TrackedSigning:
    fields: dict[str, Any] = json.loads(record)
    text = token.decode() if isinstance(token, bytes) else token
    return TrackedSigning(token=text, **fields)


class RedisTracker:
    """A :class:`~dokobit_async.reconcile.Tracker` in Redis.

    Args:
        redis: A ``redis://`` or ``rediss://`` URL (a client is created by
            :meth:`open` and closed by :meth:`close`), or a ``redis.asyncio.Redis``
            to use as it is (never closed here).
        name: Which set of tracked signings (the hash tag of the keys).
        schedule: When to look at each signing.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        name: str = "default",
        schedule: Schedule = Schedule(),  # noqa: B008 - frozen
    ) -> None:
        self.redis = redis
        self.name = name
        self.schedule = schedule
        prefix = f"dokobit:tracker:{{{name}}}:"
        self.keys = [f"{prefix}{part}" for part in ("records", "due", "held")]
        self._client: Redis | None = None

    def __repr__(self) -> str:
        target = self.redis
        shown = server_address(target) if isinstance(target, str) else type(target).__name__
        return f"<RedisTracker {shown} name={self.name!r}>"

    async def open(self) -> None:
        """Connect (for a URL) on first use."""
        if self._client is None:
            if isinstance(self.redis, str):
                self._client = Redis.from_url(self.redis)
            else:
                self._client = self.redis

    async def close(self) -> None:
        """Close the client created for a URL."""
        client, self._client = self._client, None
        if client is not None and isinstance(self.redis, str):
            await client.aclose()

    async def _call(self, script: str, *args: str | int | float) -> Any:
        if self._client is None:
            await self.open()
        assert self._client is not None
        return await self._client.eval(script, len(self.keys), *self.keys, *args)

    async def track(self, token: str, flow: str, created_at: float) -> None:
        """See :meth:`~dokobit_async.reconcile.Tracker.track`."""
        next_at = created_at + self.schedule.first
        signing = TrackedSigning(token=token, flow=flow, created_at=created_at, next_at=next_at)
        await self._call(_TRACK, token, _record(signing), repr(next_at))

    async def claim(self, now: float, limit: int, lease: float) -> list[TrackedSigning]:
        """See :meth:`~dokobit_async.reconcile.Tracker.claim`."""
        flat = await self._call(_CLAIM, repr(now), limit, repr(now + lease))
        return [_signing(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    async def update(self, signing: TrackedSigning) -> None:
        """See :meth:`~dokobit_async.reconcile.Tracker.update`."""
        await self._call(_UPDATE, signing.token, _record(signing), repr(signing.next_at))

    async def forget(self, token: str) -> None:
        """See :meth:`~dokobit_async.reconcile.Tracker.forget`."""
        if self._client is None:
            await self.open()
        assert self._client is not None
        records, due, held = self.keys
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(records, token)
            pipe.zrem(due, token)
            pipe.zrem(held, token)
            await pipe.execute()

    async def get(self, token: str) -> TrackedSigning | None:
        """See :meth:`~dokobit_async.reconcile.Tracker.get`."""
        if self._client is None:
            await self.open()
        assert self._client is not None
        record = await self._client.hget(self.keys[0], token)
        return None if record is None else _signing(token, record)

    async def oldest(self) -> TrackedSigning | None:
        """See :meth:`~dokobit_async.reconcile.Tracker.oldest`: one pass over the
        records (``HSCAN``), so it costs in proportion to the open signings."""
        if self._client is None:
            await self.open()
        assert self._client is not None
        first: TrackedSigning | None = None
        async for token, record in self._client.hscan_iter(self.keys[0]):
            signing = _signing(token, record)
            if first is None or (signing.created_at, signing.token) < (
                first.created_at,
                first.token,
            ):
                first = signing
        return first
