"""The shared per-token rate limit, proved on a controlled (virtual) clock."""

from __future__ import annotations

import asyncio
import bisect
import logging

import pytest
from _clock import run_virtual

from dokobit_async import DokobitClient, RateLimit
from dokobit_async.ratelimit import limiter_for


def max_in_any_window(times: list[float], period: float) -> int:
    """The most start times in any half-open window ``[t, t + period)``."""
    ordered = sorted(times)
    return max(
        bisect.bisect_left(ordered, start + period) - index for index, start in enumerate(ordered)
    )


async def _grant_times(config: RateLimit, total: int, tokens: list[str]) -> list[float]:
    """``total`` acquisitions by 20 concurrent workers, spread over ``tokens``'
    limiters; returns the virtual time of each grant."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    queue = list(range(total))

    async def worker(index: int) -> None:
        limiter = limiter_for(tokens[index % len(tokens)], config)
        while queue:
            queue.pop()
            await limiter.acquire()
            times.append(loop.time())

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(20))), timeout=10_000)
    return times


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
    """Under a steady overload, no window of ``period`` seconds sees more than
    ``calls`` starts, and every full window in the busy span sees at least 98% of
    ``calls`` (for ``calls`` >= 50; smaller limits lose at most one call a window)."""
    total = config.calls * 12
    times = run_virtual(_grant_times(config, total, ["token-a"]))
    assert len(times) == total
    assert max_in_any_window(times, config.period) <= config.calls
    ordered = sorted(times)
    full_windows = [t for t in ordered if t + config.period <= ordered[-1]]
    least = min(
        bisect.bisect_left(ordered, t + config.period) - bisect.bisect_left(ordered, t)
        for t in full_windows
    )
    floor = 0.98 * config.calls if config.calls >= 50 else config.calls - 1
    assert least >= floor


def test_a_plain_leaky_bucket_would_let_about_twice_the_limit_through() -> None:
    """Why the wrapper exists: aiolimiter's ``AsyncLimiter(100, 60)`` alone admits
    about 200 requests in one 60 s window; ours never more than 100."""
    from aiolimiter import AsyncLimiter

    async def plain() -> list[float]:
        loop = asyncio.get_running_loop()
        bucket = AsyncLimiter(100, 60)
        times = []
        for _ in range(400):
            await bucket.acquire()
            times.append(loop.time())
        return times

    assert max_in_any_window(run_virtual(plain()), 60) >= 190
    ours = run_virtual(_grant_times(RateLimit(calls=100, period=60, burst=100), 400, ["t"]))
    assert max_in_any_window(ours, 60) <= 100


def test_two_clients_with_one_token_share_one_budget() -> None:
    """A second client (or limiter lookup) for the same token must not double the
    rate; another token gets its own budget."""

    async def scenario() -> tuple[bool, bool, list[float]]:
        first = DokobitClient("shared-token", base_url="https://beta.dokobit.com")
        second = DokobitClient("shared-token", base_url="https://beta.dokobit.com")
        other = DokobitClient("other-token", base_url="https://beta.dokobit.com")
        same = first._get_limiter() is second._get_limiter()
        different = first._get_limiter() is not other._get_limiter()
        times = await _grant_times(RateLimit(), 600, ["shared-token", "shared-token"])
        return same, different, times

    same, different, times = run_virtual(scenario())
    assert same
    assert different
    assert max_in_any_window(times, 60) <= 100


def test_a_429_pause_holds_every_request_of_the_token() -> None:
    """``pause`` (what a 429 triggers) delays the next start of every client of the
    token by the pause, and a shorter later pause does not cut it short."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = limiter_for("paused-token", RateLimit())
        await limiter.acquire()
        limiter.pause(30)
        limiter.pause(5)
        assert limiter.paused_for == 30
        starts = []
        for _ in range(3):
            await limiter.acquire()
            starts.append(loop.time())
        return starts

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
