"""The rate limit counted where the API counts it: arrivals at a real loopback server.

Short periods, bounded counts. The server records the monotonic time at which each
request reached its handler, and every window ``[t, t + period)`` is counted exactly
(integer nanoseconds). Between the limiter's admission and the server, the tests add
what happens in production (a slow handshake, a failure, a cancellation); what they
check is the mechanism: the count per window and the order of events, never how long
anything took.
"""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import aiohttp
import pytest
from _loopback import loopback
from _ratelimit_server import counting_server, most_in_a_window, overload
from aiohttp import web

from dokobit_async import ConnectError, DokobitClient, RateLimit, RetryPolicy

TOKEN = "wire-rate-token"
BUDGET = 30.0  # seconds: a bound on each scenario, never reached when healthy


@pytest.mark.parametrize("burst", [None, 5])
async def test_two_clients_of_one_token_never_crowd_a_window_at_the_server(
    burst: int | None,
) -> None:
    """Two clients of one token, each with a new session (a cold connection pool)
    and slow starts on some requests, under overload: the server never sees more than
    ``calls`` requests in any window (how much of the limit is used is shown on a
    virtual clock, in test_ratelimit.py, and measured by benchmarks/ratelimit_bench.py)."""
    limit = RateLimit(calls=5, period=0.2, burst=burst)
    async with counting_server() as (host, arrivals):
        await asyncio.wait_for(overload(host.url, TOKEN, [limit, limit], 30), BUDGET)
    assert len(arrivals) == 30
    assert most_in_a_window(arrivals, limit.period) <= limit.calls


async def test_a_call_cancelled_under_way_frees_its_slot_one_period_after_it_ends() -> None:
    """A call cancelled while the server holds it keeps its slot until one period
    after the cancellation (it did reach the server), and then frees it: the next
    call of the token goes through, no sooner."""
    limit = RateLimit(calls=1, period=0.2)
    reached, hold = asyncio.Event(), asyncio.Event()
    arrivals: list[int] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic_ns())
        if len(arrivals) == 1:
            reached.set()
            await hold.wait()
        return web.json_response({"status": "pending"})

    async with (
        loopback(answer) as host,
        DokobitClient(TOKEN + "-cancel", base_url=host.url, rate_limit=limit) as client,
    ):
        first = asyncio.create_task(client.external.status("SIG"))
        await asyncio.wait_for(reached.wait(), BUDGET)
        cancelled_at = time.monotonic_ns()  # the slot is stamped after this
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        hold.set()
        await asyncio.wait_for(client.external.status("SIG"), BUDGET)
    assert first.cancelled()
    assert len(arrivals) == 2
    assert arrivals[1] - cancelled_at >= limit.period * 1e9


async def test_a_failed_call_frees_its_slot_one_period_after_it_failed() -> None:
    """A call that fails (nothing listens) is stamped when it failed: another client
    of the token gets the slot one period later, not never."""
    limit = RateLimit(calls=1, period=0.2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    failures: list[int] = []

    async def on_failure(_: object, __: SimpleNamespace, ___: object) -> None:
        failures.append(time.monotonic_ns())  # aiohttp reports it before the slot's stamp

    trace = aiohttp.TraceConfig()
    trace.on_request_exception.append(on_failure)
    policy = RetryPolicy(max_attempts=1)
    token = TOKEN + "-failed"
    async with (
        counting_server() as (host, arrivals),
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        DokobitClient(
            token, base_url=dead, session=session, rate_limit=limit, retry=policy
        ) as broken,
        DokobitClient(token, base_url=host.url, rate_limit=limit, retry=policy) as working,
    ):
        with pytest.raises(ConnectError):
            await asyncio.wait_for(broken.external.status("SIG"), BUDGET)
        await asyncio.wait_for(working.external.status("SIG"), BUDGET)
    assert len(failures) == len(arrivals) == 1
    assert arrivals[0] - failures[0] >= limit.period * 1e9
