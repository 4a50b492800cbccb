"""RedisRateLimit's lease renewals while Redis is away, on the virtual clock.

Redis's ``TIME`` cannot follow a virtual clock, so these tests hand the limiter a
scripted Redis (``Scripted``): each script answers at once, and the renewal fails
while an outage lasts. What is shown is the schedule of the renewals the limiter
sends, the mechanism behind "a slot lapses only when Redis stays away until its lease
ends" (docs/architecture.md#the-rate-limit-across-processes); the scripts themselves
run on real Redis in tests/test_ratelimit_redis.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any, cast

import pytest
import redis.asyncio
import redis.exceptions
from _clock import run_virtual

from dokobit_async import _ratelimit_lua as lua
from dokobit_async._ratelimit_redis import _LAST_BACKOFF
from dokobit_async.redis import RedisRateLimit

LEASE = 30.0  # seconds: renewals every 10


class Scripted:
    """A Redis whose scripts answer at once: ACQUIRE grants every slot asked for,
    RENEW fails (unreachable) while the virtual clock is within ``down``."""

    def __init__(self, down: tuple[float, float]):
        self.down = down
        self.renewals: list[tuple[float, bool]] = []  # (when, reached Redis)
        self.seq = 0

    def register_script(self, text: str) -> Any:
        async def script(keys: Sequence[str], args: Sequence[object]) -> Any:
            now = asyncio.get_running_loop().time()
            if text == lua.ACQUIRE:
                self.seq += 1  # args[5]: how many calls wait
                granted = range(int(str(args[5])))
                return [b"0", *(f"{self.seq}.{i}@{now:.0f}".encode() for i in granted)]
            if text == lua.RENEW:
                reached = not self.down[0] <= now < self.down[1]
                self.renewals.append((now, reached))
                if not reached:
                    raise redis.exceptions.ConnectionError("Redis is away")
            return 0

        return script


def hold_one_call(scripted: Scripted, until: float) -> None:
    """Run one call that holds its slot (granted at virtual time 0) until ``until``."""

    async def scenario() -> None:
        limit = RedisRateLimit(
            cast(redis.asyncio.Redis, scripted), calls=5, period=60.0, lease=LEASE
        )
        limiter = limit._limiter("token")
        await limiter.acquire()
        await asyncio.sleep(until)
        limiter.release()
        await limit.aclose()

    run_virtual(scenario())


def test_a_renewal_that_fails_is_tried_again_until_the_lease_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis away from the first renewal (a third of the lease in) for a little more
    than a third of the lease: the limiter keeps trying, with backoff, and renews the
    slot as soon as Redis is back, before the lease ends (not a third of a lease
    later, at its end, where any other process's acquire would count the slot as
    ended while its call still runs); nothing is logged."""
    scripted = Scripted(down=(LEASE / 3, LEASE / 3 + LEASE / 3 + 1))
    with caplog.at_level(logging.WARNING, logger="dokobit_async"):
        hold_one_call(scripted, until=2 * LEASE)
    renewed = [0.0] + [when for when, reached in scripted.renewals if reached]
    assert [when for when, reached in scripted.renewals if not reached]  # it was away
    assert all(later - earlier < LEASE for earlier, later in itertools.pairwise(renewed))
    assert renewed[-1] > LEASE  # the call outlived the first lease: renewed all along
    assert not caplog.records


def test_redis_away_until_the_lease_ends_is_logged_and_tried_again_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis away for longer than the lease: the limiter never stops trying (never
    more than the longest backoff between two tries), logs that the leases were not
    renewed, and renews the slot once Redis is back."""
    back = LEASE / 3 + LEASE + 5
    scripted = Scripted(down=(LEASE / 3, back))
    with caplog.at_level(logging.WARNING, logger="dokobit_async"):
        hold_one_call(scripted, until=back + LEASE)
    assert [r for r in caplog.records if "leases not renewed" in r.getMessage()]
    tries = [when for when, reached in scripted.renewals if when <= back]
    assert tries[0] == LEASE / 3  # from the outage's start
    assert tries[-1] == back  # to its end
    assert all(later - earlier <= _LAST_BACKOFF for earlier, later in itertools.pairwise(tries))
    assert scripted.renewals[len(tries) - 1][1]  # the try at ``back`` reached Redis
