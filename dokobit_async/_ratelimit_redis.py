"""One rate limit per access token across processes and hosts, kept in Redis.

The guarantee is the in-process limiter's (``dokobit_async.ratelimit``), for every
process and host that shares the Redis: never more than ``calls`` requests reach the
API in any window of ``period`` seconds, a burst then a steady rate, and a 429 pausing
every client of the token. The rule and the scripts are in
docs/architecture.md#the-rate-limit-across-processes; in short:

* admission, release and pause are Lua scripts (``_ratelimit_lua``) that run
  atomically on the server with the server's clock, so host clock skew does not matter;
* a held slot has a lease: this process renews the leases of its calls under way every
  third of it (a failed renewal is tried again until the lease ends), so a call may last
  any time; a process that dies stops renewing, and its slots count as ended when their
  lease runs out (then one period more);
* the acquire script answers how long to wait for the next free slot, so a process
  sleeps exactly that long, then asks again: one process asks for all of its waiting
  calls at once, and only one request per process is ever waiting at the server;
* a release is sent in the background (batched with the others ready then): the slot
  is stamped when the script runs, after the call ended, which errs on the safe side.

Redis unreachable: a waiting call keeps trying, with backoff, for ``redis_timeout``
seconds, then raises :class:`RateLimitUnavailableError`. It never falls back to a
per-process limit: N processes would then send N times the limit, and the API's 429s
would hide the real fault.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any

import attrs
import redis.asyncio
import redis.exceptions

from . import _ratelimit_lua as lua
from ._urls import server_address
from .exceptions import DokobitError
from .ratelimit import RateLimit

__all__ = ["RateLimitUnavailableError", "RedisLimiter", "RedisRateLimit", "token_keys"]

logger = logging.getLogger("dokobit_async")

KEY_PREFIX = "dokobit:ratelimit:"
_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_FIRST_BACKOFF, _LAST_BACKOFF = 0.02, 1.0  # seconds between tries while Redis is away


class RateLimitUnavailableError(DokobitError):
    """The Redis that keeps the shared rate limit could not be reached in time.

    No request was sent: the call waited ``redis_timeout`` seconds for Redis.

    Attributes:
        waited: How long the call waited for Redis, in seconds.
    """

    def __init__(self, message: str, *, waited: float):
        super().__init__(message)
        self.waited = waited


def token_keys(access_token: str) -> list[str]:
    """The Redis keys of one token: a hash of it (never the token), in a hash tag."""
    tag = hashlib.sha256(access_token.encode()).hexdigest()
    return [f"{KEY_PREFIX}{{{tag}}}:{part}" for part in ("open", "ended", "state")]


def _shown(target: object) -> str:
    """A Redis URL without its password (or a client, by its type)."""
    if not isinstance(target, str):
        return f"<{type(target).__name__}>"
    return server_address(target)


@attrs.frozen
class _Loop:
    """What a :class:`RedisRateLimit` keeps per event loop."""

    client: redis.asyncio.Redis
    owned: bool
    limiters: dict[str, RedisLimiter] = attrs.field(factory=dict)
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)


@attrs.frozen
class RedisRateLimit(RateLimit):
    """:class:`~dokobit_async.RateLimit` shared through Redis by every process and
    host whose clients use the same access token.

    Pass it as ``DokobitClient(token, rate_limit=RedisRateLimit("redis://host:6379/0",
    calls=100, period=60))`` in each process, with the same settings everywhere, and
    close it when done (``async with`` or :meth:`aclose`). Its keys start with
    ``dokobit:ratelimit:``, then a hash of the token in a Redis Cluster hash tag.

    Attributes:
        redis: A ``redis://`` or ``rediss://`` URL (a client is created per event
            loop, and closed by :meth:`aclose`), or a ``redis.asyncio.Redis`` to use as
            it is (never closed here).
        lease: Seconds a held slot survives its process: a process renews its slots
            every third of it while their calls are under way; a process that dies
            blocks its slots for at most ``lease`` plus ``period``.
        redis_timeout: Seconds a call waits for an unreachable Redis before
            :class:`RateLimitUnavailableError`.

    Raises:
        ValueError: As :class:`~dokobit_async.RateLimit`, or ``lease`` or
            ``redis_timeout`` not above 0.
    """

    redis: str | redis.asyncio.Redis = attrs.field(repr=_shown)
    lease: float = attrs.field(default=30.0, kw_only=True, validator=attrs.validators.gt(0))
    redis_timeout: float = attrs.field(
        default=10.0, kw_only=True, validator=attrs.validators.gt(0)
    )
    _loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary, eq=False, repr=False
    )

    def _limiter(self, access_token: str) -> RedisLimiter:
        loop = asyncio.get_running_loop()
        here = self._loops.get(loop)
        if here is None:
            if isinstance(self.redis, str):
                client = redis.asyncio.Redis.from_url(
                    self.redis,
                    socket_connect_timeout=min(self.redis_timeout, 5.0),
                    socket_timeout=self.redis_timeout,
                )
                here = _Loop(client=client, owned=True)
            else:
                here = _Loop(client=self.redis, owned=False)
            self._loops[loop] = here
        keys = token_keys(access_token)
        limiter = here.limiters.get(keys[0])
        if limiter is None:
            limiter = here.limiters[keys[0]] = RedisLimiter(self, here, keys, loop)
        return limiter

    async def aclose(self) -> None:
        """Send the releases still pending, stop this loop's background work, and
        close the Redis client created for it."""
        here = self._loops.pop(asyncio.get_running_loop(), None)
        if here is None:
            return
        for limiter in here.limiters.values():
            await limiter.drain()
        for task in list(here.tasks):
            task.cancel()
        await asyncio.gather(*here.tasks, return_exceptions=True)
        if here.owned:
            await here.client.aclose()

    async def __aenter__(self) -> RedisRateLimit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class RedisLimiter:
    """The limiter of one token in one event loop, over Redis (the client's
    ``Limiter``): waiting calls of this loop are admitted in the order they asked."""

    def __init__(
        self,
        config: RedisRateLimit,
        here: _Loop,
        keys: list[str],
        loop: asyncio.AbstractEventLoop,
    ):
        self.config = config
        self._loop = loop
        self._here = here
        self._keys = keys
        script = here.client.register_script
        self._acquire, self._release = script(lua.ACQUIRE), script(lua.RELEASE)
        self._renew, self._pause = script(lua.RENEW), script(lua.PAUSE)
        interval = config.period / config.calls
        self._us = {  # the script's arguments, in integer microseconds
            "period": round(config.period * 1e6),
            "interval": round(interval * 1e6),
            "slack": round((config.effective_burst - 1) * interval * 1e6),
            "lease": round(config.lease * 1e6),
        }
        self._ttl = str(round(2000 * (config.period + config.lease)))  # ms: idle keys go
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._held: list[str] = []  # slots of calls under way here (any one is as good)
        self._ending: list[str] = []  # released here, not yet in Redis
        self._returning: list[str] = []  # granted, never used: given back
        self._paused_until = 0.0
        self._pump: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RedisLimiter(calls={self.config.calls}, period={self.config.period})"

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause that a 429 seen here started (0 when not paused)."""
        return max(0.0, self._paused_until - self._loop.time())

    def try_acquire(self) -> bool:
        """Never at once: a slot is granted by Redis only (``acquire``)."""
        return False

    async def acquire(self) -> None:
        """Wait (in turn, within this loop) until Redis grants a slot, and take it.

        Raises:
            RateLimitUnavailableError: Redis stayed unreachable for ``redis_timeout``.
        """
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        if self._pump is None or self._pump.done():
            self._pump = self._spawn(self._admit())
        try:
            await waiter
        except asyncio.CancelledError:
            # granted (not Redis's failure), then cancelled: nothing sent, slot back
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._returning.append(self._held.pop())
                self._flush()
            raise

    def release(self) -> None:
        """End a call that :meth:`acquire` admitted: its slot is stamped in Redis (in
        the background) and stays taken for one ``period`` from then."""
        if self._held:
            self._ending.append(self._held.pop())
            self._flush()

    def pause(self, seconds: float) -> None:
        """Hold every call of the token, in every process, for ``seconds``."""
        seconds = max(0.0, seconds)
        self._paused_until = max(self._paused_until, self._loop.time() + seconds)
        args = [round(seconds * 1e6), self._ttl]
        self._spawn(self._quietly(self._run(self._pause, args, self.config.lease), "pause"))

    async def drain(self) -> None:
        """Wait until the releases sent so far have reached Redis (or given up)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._here.tasks.add(task)
        task.add_done_callback(self._here.tasks.discard)
        return task

    async def _run(self, script: Any, args: Sequence[object], patience: float) -> Any:
        """Run ``script`` on this token's keys, trying again with backoff while Redis
        is unreachable, for ``patience`` seconds at most."""
        started = self._loop.time()
        backoff = _FIRST_BACKOFF
        while True:
            try:
                result = await script(keys=self._keys, args=list(args))
            except _UNREACHABLE as exc:
                waited = self._loop.time() - started
                if waited >= patience and not _cancelling():
                    # not chained: a connection error may show the URL
                    raise RateLimitUnavailableError(
                        f"the rate limit's Redis ({_shown(self.config.redis)}) was "
                        f"unreachable for {waited:.1f} s ({type(exc).__name__})",
                        waited=waited,
                    ) from None
            except redis.exceptions.RedisError as exc:  # refused: waiting will not help
                raise RateLimitUnavailableError(
                    f"the rate limit's Redis ({_shown(self.config.redis)}) refused the "
                    f"call ({type(exc).__name__})",
                    waited=self._loop.time() - started,
                ) from None
            else:
                if not _cancelling():
                    return result
            if _cancelling():  # redis-py may swallow a cancellation (aclose's)
                raise asyncio.CancelledError
            await asyncio.sleep(min(backoff, patience - waited))
            backoff = min(2 * backoff, _LAST_BACKOFF)

    async def _quietly(self, work: Awaitable[object], what: str) -> None:
        try:
            await work
        except RateLimitUnavailableError as exc:
            logger.warning("rate limit %s not shared: %s", what, exc)

    async def _admit(self) -> None:
        """Ask Redis for slots for every waiting call, hand them out in order, and
        sleep as long as Redis says the next one takes."""
        waiters, us = self._waiters, self._us
        while waiters:
            if waiters[0].done():  # cancelled while waiting
                waiters.popleft()
                continue
            paused = self._paused_until - self._loop.time()
            if paused > 0:  # this process saw the 429: no need to ask
                await asyncio.sleep(paused)
                continue
            want = sum(not w.done() for w in waiters)
            args = (self.config.calls, us["period"], us["interval"], us["slack"], us["lease"])
            asked = self._loop.time()  # the slots' leases end a lease after it or later
            try:
                reply = await self._run(
                    self._acquire, (*args, want, self._ttl), self.config.redis_timeout
                )
            except RateLimitUnavailableError as exc:
                while waiters:  # each call its own error (it records its request)
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(
                            RateLimitUnavailableError(str(exc), waited=exc.waited)
                        )
                return
            wait, granted = int(reply[0]), [_text(slot) for slot in reply[1:]]
            for slot in granted:
                while waiters and waiters[0].done():
                    waiters.popleft()
                if waiters:
                    self._held.append(slot)
                    waiters.popleft().set_result(None)
                else:  # its waiter was cancelled meanwhile
                    self._returning.append(slot)
            if self._returning:
                self._flush()
            if granted and (self._renewer is None or self._renewer.done()):
                self._renewer = self._spawn(self._keep_leases(asked))
            if wait > 0 and waiters:
                await asyncio.sleep(wait / 1e6)

    def _flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = self._spawn(self._send_releases())

    async def _send_releases(self) -> None:
        await asyncio.sleep(0)  # the releases of this turn of the loop go together
        while self._ending or self._returning:
            for mode, slots in (("end", self._ending), ("return", self._returning)):
                if not slots:
                    continue
                batch = slots[:]
                del slots[:]
                args = [mode, self._us["interval"], self._ttl, *batch]
                # past its lease, Redis counts the slot as ended by itself
                await self._quietly(self._run(self._release, args, self.config.lease), "release")

    async def _keep_leases(self, renewed: float) -> None:
        """Renew this process's leases every third of a lease while a call holds one
        (the oldest began at ``renewed`` or later); a renewal that fails is tried again
        at once, with backoff, until that lease ends: only Redis away until then lets a
        slot lapse (docs/architecture.md#the-rate-limit-across-processes)."""
        lease = self.config.lease
        while self._held or self._ending:
            await asyncio.sleep(max(0.0, renewed + lease / 3 - self._loop.time()))
            slots, asked = self._held + self._ending, self._loop.time()
            if not slots:
                return
            args = [self._us["lease"], self._ttl, *slots]
            try:  # past the lease's end: keep trying, a warning every third of it
                lapsed = await self._run(
                    self._renew, args, max(renewed + lease - asked, lease / 3)
                )
            except RateLimitUnavailableError as exc:
                logger.warning("rate limit leases not renewed: %s", exc)
                continue
            renewed = asked  # sent then or later: the leases end a lease after it
            if lapsed:
                logger.warning(
                    "%d call(s) outlived their rate limit lease (Redis was unreachable "
                    "until it ended): raise RedisRateLimit.lease",
                    lapsed,
                )


def _cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task is not None and getattr(task, "cancelling", lambda: 0)())


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
