"""One rate limit per access token, shared by every client that uses the token.

The guarantee: never more than ``calls`` requests *reach the API* in any window of
``period`` seconds (any half-open interval ``[t, t + period)``), while a steady load
gets the full rate but one round trip per period. It is counted where the API counts
it, at the server, so it must hold whatever happens between the client's decision and
the request's arrival (a cold connection's handshake, the event loop's scheduling, the
network): a limiter that counts a call when it lets it start (an "admission") lets a
call admitted at the end of one window arrive in the next, on top of the next window's
own calls. Hence the rule (docs/architecture.md#the-rate-limit):

* each call holds a slot from its admission until it has been answered or has failed
  (or was cancelled), and then its slot stays taken for one more ``period``, stamped
  with the time the call *ended*. A call is admitted only while fewer than ``calls``
  slots are taken. A call ends after it reached the server and starts before it
  reaches it, so every call admitted now arrives a full period after the arrival of
  any call whose slot has expired: no window at the server holds more than ``calls``
  (the proof is in docs/architecture.md#the-rate-limit). The cost is one round trip
  per period.
* a leaky bucket shapes the flow within that: a burst of ``burst`` calls after a quiet
  spell, then one every ``period / calls`` seconds (a bucket alone guarantees nothing
  per window: its burst comes on top of its rate).

A 429 from the API pauses the token (every client of it) for the ``Retry-After`` time,
or for the retry policy's backoff when the API gave none. Calls waiting for a slot are
admitted in the order they asked.

Limiters belong to one event loop, so the registry is kept per loop, keyed by a hash of
the token (never the token itself). Across processes and hosts, the same rule is kept in
Redis by ``dokobit_async.redis.RedisRateLimit`` (a subclass whose ``_limiter`` builds
that limiter instead: the client sees one small protocol, :class:`Limiter`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Protocol

import attrs

# Limiter, SharedLimiter, limiter_for and timed_acquire are internal (the client uses them)
__all__ = ["RateLimit"]

logger = logging.getLogger("dokobit_async")


@attrs.frozen(kw_only=True)
class RateLimit:
    """At most ``calls`` requests per ``period`` seconds for one access token.

    Attributes:
        calls: How many requests may reach the API in any window of ``period``
            seconds.
        period: The window, in seconds.
        burst: How many may go at once after a quiet spell (default: a tenth of
            ``calls``, at least one); the window guarantee holds whatever it is.

    Raises:
        ValueError: ``calls`` below 1, ``period`` not above 0, or ``burst`` outside
            1 to ``calls``.
    """

    calls: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    period: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    burst: int | None = attrs.field(default=None)

    @burst.validator
    def _check_burst(self, _: object, value: int | None) -> None:
        if value is not None and not 1 <= value <= self.calls:
            raise ValueError("burst must be between 1 and calls")

    @property
    def effective_burst(self) -> int:
        """The bucket's burst size."""
        return self.burst if self.burst is not None else max(1, self.calls // 10)

    def _limiter(self, access_token: str) -> Limiter:
        """The running loop's limiter for ``access_token`` (a subclass may share it
        further: ``dokobit_async.redis.RedisRateLimit``)."""
        return limiter_for(access_token, self)


class Limiter(Protocol):
    """What a call needs of its token's limiter, in one event loop: ``await acquire()``
    (unless :meth:`try_acquire` took a slot at once) before a request is sent, then
    :meth:`release` exactly once when it has been answered, has failed or was
    cancelled; :meth:`pause` after a 429."""

    _loop: asyncio.AbstractEventLoop

    def try_acquire(self) -> bool: ...

    async def acquire(self) -> None: ...

    def release(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


class SharedLimiter:
    """The limiter of one access token within one event loop.

    Each request is bracketed: ``await acquire()`` (or a true :meth:`try_acquire`)
    before it is sent, then :meth:`release` exactly once when it has been answered,
    has failed or was cancelled, in a ``finally``.
    """

    def __init__(self, config: RateLimit, loop: asyncio.AbstractEventLoop):
        self.config = config
        self._loop = loop
        self._calls = config.calls
        self._period = config.period
        self._interval = config.period / config.calls  # the bucket's pace
        self._slack = (config.effective_burst - 1) * self._interval  # the bucket's burst
        self._next = float("-inf")  # when the bucket's pace next allows a call
        self._open = 0  # calls admitted and not yet released
        self._ended: deque[float] = deque()  # when released calls ended, oldest first
        self._paused_until = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"SharedLimiter(calls={self._calls}, period={self._period})"

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause that a 429 started (0 when not paused)."""
        return max(0.0, self._paused_until - self._loop.time())

    def pause(self, seconds: float) -> None:
        """Hold every request of this token for ``seconds`` (extends, never shortens)."""
        self._paused_until = max(self._paused_until, self._loop.time() + max(0.0, seconds))

    def _ready_at(self, now: float) -> float | None:
        """When the next call may start (``<= now``: at once); ``None`` while every
        slot is held by a call still under way (its release decides)."""
        ended, period = self._ended, self._period
        while ended and ended[0] + period <= now:  # the same sum decides and wakes
            ended.popleft()
        at = self._next - self._slack
        if self._paused_until > at:
            at = self._paused_until
        if self._open + len(ended) >= self._calls:  # never more: a full limiter admits none
            if not ended:
                return None
            if ended[0] + period > at:
                at = ended[0] + period
        return at

    def _admit(self, now: float) -> None:
        self._open += 1
        self._next = (self._next if self._next > now else now) + self._interval

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody waits for one (no waiting)."""
        if self._waiters:
            return False
        now = self._loop.time()
        at = self._ready_at(now)
        if at is None or at > now:
            return False
        self._admit(now)
        return True

    async def acquire(self) -> None:
        """Wait (in turn) until a slot is free, and take it.

        Cancelled while waiting, it takes nothing; cancelled after its slot was
        granted but before it resumed, it gives the slot back.
        """
        if self.try_acquire():
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        self._wake()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted: nothing was sent
                self._open -= 1
                self._next -= self._interval
            self._wake()
            raise

    def release(self) -> None:
        """End a call that :meth:`acquire` admitted: its slot stays taken for one
        ``period`` from now."""
        self._open -= 1
        self._ended.append(self._loop.time())
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        """Admit waiters, first come first served, while slots are free; then set a
        timer for when the next one may go (none while only a release can free one)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters = self._waiters
        while waiters:
            if waiters[0].done():  # cancelled while waiting
                waiters.popleft()
                continue
            now = self._loop.time()
            at = self._ready_at(now)
            if at is None:
                return
            if at > now:
                self._timer = self._loop.call_at(at, self._wake)
                return
            self._admit(now)
            waiters.popleft().set_result(None)


async def timed_acquire(limiter: Limiter, report: Callable[[float], None]) -> None:
    """Take a slot of ``limiter`` as a request does, and ``report`` the seconds it
    waited (0 when one was free): what the client does while traced
    (docs/architecture.md#tracing), for any :class:`Limiter` (``RedisLimiter`` too)."""
    if limiter.try_acquire():
        report(0.0)
        return
    started = limiter._loop.time()
    await limiter.acquire()
    report(limiter._loop.time() - started)


_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedLimiter]] = (
    weakref.WeakKeyDictionary()
)


def limiter_for(access_token: str, config: RateLimit) -> SharedLimiter:
    """The running loop's limiter for ``access_token``, created on first use.

    The registry is keyed by a hash of the token, never the token itself. When a
    second client asks with different settings, the first settings stay in force (two
    limits for one token would double its rate) and a warning is logged.
    """
    loop = asyncio.get_running_loop()
    key = hashlib.sha256(access_token.encode()).hexdigest()
    per_loop = _registry.setdefault(loop, {})
    limiter = per_loop.get(key)
    if limiter is None:
        limiter = per_loop[key] = SharedLimiter(config, loop)
    elif limiter.config != config:
        logger.warning(
            "rate limit %r ignored: this access token already shares %r",
            config,
            limiter.config,
        )
    return limiter
