"""Reconciliation's budget: the application's own calls while a reconciler polls 1,000
open signings, against the same application alone (issue 13, section 1).

One access token, one rate limit (``--calls`` a second). The application keeps
``--workers`` status calls in flight, as many as the limit lets through. In the peer
rounds it runs alone; in the measured rounds a :class:`~dokobit_async.Reconciler`
(``share`` 0.2) polls ``--signings`` tracked signings, all due, at the same time. The
server (a process of its own, pinned to one CPU; the load on the other) records when
each status call arrived and whose it was (the reconciler's signings have tokens of
their own), so the figures are counted where the API counts them:

* the application's calls per second with the reconciler, divided by the adjacent
  alone round's (median, min and max of the rounds; goal: at least ``1 - share``,
  less the noise);
* the reconciler's most calls in any one-second window, against ``share x calls``
  (goal: never above it);
* the noise: the spread of the alone rounds.

Then, on the emulator in this process, the recovery figures: signings whose postbacks
all went nowhere, the events the handlers saw, and the runs per event.

Usage: ``python benchmarks/reconcile_bench.py [--rounds 5] [--seconds 4] [--calls 50]
[--signings 1000]`` (defaults finish in about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections import Counter

import aiohttp
from _pinned import PinnedServer, spread
from aiohttp import web
from ratelimit_bench import max_in_window

from dokobit_async import (
    DokobitClient,
    Event,
    ExternalSigner,
    MemoryInbox,
    MemoryTracker,
    PostbackReceiver,
    RateLimit,
    Reconciler,
    Router,
    Schedule,
    SigningFile,
)
from dokobit_async.testing import Emulator, make_pdf

TOKEN = "reconcile-bench-token"
SHARE = 0.2
NOW = Schedule(first=0, longest=3600)  # due at once; then not again within a round


async def one_round(
    server: PinnedServer,
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    *,
    reconciling: bool,
) -> tuple[float, int]:
    """The application's calls per second, and the reconciler's most in a window."""
    limit = RateLimit(calls=args.calls, period=1.0)
    tracker = MemoryTracker(NOW)
    async with DokobitClient(TOKEN, base_url=server.base, rate_limit=limit) as client:
        if reconciling:
            now = time.time()
            for i in range(args.signings):
                await tracker.track(f"r{i:05d}", "external", now)
        reconciler = Reconciler(client, MemoryInbox(), tracker, share=SHARE, batch=args.signings)
        await server.arrivals(session)  # forget what came before
        start_ns = time.monotonic_ns()  # CLOCK_MONOTONIC: the server's clock too
        stop_ns = start_ns + int(args.seconds * 1e9)
        stop = stop_ns / 1e9

        async def app() -> None:
            while time.monotonic() < stop:
                await client.external.status("app")

        tasks = [asyncio.create_task(app()) for _ in range(args.workers)]
        polling = asyncio.create_task(reconciler.poll_due()) if reconciling else None
        await asyncio.gather(*tasks)
        if polling is not None:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        await reconciler.aclose()
        found = await server.arrivals_by_token(session)
    app_times = [t for t, token in found if token == "app" and t < stop_ns]  # (late: queued)
    ours = [t for t, token in found if token != "app"]
    return len(app_times) / args.seconds, max_in_window(ours, 1_000_000_000)  # (ours: sorted)


async def budget(
    server: PinnedServer, args: argparse.Namespace
) -> tuple[list[float], list[int], list[float]]:
    ratios: list[float] = []
    windows: list[int] = []
    alone_rates: list[float] = []
    async with aiohttp.ClientSession() as session:
        await one_round(
            server,
            argparse.Namespace(**{**vars(args), "seconds": 1.0}),
            session,
            reconciling=False,
        )  # warm-up
        for _ in range(args.rounds):
            alone, _ = await one_round(server, args, session, reconciling=False)
            shared, most = await one_round(server, args, session, reconciling=True)
            alone_rates.append(alone)
            ratios.append(shared / alone)
            windows.append(most)
    return ratios, windows, alone_rates


async def recovery(count: int) -> tuple[int, int, float]:
    """Signings completed with every postback lost: how many reached a handler as
    completed, how many events the handlers saw, the most runs of one event."""
    runs: Counter[tuple[str, str | None, str | None]] = Counter()
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        runs[(event.action, event.token, event.signer)] += 1

    tracker = MemoryTracker(NOW)
    receiver = PostbackReceiver(router, inbox=MemoryInbox(), secret=os.urandom(16))
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    try:
        async with (
            Emulator() as emu,
            DokobitClient(
                emu.access_token,
                base_url=emu.base_url,
                rate_limit=RateLimit(calls=10_000, period=1.0),
                tracker=tracker,
            ) as client,
        ):
            pdf = SigningFile.from_bytes(make_pdf(["bench"]), name="bench.pdf")
            for _ in range(count):
                created = await client.external.create(
                    name="bench",
                    type="pdf",
                    files=[pdf],
                    signers=[
                        ExternalSigner(
                            external_id="a", name="A", surname="B", email="a@example.com"
                        )
                    ],
                    postback_url="http://127.0.0.1:9/nobody",  # discard: nothing listens
                )
                await emu.sign(created.token, created.signers[0].token)
            reconciler = Reconciler(client, receiver, tracker, share=1.0, batch=count)
            await reconciler.poll_due()
            await receiver.wait_idle(60)
            await reconciler.aclose()
    finally:
        await runner.cleanup()
    completed = sum(1 for (action, _, _) in runs if action == "signing_completed")
    return completed, len(runs), max(runs.values(), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--calls", type=int, default=50, help="the token's calls a second")
    parser.add_argument("--workers", type=int, default=20, help="application calls in flight")
    parser.add_argument("--signings", type=int, default=1000, help="open signings tracked")
    parser.add_argument("--recovered", type=int, default=200, help="signings to recover")
    args = parser.parse_args()
    cap = max(1, int(args.calls * SHARE))
    with PinnedServer() as server:
        print(server.placement())
        ratios, windows, alone = asyncio.run(budget(server, args))
    print(f"application alone: {spread(alone, '{:.1f}')} calls/s (noise: the spread)")
    print(f"application with the reconciler / alone: {spread(ratios)} (goal >= {1 - SHARE:g})")
    print(
        f"reconciler's most calls in a 1 s window: {max(windows)} (limit {cap}: share {SHARE:g}"
        f" of {args.calls}/s; per round {windows})"
    )
    completed, events, most = asyncio.run(recovery(args.recovered))
    print(
        f"recovery: {completed} of {args.recovered} completed signings reached the handler "
        f"with every postback lost; {events} events, at most {most} run(s) per event"
    )
    noise = (max(alone) - min(alone)) / statistics.median(alone)
    kept = statistics.median(ratios)
    met = max(windows) <= cap and kept >= (1 - SHARE) - noise and completed == args.recovered
    print(
        f"reconcile_bench: app kept {kept:.2f} of its alone rate (noise {noise:.2f}), "
        f"reconciler at most {max(windows)}/{cap} per window, {completed}/{args.recovered} "
        f"recovered, {most} run(s) per event: {'MET' if met else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
