"""One token's rate limit shared by two processes through Redis, counted at the server.

Two load processes (both pinned to the load CPU) call ``client.external.status()``
with ``--workers`` tasks each for ``--periods`` periods: far more demand than the
limit. The API server (its own process, pinned to the other CPU, with the
``redis-server`` this script starts: no persistence, loopback) records when each
request reached it. Two limiters, in the same run, alternating which goes first:

* ``redis``: ``RedisRateLimit(calls, period)`` in each process (one limit in Redis);
* ``fixed``: the peer, a fixed-window counter in the same Redis (``INCR`` of the
  window's key, ``EXPIRE`` on its first call; a call over the limit sleeps until the
  next window), what most hand-made shared limits do.

For each it prints the most arrivals in any strict window ``[t, t + period)`` (exact,
integer nanoseconds) as a ratio to the limit (goal: never above 1.00), and the rate
used (the mean arrivals per window over the run, as a share of ``calls``; goal at
least 98%), each as median (min-max) over the repeats: the spread of the peer's
repeats is the machine's noise. One summary line comes last.

Usage: ``python benchmarks/ratelimit_redis_bench.py [--calls 20] [--period 1.0]
[--periods 4] [--repeats 3] [--workers 0]`` (workers 0: twice the limit per process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import aiohttp
import redis.asyncio
from _pinned import PinnedServer, spread
from ratelimit_bench import USED_GOAL, max_in_window, share_used

from dokobit_async import DokobitClient
from dokobit_async.redis import RedisRateLimit

TOKEN = "ratelimit-redis-bench-token"
KINDS = ("redis", "fixed")
PROCESSES = 2


@contextmanager
def redis_server(cpu: int | None) -> Iterator[str]:
    """A ``redis-server`` on a free loopback port, no persistence, on ``cpu``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH (Debian: apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def fixed_window(client: redis.asyncio.Redis, calls: int, period: float) -> None:
    """Wait for a place in a fixed window of the host's clock (the peer)."""
    while True:
        window = int(time.time() // period)
        key = f"bench:fixed:{TOKEN}:{window}"
        count = await client.incr(key)
        if count == 1:
            await client.expire(key, max(1, round(2 * period)))
        if count <= calls:
            return
        await asyncio.sleep((window + 1) * period - time.time())


async def load(settings: dict[str, Any]) -> None:
    """One load process: call until ``end`` (host time), through the ``kind`` limiter."""
    kind, calls, period = settings["kind"], settings["calls"], settings["period"]
    limit = RedisRateLimit(settings["redis"], calls=calls, period=period)
    peer = redis.asyncio.Redis.from_url(settings["redis"])
    async with DokobitClient(
        TOKEN, base_url=settings["base"], rate_limit=limit if kind == "redis" else None
    ) as client:

        async def worker() -> None:
            while True:
                if kind == "fixed":
                    await fixed_window(peer, calls, period)
                await client.external.status("ABC")

        await asyncio.sleep(settings["start"] - time.time())
        tasks = [asyncio.create_task(worker()) for _ in range(settings["workers"])]
        await asyncio.sleep(settings["end"] - time.time())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await limit.aclose()
    await peer.aclose()


async def run_case(
    server: PinnedServer, url: str, kind: str, args: argparse.Namespace
) -> tuple[int, float]:
    """One overload run: the most arrivals in a window, and the share of the rate used."""
    calls, period = args.calls, args.period
    start = time.time() + 1.5  # both processes are up by then
    end = start + args.periods * period
    settings = dict(
        kind=kind, redis=url, base=server.base, calls=calls, period=period,
        workers=args.workers or 2 * calls, start=start, end=end,
    )  # fmt: skip
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--load", json.dumps(settings)
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        if await asyncio.wait_for(proc.wait(), end - time.time() + 60) != 0:
            raise RuntimeError("a load process failed")
    async with aiohttp.ClientSession() as plain:
        arrivals = await server.arrivals(plain)
    end_ns = time.monotonic_ns() - round((time.time() - end) * 1e9)  # end, on the server's clock
    period_ns = round(period * 1e9)
    return max_in_window(arrivals, period_ns), share_used(arrivals, calls, period_ns, end_ns)


async def measure(args: argparse.Namespace) -> dict[str, list[tuple[int, float]]]:
    results: dict[str, list[tuple[int, float]]] = {kind: [] for kind in KINDS}
    with PinnedServer() as server, redis_server(server.server_cpu) as url:
        print(server.placement() + "; redis-server with the server")
        print(
            f"{PROCESSES} processes, one token, {args.calls} calls per {args.period:g} s, "
            f"{args.periods} periods per run, {args.repeats} repeats; windows [t, t + period) "
            "counted exactly at the server"
        )
        for repeat in range(args.repeats):
            for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
                results[kind].append(await run_case(server, url, kind, args))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--period", type=float, default=1.0, help="seconds")
    parser.add_argument("--periods", type=int, default=4, help="periods of load per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="tasks per process")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # a load process's settings
    args = parser.parse_args()
    if args.load:
        asyncio.run(load(json.loads(args.load)))
        return
    results = asyncio.run(measure(args))
    for kind in KINDS:
        most = [m for m, _ in results[kind]]
        shares = [u * 100 for _, u in results[kind]]
        print(
            f"    {kind:6s} most per window at the server {spread(most, '{:.0f}')} -> "
            f"x{max(most) / args.calls:.2f} of the limit at worst; rate used "
            f"{spread(shares, '{:.1f}')} %"
        )
    ours, peer = results["redis"], results["fixed"]
    over = max(m for m, _ in ours) / args.calls
    used = min(u for _, u in ours)
    verdict = "MET" if over <= 1 and used >= USED_GOAL else "MISSED"
    print(
        f"SUMMARY rate limit shared by {PROCESSES} processes through Redis: most per window "
        f"{max(m for m, _ in ours)}/{args.calls} (x{over:.2f}; goal <= x1.00), rate used >= "
        f"{used * 100:.1f} % (goal >= {USED_GOAL * 100:.0f} %) -> {verdict}; fixed-window "
        f"INCR+EXPIRE peer {max(m for m, _ in peer)}/{args.calls} "
        f"(x{max(m for m, _ in peer) / args.calls:.2f})"
    )


if __name__ == "__main__":
    main()
