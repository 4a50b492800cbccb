"""The token's rate limit under sustained overload, counted at the server.

Two ``DokobitClient`` share one access token (so one ``RateLimit``), each with its own
new ``aiohttp`` session (a cold connection pool: connections open as calls need
them), and ``--workers`` tasks per client call ``client.external.status()`` in a loop
for ``--periods`` periods: far more demand than the limit. The server (its own
process, pinned to one CPU; the load on the other) records when each request reached
it. The peer, in the same run: one ``aiolimiter.AsyncLimiter(calls, period)`` shared
by two bare aiohttp sessions, the same load.

For each limit and each repeat it prints:

* the most arrivals at the server in any strict window ``[t, t + period)`` (exact,
  integer nanoseconds), as a ratio to the limit: the goal is never above 1.00;
* the most request starts in any such window at the client (aiohttp's own
  ``on_request_start``), which the limiter's admissions bound;
* the rate used: the mean number of arrivals in a window, over every window of the
  run, as a share of ``calls``: the goal is at least 98%;
* the noise: round trips (request start to answer, at the client) median and p99.

One summary line comes last. Usage: ``python benchmarks/ratelimit_bench.py [--limits
20 100] [--period 1.0] [--periods 4] [--repeats 3] [--workers 0]`` (workers 0: twice
the limit per client).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import aiohttp
import attrs
from _pinned import STATUS_PATH, PinnedServer, spread
from aiolimiter import AsyncLimiter

from dokobit_async import DokobitClient, RateLimit

TOKEN = "ratelimit-bench-token"
PATH = STATUS_PATH.format(token="ABC")
USED_GOAL = 0.98
KINDS = ("dokobit", "aiolimiter")


@attrs.frozen
class Case:
    """What one run of one limiter under one limit measured."""

    kind: str
    calls: int
    server_max: int
    client_max: int
    used: float
    round_trips: list[float]


def max_in_window(times: list[int], period_ns: int) -> int:
    """The most of the sorted ``times`` in any strict window ``[t, t + period)``."""
    return max(
        (bisect.bisect_left(times, t + period_ns) - i for i, t in enumerate(times)), default=0
    )


def share_used(times: list[int], calls: int, period_ns: int, end_ns: int) -> float:
    """The mean number of arrivals in a window ``[t, t + period)``, over every ``t``
    from the first arrival to one period before the load stopped (``end_ns``), as a
    share of ``calls``: exact, not rounded to whole calls."""
    first, last = times[0], end_ns - period_ns
    # an arrival at a is in the windows that start in [a - period, a]
    covered = sum(max(0, min(a, last) - max(a - period_ns, first)) for a in times)
    return covered / (last - first) / calls


async def run_case(
    server: PinnedServer, kind: str, calls: int, period: float, periods: int, workers: int
) -> Case:
    """One overload run of ``kind`` at ``calls`` per ``period``."""
    starts: list[int] = []
    round_trips: list[float] = []

    async def on_start(_: object, context: SimpleNamespace, __: object) -> None:
        context.started = time.monotonic_ns()
        starts.append(context.started)

    async def on_end(_: object, context: SimpleNamespace, __: object) -> None:
        round_trips.append((time.monotonic_ns() - context.started) / 1e6)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    sessions = [aiohttp.ClientSession(trace_configs=[trace]) for _ in range(2)]
    calls_of: list[Callable[[], Awaitable[object]]] = []
    if kind == "dokobit":
        limit = RateLimit(calls=calls, period=period)
        for session in sessions:
            client = DokobitClient(TOKEN, base_url=server.base, session=session, rate_limit=limit)
            calls_of.append(functools.partial(client.external.status, "ABC"))
    else:
        limiter = AsyncLimiter(calls, period)
        for session in sessions:

            async def bare(session: aiohttp.ClientSession = session) -> object:
                async with (
                    limiter,
                    session.get(server.base + PATH, params={"access_token": TOKEN}) as response,
                ):
                    return await response.read()

            calls_of.append(bare)
    loop = asyncio.get_running_loop()
    end = loop.time() + periods * period

    async def worker(call: Callable[[], Awaitable[object]]) -> None:
        while True:
            await call()

    tasks = [asyncio.create_task(worker(c)) for c in calls_of for _ in range(workers)]
    try:
        # the load stops at the deadline: calls still waiting or under way are cancelled
        await asyncio.sleep(end - loop.time())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        end_ns = int(end * 1e9)
        async with aiohttp.ClientSession() as plain:
            arrivals = await server.arrivals(plain)
    finally:
        for session in sessions:
            await session.close()
    period_ns = round(period * 1e9)
    return Case(
        kind=kind,
        calls=calls,
        server_max=max_in_window(arrivals, period_ns),
        client_max=max_in_window(sorted(starts), period_ns),
        used=share_used(arrivals, calls, period_ns, end_ns),
        round_trips=round_trips,
    )


def report(cases: list[Case], calls: int) -> None:
    print(f"limit {calls} per period:")
    for kind in KINDS:
        mine = [c for c in cases if c.kind == kind and c.calls == calls]
        rtts = sorted(t for c in mine for t in c.round_trips)
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        print(
            f"    {kind:10s} at the server, most per window: "
            f"{spread([c.server_max for c in mine], '{:.0f}')} "
            f"-> x{max(c.server_max for c in mine) / calls:.2f} of the limit at worst; "
            f"at the client {spread([c.client_max for c in mine], '{:.0f}')}; "
            f"rate used {spread([c.used * 100 for c in mine], '{:.1f}')} %; "
            f"round trip p50 {statistics.median(rtts):.2f} ms, p99 {p99:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--period", type=float, default=1.0, help="seconds")
    parser.add_argument("--periods", type=int, default=4, help="periods of load per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="tasks per client")
    args = parser.parse_args()
    cases: list[Case] = []
    with PinnedServer() as server:
        print(server.placement())
        print(
            f"two clients, one token, {args.periods} periods of {args.period:g} s per run, "
            f"{args.repeats} repeats; windows [t, t + period) counted exactly"
        )
        for repeat in range(args.repeats):
            for calls in args.limits:
                workers = args.workers or 2 * calls
                # alternate which limiter goes first, so that neither always runs warmer
                order = KINDS if repeat % 2 == 0 else KINDS[::-1]
                for kind in order:
                    cases.append(
                        asyncio.run(
                            run_case(server, kind, calls, args.period, args.periods, workers)
                        )
                    )
    for calls in args.limits:
        report(cases, calls)
    ours = [c for c in cases if c.kind == "dokobit"]
    peer = [c for c in cases if c.kind == "aiolimiter"]
    over = max(c.server_max / c.calls for c in ours)
    used = min(c.used for c in ours)
    worst = ", ".join(
        f"{max(c.server_max for c in ours if c.calls == n)}/{n}" for n in args.limits
    )
    peer_worst = ", ".join(
        f"{max(c.server_max for c in peer if c.calls == n)}/{n}" for n in args.limits
    )
    verdict = "MET" if over <= 1 and used >= USED_GOAL else "MISSED"
    print(
        f"SUMMARY rate limit at the server: most per window {worst} (x{over:.2f} of the "
        f"limit; goal <= x1.00), rate used >= {used * 100:.1f} % (goal >= "
        f"{USED_GOAL * 100:.0f} %) -> {verdict}; aiolimiter alone {peer_worst}"
    )


if __name__ == "__main__":
    main()
