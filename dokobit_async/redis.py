"""The optional Redis extra (``pip install 'dokobit-async[redis]'``): what lets many
processes and hosts share what one process keeps by default.

Importing it imports ``redis.asyncio``; ``import dokobit_async`` never does, so the
extra costs nothing where it is not used.

* :class:`RedisRateLimit`: one rate limit per access token across every process and
  host that shares the Redis (docs/architecture.md#the-rate-limit-across-processes).
* :class:`RedisInbox`: the inbox of every receiver replica that shares the Redis, with
  the same contract as ``SQLiteInbox``; ``appendonly yes`` and ``appendfsync always``
  on the server give an acknowledgement the durability of ``synchronous="FULL"``.
* :class:`RedisWorker`: runs handlers for a Redis inbox's events with no HTTP server,
  beside any number of other workers: confirmed against the API first (with a
  client), once per success, in order per signing across all of them, reclaimed
  after a lease when a worker dies.
* :class:`RedisTracker`: the signings the reconciler follows, shared by every process
  that reconciles, each polled by one of them at a time (a claim with a lease).
"""

from __future__ import annotations

from ._inbox_redis import RedisInbox
from ._ratelimit_redis import RateLimitUnavailableError, RedisRateLimit
from ._redis_tracker import RedisTracker
from ._redis_worker import RedisWorker

__all__ = [
    "RateLimitUnavailableError",
    "RedisInbox",
    "RedisRateLimit",
    "RedisTracker",
    "RedisWorker",
]
