"""How the Redis inbox gets its client: from a URL (checked, shown without its
password) or one of the user's own.

A client built from a URL has no automatic retries (a write is sent once: the
caller decides what a failure means, see :mod:`dokobit_async._inbox_redis`), a
timeout on connecting and on every answer, and a pool whose calls beyond
:data:`CONNECTIONS` wait for a free connection (up to the timeout) instead of
failing, as redis-py's default pool does past 100.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._urls import server_address
from .exceptions import InvalidArgumentError

__all__ = ["CONNECTIONS", "connect", "shown_address"]

CONNECTIONS = 64
"""Connections a client built from a URL opens at most."""


def shown_address(redis: str | aioredis.Redis) -> str:
    """Where ``redis`` points, for a repr or an error: the URL without its user,
    password or query (which may hold one); ``redis`` checked.

    Raises:
        InvalidArgumentError: Not a Redis URL, not a ``redis.asyncio.Redis``, or a
            client that decodes answers to ``str`` (the inbox stores bytes).
    """
    if isinstance(redis, str):
        parts = urlsplit(redis)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise InvalidArgumentError("a Redis URL starts with redis://, rediss:// or unix://")
        try:
            parts.port  # noqa: B018 - checked: a port that is not a number raises
        except ValueError:  # (its message would show the URL)
            raise InvalidArgumentError("the Redis URL's port is not a number") from None
        return server_address(redis)
    if isinstance(redis, aioredis.Redis):
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise InvalidArgumentError("the Redis client must use decode_responses=False")
        return "a client of your own"
    raise InvalidArgumentError("redis must be a redis:// URL or a redis.asyncio.Redis")


def connect(redis: str | aioredis.Redis, timeout: float) -> aioredis.Redis:
    """A client for ``redis``: built from the URL (see the module), or ``redis`` itself."""
    if not isinstance(redis, str):
        return redis
    pool = aioredis.BlockingConnectionPool.from_url(
        redis,
        max_connections=CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis.from_pool(pool)
