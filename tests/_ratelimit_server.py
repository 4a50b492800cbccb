"""The rate limit counted where the API counts it: a loopback server that records
when each request reached it, and the count of any window ``[t, t + period)``.

Arrivals are ``time.monotonic_ns()`` integers, so windows are counted exactly; the
server may run in the test's process while the clients run in others (one clock per
host).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import SimpleNamespace

import aiohttp
import redis.asyncio
from _loopback import Host, loopback
from aiohttp import web

from dokobit_async import DokobitClient, RateLimit
from dokobit_async._ratelimit_redis import token_keys

STATUS = {"status": "pending", "signers": [], "files": []}
"""A status answer that the client deciphers."""


def most_in_a_window(times: list[int], period: float) -> int:
    """The most of ``times`` (ns) in any window ``[t, t + period)``."""
    ordered, span = sorted(times), round(period * 1e9)
    return max(bisect.bisect_left(ordered, t + span) - i for i, t in enumerate(ordered))


@asynccontextmanager
async def limited_once(retry_after: str) -> AsyncIterator[tuple[Host, list[int], list[int]]]:
    """A loopback API that answers its first call with a 429 and ``retry_after``, and
    every other at once; it records every arrival, and when the 429 went (ns)."""
    arrivals: list[int] = []
    limited_at: list[int] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic_ns())
        if not limited_at:
            limited_at.append(time.monotonic_ns())
            return web.json_response({}, status=429, headers={"Retry-After": retry_after})
        return web.json_response(STATUS)

    async with loopback(answer) as host:
        yield host, arrivals, limited_at


@asynccontextmanager
async def counting_server() -> AsyncIterator[tuple[Host, list[int]]]:
    """A loopback API that answers every call at once and records its arrival (ns)."""
    arrivals: list[int] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic_ns())
        return web.json_response(STATUS)

    async with loopback(answer) as host:
        yield host, arrivals


def slow_handshakes() -> aiohttp.TraceConfig:
    """A trace that holds every third request for 60 ms after the limiter let it go
    (as a cold connection's handshake or a busy loop would), the rest not at all."""
    trace = aiohttp.TraceConfig()
    count = 0

    async def on_start(_: object, __: SimpleNamespace, ___: object) -> None:
        nonlocal count
        count += 1
        if count % 3 == 0:
            await asyncio.sleep(0.06)

    trace.on_request_start.append(on_start)
    return trace


async def paused(client: redis.asyncio.Redis, token: str) -> None:
    """Return once a 429's pause of ``token`` is in Redis (bound it: ``wait_for``)."""
    while not await client.hexists(token_keys(token)[2], "paused"):
        await asyncio.sleep(0.005)


async def overload(url: str, token: str, limits: Sequence[RateLimit], count: int) -> None:
    """``count`` status calls at once from one client per limit, each with a new
    session (a cold connection pool) whose every third request starts slowly, eight
    tasks per client."""
    sessions = [aiohttp.ClientSession(trace_configs=[slow_handshakes()]) for _ in limits]
    try:
        clients = [
            DokobitClient(token, base_url=url, session=session, rate_limit=limit)
            for session, limit in zip(sessions, limits, strict=True)
        ]
        pending = list(range(count))

        async def worker(client: DokobitClient) -> None:
            while pending:
                pending.pop()
                await client.external.status("SIG")

        await asyncio.gather(*(worker(client) for client in clients for _ in range(8)))
    finally:
        for session in sessions:
            await session.close()
