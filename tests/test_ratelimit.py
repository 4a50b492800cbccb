"""The shared per-token rate limit, proved on a controlled (virtual) clock.

A call here is what the client makes of one request: ``acquire`` a slot, reach the
"server" some time later (the network, a handshake, the loop's scheduling), come back
later still, ``release`` the slot in a ``finally``. The window guarantee is counted
where the API counts it: at the arrivals.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random

import pytest
from _clock import run_virtual

from dokobit_async import DokobitClient, RateLimit
from dokobit_async.ratelimit import SharedLimiter, limiter_for


def max_in_any_window(times: list[float], period: float) -> int:
    """The most times in any half-open window ``[t, t + period)``."""
    ordered = sorted(times)
    return max(
        bisect.bisect_left(ordered, start + period) - index for index, start in enumerate(ordered)
    )


def least_in_a_full_window(times: list[float], period: float) -> int:
    """The fewest times in any window ``[t, t + period)`` that starts at one of them
    and ends before the last (the busy span's windows)."""
    ordered = sorted(times)
    return min(
        bisect.bisect_left(ordered, t + period) - bisect.bisect_left(ordered, t)
        for t in ordered
        if t + period <= ordered[-1]
    )


async def call(limiter: SharedLimiter, out: float = 0, back: float = 0) -> float:
    """One call through ``limiter``: it reaches the server ``out`` seconds after its
    admission and is answered ``back`` seconds later; returns its arrival time."""
    loop = asyncio.get_running_loop()
    await limiter.acquire()
    try:
        await asyncio.sleep(out)
        arrived = loop.time()
        await asyncio.sleep(back)
        return arrived
    finally:
        limiter.release()


async def _arrivals(
    config: RateLimit, total: int, tokens: list[str], delays: tuple[int, int] = (0, 0)
) -> list[float]:
    """``total`` calls by 20 concurrent workers, spread over ``tokens``' limiters,
    each taking a random whole number of seconds up to ``delays`` (out, back)."""
    queue = list(range(total))
    arrivals: list[float] = []
    draw = random.Random(7)

    async def worker(index: int) -> None:
        limiter = limiter_for(tokens[index % len(tokens)], config)
        while queue:
            queue.pop()
            out, back = (draw.randint(0, most) for most in delays)
            arrivals.append(await call(limiter, out, back))

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(20))), timeout=100_000)
    return arrivals


@pytest.mark.parametrize(
    "config",
    [
        RateLimit(),  # 100 per 60 s, burst 10
        RateLimit(calls=100, period=60, burst=100),
        RateLimit(calls=5, period=10),
        RateLimit(calls=1, period=5),
    ],
    ids=str,
)
def test_never_more_than_calls_in_any_window_and_at_least_98_percent_of_the_rate(
    config: RateLimit,
) -> None:
    """Under a steady overload of instant calls, no window of ``period`` seconds sees
    more than ``calls`` arrivals, and every full window in the busy span sees at least
    98% of ``calls`` (for ``calls`` >= 50; smaller limits lose at most one call a
    window)."""
    total = config.calls * 12
    times = run_virtual(_arrivals(config, total, ["token-a"]))
    assert len(times) == total
    assert max_in_any_window(times, config.period) <= config.calls
    floor = 0.98 * config.calls if config.calls >= 50 else config.calls - 1
    assert least_in_a_full_window(times, config.period) >= floor


@pytest.mark.parametrize(
    "config",
    [RateLimit(calls=10, period=20), RateLimit(calls=10, period=20, burst=10)],
    ids=str,
)
def test_calls_that_arrive_late_never_crowd_a_window_at_the_server(config: RateLimit) -> None:
    """A call admitted at the end of one window may reach the server in the next
    (here: up to 5 s after its admission, and answered up to 3 s after that). A slot
    is stamped when its call ends, not when it was admitted, so the server still never
    sees more than ``calls`` arrivals in any window, and most of the rate is used."""
    arrivals = run_virtual(_arrivals(config, 150, ["late-token"], delays=(5, 3)))
    assert len(arrivals) == 150
    assert max_in_any_window(arrivals, config.period) == config.calls
    # one round trip (at most 8 s here) per 20 s period is the price
    first, periods = min(arrivals), int((max(arrivals) - min(arrivals)) // config.period)
    inside = sum(1 for t in arrivals if t < first + periods * config.period)
    assert inside >= periods * config.calls * 20 / 28


def test_the_bucket_lets_a_burst_go_then_paces_calls() -> None:
    """After a quiet spell ``burst`` calls start at once, then one every
    ``period / calls`` seconds: the flow is shaped, not bunched at window edges."""

    async def scenario() -> list[float]:
        limiter = limiter_for("paced-token", RateLimit(calls=10, period=20, burst=3))
        return [await call(limiter) for _ in range(6)]

    assert run_virtual(scenario()) == [0, 0, 0, 2, 4, 6]


def test_waiting_calls_are_admitted_in_the_order_they_asked() -> None:
    """Calls queued for a slot get it first come, first served."""

    async def scenario() -> list[int]:
        limiter = limiter_for("fifo-token", RateLimit(calls=1, period=5))
        order: list[int] = []

        async def one(index: int) -> None:
            await limiter.acquire()
            order.append(index)
            await asyncio.sleep(1)
            limiter.release()

        tasks = []
        for index in range(6):
            tasks.append(asyncio.create_task(one(index)))
            await asyncio.sleep(0)  # each asks before the next one exists
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(scenario()) == [0, 1, 2, 3, 4, 5]


def test_a_call_cancelled_while_waiting_takes_no_slot() -> None:
    """A call cancelled in the queue leaves the limit as it was: the calls behind it
    get the slots, and ``calls`` of them still fit in a window."""

    async def scenario() -> tuple[list[float], bool]:
        loop = asyncio.get_running_loop()
        limiter = limiter_for("cancel-waiting", RateLimit(calls=2, period=10, burst=2))
        for _ in range(2):
            await limiter.acquire()
        doomed = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)  # it waits: both slots are held
        doomed.cancel()
        await asyncio.gather(doomed, return_exceptions=True)
        limiter.release()
        limiter.release()  # both end at t=0: their slots are free again at t=10
        starts = []
        for _ in range(2):
            await limiter.acquire()
            starts.append(loop.time())
        return starts, doomed.cancelled()

    starts, cancelled = run_virtual(scenario())
    assert cancelled
    assert starts == [10, 10]


def test_a_call_cancelled_after_its_slot_was_granted_gives_it_back() -> None:
    """A waiting call whose slot is granted, but which is cancelled before it runs
    on, never sends anything: the slot is free at once for the next call."""

    async def scenario() -> tuple[bool, bool, float]:
        loop = asyncio.get_running_loop()
        limiter = limiter_for("cancel-granted", RateLimit(calls=1, period=10))
        limiter.pause(5)
        granted = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)  # it waits for the pause; its wake-up is set for t=5
        # set after the limiter's wake-up for the same moment, so it runs after the
        # grant and before the task resumes
        loop.call_at(5, granted.cancel)
        await asyncio.gather(granted, return_exceptions=True)
        again = limiter.try_acquire()
        return granted.cancelled(), again, loop.time()

    cancelled, again, now = run_virtual(scenario())
    assert cancelled
    assert again, "the granted slot leaked"
    assert now == 5


def test_a_cancelled_call_under_way_is_stamped_when_it_ends() -> None:
    """A call cancelled after it was sent may have reached the server: its slot is
    stamped at the cancellation (in the ``finally``), so the next call starts one full
    period after it, never sooner and never later."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = limiter_for("cancel-sent", RateLimit(calls=1, period=10))
        sent = asyncio.create_task(call(limiter, out=1, back=1000))
        await asyncio.sleep(3)
        sent.cancel()
        await asyncio.gather(sent, return_exceptions=True)
        return [loop.time(), await call(limiter)]

    cancelled_at, next_arrival = run_virtual(scenario())
    assert (cancelled_at, next_arrival) == (3, 13)


def test_two_clients_with_one_token_share_one_budget() -> None:
    """A second client (or limiter lookup) for the same token must not double the
    rate; another token gets its own budget."""

    async def scenario() -> tuple[bool, bool, list[float]]:
        first = DokobitClient("shared-token", base_url="https://beta.dokobit.com")
        second = DokobitClient("shared-token", base_url="https://beta.dokobit.com")
        other = DokobitClient("other-token", base_url="https://beta.dokobit.com")
        same = first._get_limiter() is second._get_limiter()
        different = first._get_limiter() is not other._get_limiter()
        times = await _arrivals(RateLimit(), 600, ["shared-token", "shared-token"])
        return same, different, times

    same, different, times = run_virtual(scenario())
    assert same
    assert different
    assert max_in_any_window(times, 60) <= 100


def test_a_429_pause_holds_every_request_of_the_token() -> None:
    """``pause`` (what a 429 triggers) delays the next start of every client of the
    token by the pause, and a shorter later pause does not cut it short."""

    async def scenario() -> list[float]:
        limiter = limiter_for("paused-token", RateLimit())
        await call(limiter)
        limiter.pause(30)
        limiter.pause(5)
        assert limiter.paused_for == 30
        return [await call(limiter) for _ in range(3)]

    starts = run_virtual(scenario())
    assert starts[0] >= 30


def test_conflicting_settings_for_one_token_keep_the_first_and_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two limits for one token would double its rate, so the first one stays."""

    async def scenario() -> bool:
        first = limiter_for("conflict-token", RateLimit(calls=10, period=1))
        second = limiter_for("conflict-token", RateLimit(calls=50, period=1))
        return first is second and second.config == RateLimit(calls=10, period=1)

    with caplog.at_level(logging.WARNING, logger="dokobit_async"):
        assert run_virtual(scenario())
    assert "already shares" in caplog.text
    assert "conflict-token" not in caplog.text


@pytest.mark.parametrize(
    "kwargs", [{"calls": 0}, {"period": 0}, {"calls": 5, "burst": 6}, {"burst": 0}]
)
def test_invalid_rate_limits_are_refused(kwargs: dict[str, float]) -> None:
    """Nonsense settings fail at construction, not at the first request."""
    with pytest.raises(ValueError):  # noqa: PT011 - attrs validators raise plain ValueError
        RateLimit(**kwargs)  # type: ignore[arg-type]
