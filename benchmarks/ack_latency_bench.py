"""Acknowledgement latency at a steady rate: the receiver's p99 against a bare handler
that does one fsynced SQLite insert per request, measured in the same run (issue 10,
row 3; target: a ratio of at most 1.0, group commit beating one fsync per request at
the tail too).

Open loop: request i starts at ``t0 + i / --rate`` whatever the earlier ones are
doing, and its latency runs from that scheduled start to the answer, so a slow
answer cannot hide the ones queued behind it. The receiver runs with an
``SQLiteInbox`` (``synchronous="FULL"``), the URL secret checked and one trivial
handler; its peer reads the body, decodes its JSON, inserts it and commits
(``synchronous=FULL`` in WAL mode: one fsync per request) on its event loop. The first
second of each run is not measured. Rounds alternate between the two, and the ratio of
the p99s is taken round by round (median, min and max); the noise is the spread of
the peer's own p99 over the rounds.

Usage: ``python benchmarks/ack_latency_bench.py [--rate 500] [--seconds 8]
[--rounds 3] [--inbox-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from _receiver_load import (
    Pool,
    Server,
    noise,
    open_loop,
    percentile,
    postbacks,
    running,
    spread,
)

TARGET = 1.0
KINDS = ("receiver", "bare-sqlite")
LABELS = {"receiver": "receiver, SQLite FULL", "bare-sqlite": "1 fsynced insert per request"}


async def measure(servers: dict[str, Server], args: argparse.Namespace) -> None:
    p50: dict[str, list[float]] = {kind: [] for kind in KINDS}
    p99: dict[str, list[float]] = {kind: [] for kind in KINDS}
    worst: dict[str, list[float]] = {kind: [] for kind in KINDS}
    late: list[float] = []
    acknowledged = 0
    warm = int(args.rate)
    runs = iter(f"{n:06x}" for n in range(1, 2**24))
    for round_no in range(args.rounds):
        for kind in KINDS:
            server = servers[kind]
            pool = Pool(server.port, server.path)
            bodies = postbacks(next(runs), warm + int(args.rate * args.seconds))
            latencies, statuses, behind = await open_loop(pool, bodies, args.rate, warm)
            pool.close()
            if set(statuses) != {200}:
                print(f"    {kind}: answers {dict(statuses)}")
            if kind == "receiver":
                acknowledged += statuses[200]
            values = sorted(latencies)
            p50[kind].append(percentile(values, 50) * 1e3)
            p99[kind].append(percentile(values, 99) * 1e3)
            worst[kind].append(values[-1] * 1e3)
            late.append(behind * 1e3)
        ratio = p99["receiver"][-1] / p99["bare-sqlite"][-1]
        shown = ", ".join(
            f"{kind} p50 {p50[kind][-1]:.2f} ms p99 {p99[kind][-1]:.2f} ms" for kind in KINDS
        )
        print(f"round {round_no + 1}: {shown} -> x{ratio:.2f}", flush=True)
    found, _ = await servers["receiver"].drained()

    print(
        f"open loop at {args.rate:g}/s, {args.rounds} rounds x {args.seconds:g} s per server "
        "(after 1 s not measured), latency from the scheduled start to the answer:"
    )
    for kind in KINDS:
        print(
            f"    {LABELS[kind]:<29} p50 {spread(p50[kind], '{:.2f}')} ms; p99 "
            f"{spread(p99[kind], '{:.2f}')} ms; max {spread(worst[kind], '{:.1f}')} ms"
        )
    counts = found["counts"]
    stored = sum(counts.values())
    print(
        f"    every ack stored: acknowledged {acknowledged}, inbox holds {stored} -> "
        f"{'OK' if stored == acknowledged else 'MISMATCH'}"
    )
    print(
        f"    noise: the peer's p99 spread {noise(p99['bare-sqlite']):.0%} over the rounds "
        f"(max - min over median); the load generator started a request at worst "
        f"{max(late):.2f} ms late"
    )
    ratios = [r / b for r, b in zip(p99["receiver"], p99["bare-sqlite"], strict=True)]
    verdict = "MET" if statistics.median(ratios) <= TARGET else "MISSED"
    print(
        f"ack_latency_bench: receiver p99 / one fsync per request p99 at {args.rate:g}/s "
        f"x{spread(ratios, '{:.2f}')}, target <= {TARGET}: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="postbacks per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: a temp dir)")
    args = parser.parse_args()
    with running(KINDS, "latency", args.inbox_dir) as servers:
        asyncio.run(measure(servers, args))


if __name__ == "__main__":
    main()
