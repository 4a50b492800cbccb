"""One rate limit per access token, shared by every client that uses the token.

The guarantee: never more than ``calls`` requests start in any window of ``period``
seconds (any half-open interval ``[t, t + period)``), while a steady load gets the full
rate. Two parts make it:

* an aiolimiter leaky bucket shapes the flow (a burst of ``burst`` requests, then
  ``calls / period`` per second). A leaky bucket alone is not enough: its burst comes
  on top of its rate, so ``AsyncLimiter(100, 60)`` lets about 200 requests through in
  one 60 s window;
* a sliding log of the last ``calls`` start times enforces the window exactly.

A 429 from the API pauses the whole bucket (every client of the token) for the
``Retry-After`` time, or for the retry policy's backoff when the API gave none.

Limiters belong to one event loop, so the registry is kept per loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import deque

import attrs
from aiolimiter import AsyncLimiter

__all__ = ["RateLimit"]  # SharedLimiter and limiter_for are internal (the client uses them)

logger = logging.getLogger("dokobit_async")


@attrs.frozen(kw_only=True)
class RateLimit:
    """At most ``calls`` requests per ``period`` seconds for one access token.

    Attributes:
        calls: How many requests may start in any window of ``period`` seconds.
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


class _Bucket(AsyncLimiter):
    """aiolimiter's bucket with its level rounded to 1e-9 after each leak.

    Without it, float residue (``10 - 6 * (10 / 6)`` is ``2e-15``, not 0) leaves the
    level a hair above the threshold; aiolimiter then schedules its wake-up at "now"
    and spins until the clock ticks, forever under a virtual clock.
    """

    def _leak(self) -> None:
        super()._leak()
        self._level = round(self._level, 9)


class SharedLimiter:
    """The limiter of one access token within one event loop."""

    def __init__(self, config: RateLimit, loop: asyncio.AbstractEventLoop):
        self.config = config
        self._loop = loop
        burst = config.effective_burst
        self._bucket = _Bucket(burst, config.period * burst / config.calls)
        self._starts: deque[float] = deque()
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"SharedLimiter(calls={self.config.calls}, period={self.config.period})"

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause that a 429 started (0 when not paused)."""
        return max(0.0, self._paused_until - self._loop.time())

    def pause(self, seconds: float) -> None:
        """Hold every request of this token for ``seconds`` (extends, never shortens)."""
        self._paused_until = max(self._paused_until, self._loop.time() + max(0.0, seconds))

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it."""
        # sit out a 429 pause *before* taking bucket capacity: requests that queued in
        # the bucket during the pause would otherwise all start the moment it ends
        while (wait := self._paused_until - self._loop.time()) > 0:  # noqa: ASYNC110 - a moving deadline
            await asyncio.sleep(wait)
        await self._bucket.acquire()
        window, limit = self.config.period, self.config.calls
        while True:
            now = self._loop.time()
            starts = self._starts
            while starts and starts[0] + window <= now:
                starts.popleft()
            wait = self._paused_until - now
            if len(starts) >= limit:
                wait = max(wait, starts[0] + window - now)
            if wait <= 0:
                starts.append(now)
                return
            await asyncio.sleep(wait)


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
