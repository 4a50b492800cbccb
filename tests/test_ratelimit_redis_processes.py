"""RedisRateLimit across real processes on a real ``redis-server``: the API server
(this process, loopback) counts what arrives from client processes
(tests/_ratelimit_child.py). Small periods, bounded counts; lower bounds on when a
call arrived are the rule itself, never a speed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _loopback import loopback
from _processes import kill_and_reap
from _ratelimit_server import STATUS, counting_server, limited_once, most_in_a_window, paused
from aiohttp import web

from dokobit_async import DokobitClient
from dokobit_async.redis import RedisRateLimit

CHILD = Path(__file__).with_name("_ratelimit_child.py")
TOKEN = "processes-rate-token"
BUDGET = 60.0  # seconds: a bound on each scenario, never reached when healthy


async def child(**settings: Any) -> asyncio.subprocess.Process:
    """A client process that makes its calls (see tests/_ratelimit_child.py)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), json.dumps(settings), stdout=asyncio.subprocess.PIPE
    )


async def finished(proc: asyncio.subprocess.Process) -> None:
    """Wait (bounded) for ``proc`` to print ``done`` and exit 0."""
    try:
        assert proc.stdout is not None
        out = await asyncio.wait_for(proc.stdout.read(), BUDGET)
        assert await asyncio.wait_for(proc.wait(), BUDGET) == 0
        assert out.strip() == b"done"
    finally:
        await kill_and_reap(proc)


@pytest.mark.parametrize("burst", [None, 10])
async def test_two_client_processes_sharing_one_limit_never_crowd_a_window(
    redis_url: str, burst: int | None
) -> None:
    """Two processes, eight tasks each, 30 calls each, one token, 10 calls per 0.5 s
    shared through Redis: the server never sees more than 10 in any window."""
    async with counting_server() as (host, arrivals):
        settings = dict(
            redis=redis_url, base=host.url, token=TOKEN, calls=10, period=0.5,
            burst=burst, lease=5.0, n=30, workers=8,
        )  # fmt: skip
        procs = [await child(**settings) for _ in range(2)]
        await asyncio.gather(*(finished(p) for p in procs))
    assert len(arrivals) == 60
    assert most_in_a_window(arrivals, 0.5) <= 10


async def test_a_429_in_one_process_pauses_the_other(redis_url: str) -> None:
    """The API answers one process's call with 429 and ``Retry-After: 1``: once that
    pause is in Redis, a call from another process does not arrive before it ends."""
    watcher = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with limited_once("1") as (host, arrivals, limited_at):
            settings = dict(
                redis=redis_url, base=host.url, token=TOKEN, calls=50, period=1.0,
                burst=50, lease=5.0, n=1, workers=1,
            )  # fmt: skip
            first = await child(**settings)
            await asyncio.wait_for(paused(watcher, TOKEN), BUDGET)
            other = await child(**settings)
            await asyncio.gather(finished(first), finished(other))
    finally:
        await watcher.aclose()
    assert len(arrivals) == 3  # the 429, its retry, the other process's call
    assert min(arrivals[1:]) - limited_at[0] >= 1e9


async def test_a_process_killed_holding_slots_blocks_the_token_only_until_its_lease_ends(
    redis_url: str,
) -> None:
    """A process holds two of the token's three slots (the server has not answered)
    and is killed with SIGKILL; another process holds the third with a call under way
    (its renewals keep the token's keys from expiring): that process's next call goes
    through once the dead slots' lease has run out and one period more, not never."""
    period, lease = 0.3, 0.6
    held, third, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()
    arrivals: list[int] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic_ns())
        if len(arrivals) <= 3:  # the dead process's two, then this process's first
            if len(arrivals) >= 2:
                (held if len(arrivals) == 2 else third).set()
            await finish.wait()
        return web.json_response(STATUS)

    async with loopback(answer) as host:
        holder = await child(
            redis=redis_url, base=host.url, token=TOKEN, calls=3, period=period,
            burst=3, lease=lease, n=2, workers=2,
        )  # fmt: skip
        try:
            await asyncio.wait_for(held.wait(), BUDGET)
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            killed_at = time.monotonic_ns()
            assert await kill_and_reap(holder) == -signal.SIGKILL
        async with (
            RedisRateLimit(redis_url, calls=3, period=period, burst=3, lease=lease) as limit,
            DokobitClient(TOKEN, base_url=host.url, rate_limit=limit) as client,
        ):
            under_way = asyncio.create_task(client.external.status("SIG"))
            await asyncio.wait_for(third.wait(), BUDGET)
            await asyncio.wait_for(client.external.status("SIG"), BUDGET)
            finish.set()
            await asyncio.wait_for(under_way, BUDGET)
    assert len(arrivals) == 4
    assert arrivals[3] - killed_at >= period * 1e9
