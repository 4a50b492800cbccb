"""Restart drain: how fast a receiver works off a backlog it finds in its inbox at start,
as a ratio to its live dispatch rate measured in the same run.

(live)    A receiver runs on an empty ``SQLiteInbox``; ``--count`` events are stored and
          handed to its dispatcher in memory, as the receiver does after each 200; the
          rate is events handled and recorded ``done`` per second (the storing, which
          shares the inbox's commits with dispatch as in production, is included).
(restart) The same number of events is stored first, with no receiver running (a
          receiver that was down, or killed with a backlog); then a receiver starts
          on that file, and the rate is again events done per second.

Each handler is trivial (one await), so the figures are the dispatcher's own cost. A
dispatcher that read the inbox one page per second would drain near 1,000 events/s
whatever its live rate; the target is a ratio of about 1 (at least 0.9). Rounds
alternate between the two cases; the medians and spreads are printed.

Usage: ``python benchmarks/drain_bench.py [--count 100000] [--rounds 3]
[--inbox-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from dokobit_async import PostbackReceiver, Router, SQLiteInbox
from dokobit_async._dispatcher import Dispatcher
from dokobit_async.events import Event, event_key, parse_postback
from dokobit_async.inbox import Inbox, StoredEvent

SECRET = "drain-benchmark-secret-0123456789"
BATCH = 2_000  # events stored per gather (they share group commits)
TARGET_RATIO = 0.9


def body(run: str, i: int) -> bytes:
    return json.dumps(
        {"action": "signer_signed", "token": f"{run}-{i % 5000:05d}", "signer": f"s{i}"}
    ).encode()


async def store(inbox: Inbox, run: str, count: int) -> list[StoredEvent]:
    """Store ``count`` distinct pending events; each as the inbox stored it."""
    events: list[StoredEvent] = []
    for start in range(0, count, BATCH):
        adds = []
        for i in range(start, min(count, start + BATCH)):
            raw = body(run, i)
            event = parse_postback(raw, "application/json")
            adds.append(
                inbox.add(
                    id=event_key(event),
                    signing_token=event.token or "",
                    action=event.action,
                    body=raw,
                    content_type="application/json",
                    received_at=time.time(),
                )
            )
        events.extend(e for e in await asyncio.gather(*adds) if e is not None)
    return events


@contextlib.asynccontextmanager
async def serving(db: Path, count: int, timeout: float) -> AsyncIterator[Dispatcher]:
    """A receiver with one trivial handler on ``db``, started on entry; on exit, once
    ``count`` events are done, it stops and checks that each was handled once."""
    handled = [0]
    router = Router()

    @router.on_any
    async def trivial(event: Event) -> None:
        handled[0] += 1
        await asyncio.sleep(0)

    inbox = SQLiteInbox(db)
    receiver = PostbackReceiver(router, inbox=inbox, secret=SECRET)
    runner = web.AppRunner(receiver.app())
    await runner.setup()  # opens the inbox, starts the dispatcher on what is pending
    try:
        assert receiver._dispatcher is not None
        yield receiver._dispatcher
        deadline = time.monotonic() + timeout
        while (await inbox.counts())["done"] < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"not drained within {timeout} s: {await inbox.counts()}")
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert handled[0] == count, handled


async def live(db: Path, count: int, timeout: float) -> float:
    async with serving(db, count, timeout) as dispatcher:
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            for stored in await store(dispatcher.inbox, f"live{start}", size):
                dispatcher.submit(stored)  # what the receiver does after each 200
    return count / (time.perf_counter() - started)


async def restart(db: Path, count: int, timeout: float) -> float:
    async with SQLiteInbox(db) as inbox:
        await store(inbox, "backlog", count)  # the receiver was down meanwhile
    started = time.perf_counter()
    async with serving(db, count, timeout):
        pass
    return count / (time.perf_counter() - started)


def spread(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"median {statistics.median(values):,.0f}/s (min {low:,.0f}, max {high:,.0f})"


async def main_async(args: argparse.Namespace) -> None:
    base = Path(args.inbox_dir or tempfile.mkdtemp(prefix="drain-bench-"))
    live_rates: list[float] = []
    drain_rates: list[float] = []
    for round_no in range(args.rounds):
        live_rates.append(await live(base / f"live-{round_no}.db", args.count, args.timeout))
        drain_rates.append(
            await restart(base / f"restart-{round_no}.db", args.count, args.timeout)
        )
        print(
            f"round {round_no + 1}: live {live_rates[-1]:,.0f}/s, "
            f"restart drain {drain_rates[-1]:,.0f}/s",
            flush=True,
        )
    ratio = [d / v for d, v in zip(drain_rates, live_rates, strict=True)]
    print(f"live dispatch:  {spread(live_rates)}")
    print(f"restart drain:  {spread(drain_rates)} of a {args.count:,}-event backlog")
    print(
        f"ratio drain/live: median {statistics.median(ratio):.2f} "
        f"(min {min(ratio):.2f}, max {max(ratio):.2f}; target >= {TARGET_RATIO})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="events per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: a temp dir)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
