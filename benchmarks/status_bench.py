"""The time of one ``client.external.status()`` call, against a bare aiohttp call.

The peer, in the same run and on the same kind of session: ``session.get(url,
params={"access_token": token})`` and ``await response.json()``, a bare GET plus JSON
decode of the same answer. The client runs with its rate limiter on (a limit far above
the load, so that it never waits: its bookkeeping is measured, not its waiting), and
without it for comparison. One call at a time; the server (``_pinned.py``) answers at
once, from its own process pinned to one CPU, the load runs on the other.

Rounds of ``--calls`` calls alternate between the kinds; each round of the client is
divided by the bare round next to it, and the ratios' median, min and max are printed
(goal: a median of at most 1.10, limiter included), with the per-call times and the
noise (the spread of the bare rounds). One summary line comes last.

Usage: ``python benchmarks/status_bench.py [--calls 2000] [--rounds 9] [--profile]``
(``--profile``: only loop over client calls for ``--seconds``, for py-spy).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
from _pinned import STATUS_PATH, PinnedServer, spread

from dokobit_async import DokobitClient, RateLimit

TOKEN = "status-bench-token"
GOAL = 1.10
UNLIMITED = RateLimit(calls=10**9, period=1.0)  # on, but never the reason to wait
KINDS = ("bare", "client", "client, no limiter")
BLOCK = 100  # calls of one kind in a row


async def measure(
    base: str, calls: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call of each kind, wall and this process's CPU, one per round."""
    url = base + STATUS_PATH.format(token="ABC")
    async with (
        aiohttp.ClientSession() as session,
        DokobitClient(TOKEN, base_url=base, session=session, rate_limit=UNLIMITED) as limited,
        DokobitClient(TOKEN + "-2", base_url=base, session=session, rate_limit=None) as free,
    ):

        async def bare() -> object:
            async with session.get(url, params={"access_token": TOKEN}) as response:
                return await response.json()

        kinds: dict[str, Callable[[], Awaitable[object]]] = {
            "bare": bare,
            "client": lambda: limited.external.status("ABC"),
            "client, no limiter": lambda: free.external.status("ABC"),
        }
        for call in kinds.values():  # warm up the connection and the code paths
            for _ in range(300):
                await call()
        wall: dict[str, list[float]] = {kind: [] for kind in KINDS}
        cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(rounds):
            spent = dict.fromkeys(KINDS, 0.0)
            used = dict.fromkeys(KINDS, 0.0)
            # short blocks of each kind in turn (the order rotating), so that a slow
            # spell of the shared machine falls on every kind alike
            for block in range(calls // BLOCK):
                order = KINDS[block % 3 :] + KINDS[: block % 3]
                for kind in order:
                    call = kinds[kind]
                    started, cpu_started = time.perf_counter(), time.process_time()
                    for _ in range(BLOCK):
                        await call()
                    spent[kind] += time.perf_counter() - started
                    used[kind] += time.process_time() - cpu_started
            for kind in KINDS:
                wall[kind].append(spent[kind] / calls)
                cpu[kind].append(used[kind] / calls)
    return wall, cpu


async def profile_loop(base: str, seconds: float) -> None:
    """Client calls only, for a profiler attached from outside."""
    async with DokobitClient(TOKEN, base_url=base, rate_limit=UNLIMITED) as client:
        deadline = time.perf_counter() + seconds
        count = 0
        while time.perf_counter() < deadline:
            await client.external.status("ABC")
            count += 1
    print(f"{count} calls in {seconds:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0, help="with --profile")
    args = parser.parse_args()
    with PinnedServer() as server:
        print(server.placement())
        if args.profile:
            asyncio.run(profile_loop(server.base, args.seconds))
            return
        wall, cpu = asyncio.run(measure(server.base, args.calls, args.rounds))
    print(f"{args.rounds} rounds x {args.calls} calls of each kind, one call at a time:")
    bare = wall["bare"]
    for kind in KINDS:
        print(
            f"    {kind:20s} per call {spread([t * 1e6 for t in wall[kind]], '{:.1f}')} us"
            f", client CPU {spread([t * 1e6 for t in cpu[kind]], '{:.1f}')} us"
        )
    noise = (max(bare) - min(bare)) / statistics.median(bare)
    print(f"    noise: the bare rounds spread over {noise * 100:.1f} % of their median")
    ratios: dict[str, list[float]] = {}
    for kind in KINDS[1:]:
        ratios[kind] = [t / b for t, b in zip(wall[kind], bare, strict=True)]
        cpu_ratios = [t / b for t, b in zip(cpu[kind], cpu["bare"], strict=True)]
        extra = statistics.median(wall[kind]) - statistics.median(bare)
        print(
            f"    {kind:20s} x{spread(ratios[kind])} of bare ({extra * 1e6:+.1f} us per "
            f"call); client CPU x{spread(cpu_ratios)}"
        )
    ratio = statistics.median(ratios["client"])
    print(
        f"SUMMARY status call: x{ratio:.3f} of a bare aiohttp GET + JSON decode (limiter "
        f"on; rounds {min(ratios['client']):.3f}-{max(ratios['client']):.3f}, noise "
        f"{noise * 100:.1f} %), goal <= x{GOAL:.2f} -> {'MET' if ratio <= GOAL else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
