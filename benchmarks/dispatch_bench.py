"""Dispatch under sustained load: handler completions per second against the acks per
second of the same run (issue 10, row 1; target: a ratio of at least 0.95, so that
the backlog stays bounded).

A receiver (``SQLiteInbox`` with ``synchronous="FULL"``, the URL secret checked, one
trivial handler) takes a closed-loop load of ``--concurrency`` postbacks in flight
for ``--seconds``; the acks are counted by the load generator, the handler's calls
by the server, over the same window. Each repeat starts with nothing pending and is
followed by the time the backlog took to clear. Also shown: how the backlog grew
per second, and the time from each ack's timestamp to its handler's call (p50,
p99). The noise is the spread of the ack rate over the repeats.

Usage: ``python benchmarks/dispatch_bench.py [--seconds 10] [--repeats 3]
[--concurrency 96] [--inbox-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from _receiver_load import (
    Pool,
    Server,
    closed_loop,
    noise,
    percentile,
    postbacks,
    running,
    spread,
)

TARGET = 0.95
WARM_UP = 3000


async def measure(receiver: Server, args: argparse.Namespace) -> None:
    pool = Pool(receiver.port, receiver.path)
    await closed_loop(pool, postbacks("warm", WARM_UP), args.concurrency)
    await receiver.drained()
    acks: list[float] = []
    done: list[float] = []
    ratios: list[float] = []
    growth: list[float] = []
    lag50: list[float] = []
    lag99: list[float] = []
    clear: list[float] = []
    acknowledged = WARM_UP
    for repeat in range(args.repeats):
        bodies = postbacks(f"r{repeat:04x}", int(args.seconds * 20_000))
        await receiver.drained()
        before = await receiver.stats(reset=True)
        statuses, wall, _ = await closed_loop(pool, bodies, args.concurrency, args.seconds)
        after = await receiver.stats(reset=True)
        if set(statuses) != {200}:
            print(f"    answers {dict(statuses)}")
        acknowledged += statuses[200]
        handled = after["handled"] - before["handled"]
        acks.append(statuses[200] / wall)
        done.append(handled / wall)
        ratios.append(done[-1] / acks[-1])
        growth.append((after["counts"]["pending"] - before["counts"]["pending"]) / wall)
        lags = sorted(after["lags"])
        lag50.append(percentile(lags, 50) * 1e3)
        lag99.append(percentile(lags, 99) * 1e3)
        clear.append((await receiver.drained())[1])
        print(
            f"repeat {repeat + 1}: {acks[-1]:,.0f} acks/s, {done[-1]:,.0f} handled/s -> "
            f"x{ratios[-1]:.2f}; backlog {growth[-1]:+,.0f}/s; ack to handler p50 "
            f"{lag50[-1]:.1f} ms, p99 {lag99[-1]:.1f} ms; cleared {clear[-1]:.1f} s after",
            flush=True,
        )
    found = await receiver.stats()
    pool.close()
    counts = found["counts"]
    stored = sum(counts.values())
    print(
        f"closed loop, {args.concurrency} in flight, {args.repeats} repeats x "
        f"{args.seconds:g} s, one trivial handler:"
    )
    print(f"    acks per second          {spread(acks)}")
    print(f"    handler calls per second {spread(done)}")
    print(f"    backlog growth per second {spread(growth, '{:+,.0f}')}")
    print(
        f"    ack to handler: p50 {spread(lag50, '{:.1f}')} ms, p99 {spread(lag99, '{:.1f}')} ms"
    )
    print(
        f"    every ack stored and handled once: acknowledged {acknowledged}, inbox holds "
        f"{stored} (done {counts['done']}), handler calls {found['handled']} -> "
        f"{'OK' if stored == acknowledged == found['handled'] == counts['done'] else 'MISMATCH'}"
    )
    print(f"    noise: the ack rate's repeats spread {noise(acks):.0%} (max - min over median)")
    verdict = "MET" if statistics.median(ratios) >= TARGET else "MISSED"
    print(
        f"dispatch_bench: handler calls / acks per second x{spread(ratios, '{:.2f}')}, "
        f"target >= {TARGET}: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=96, help="requests in flight")
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: a temp dir)")
    args = parser.parse_args()
    with running(("receiver",), "dispatch", args.inbox_dir) as servers:
        asyncio.run(measure(servers["receiver"], args))


if __name__ == "__main__":
    main()
