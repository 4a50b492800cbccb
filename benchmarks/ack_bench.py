"""Durable acknowledgements per second: the receiver against a bare aiohttp JSON handler
measured in the same run (issue 10, row 2; target: a ratio of at least 0.8).

The receiver runs with an ``SQLiteInbox`` (``synchronous="FULL"``: every 200 is
fsynced first), the URL secret checked and one trivial handler, so dispatch runs
beside the acks as in production; every round starts with nothing pending. Its peer
reads the body, decodes its JSON and answers JSON. A third server, the same handler
plus one fsynced SQLite insert per request, is shown for scale. Closed loop:
``--concurrency`` requests in flight for ``--seconds`` per server and round; rounds
alternate between the servers, and the ratio is taken round by round (median, min
and max). The noise is the spread of the bare handler's own repeats.

Usage: ``python benchmarks/ack_bench.py [--seconds 5] [--rounds 3] [--concurrency 96]
[--inbox-dir DIR]``.
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
    postbacks,
    running,
    spread,
)

TARGET = 0.8
WARM_UP = 3000  # requests per server before the measured rounds
KINDS = ("bare-json", "receiver", "bare-sqlite")
LABELS = {
    "bare-json": "bare aiohttp JSON handler",
    "receiver": "receiver, SQLite FULL",
    "bare-sqlite": "JSON + 1 fsynced insert",
}


async def measure(servers: dict[str, Server], args: argparse.Namespace) -> None:
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    server_busy: dict[str, list[float]] = {kind: [] for kind in KINDS}
    load_busy: dict[str, list[float]] = {kind: [] for kind in KINDS}
    pending_after: list[int] = []
    acknowledged = 0
    runs = iter(f"{n:06x}" for n in range(1, 2**24))
    pools = {kind: Pool(server.port, server.path) for kind, server in servers.items()}
    receiver = servers["receiver"]
    for kind in KINDS:  # warm up connections, code paths, the database files
        statuses, _, _ = await closed_loop(
            pools[kind], postbacks(next(runs), WARM_UP), args.concurrency
        )
        acknowledged += statuses[200] if kind == "receiver" else 0
    await receiver.drained()
    for round_no in range(args.rounds):
        for kind in KINDS:
            server = servers[kind]
            bodies = postbacks(next(runs), int(args.seconds * 20_000))  # more than enough
            if kind == "receiver":
                await receiver.drained()
            before = (await server.stats())["cpu"]
            statuses, wall, load_cpu = await closed_loop(
                pools[kind], bodies, args.concurrency, args.seconds
            )
            after = await server.stats()
            if set(statuses) != {200}:
                print(f"    {kind}: answers {dict(statuses)}")
            rates[kind].append(statuses[200] / wall)
            server_busy[kind].append((after["cpu"] - before) / wall)
            load_busy[kind].append(load_cpu / wall)
            if kind == "receiver":
                acknowledged += statuses[200]
                pending_after.append(after["counts"]["pending"])
        shown = ", ".join(f"{kind} {rates[kind][-1]:,.0f}/s" for kind in KINDS)
        ratio = rates["receiver"][-1] / rates["bare-json"][-1]
        print(f"round {round_no + 1}: {shown} -> x{ratio:.2f}", flush=True)
    found, drained_in = await receiver.drained()
    for pool in pools.values():
        pool.close()

    print(
        f"closed loop, {args.concurrency} in flight, {args.rounds} rounds x {args.seconds:g} s "
        "per server, acks per second:"
    )
    for kind in KINDS:
        per_ack = statistics.median(server_busy[kind]) / statistics.median(rates[kind]) * 1e6
        print(
            f"    {LABELS[kind]:<26} {spread(rates[kind])}; server CPU "
            f"{statistics.median(server_busy[kind]):.0%} busy, {per_ack:.0f} us per ack; "
            f"load generator {statistics.median(load_busy[kind]):.0%} busy"
        )
    ratios = [r / b for r, b in zip(rates["receiver"], rates["bare-json"], strict=True)]
    per_fsync = [r / b for r, b in zip(rates["receiver"], rates["bare-sqlite"], strict=True)]
    print(f"    receiver / one fsync per request: x{spread(per_fsync, '{:.2f}')}")
    counts = found["counts"]
    stored = sum(counts.values())
    print(
        f"    every ack stored: acknowledged {acknowledged}, inbox holds {stored} (done "
        f"{counts['done']}, pending {counts['pending']}) -> "
        f"{'OK' if stored == acknowledged else 'MISMATCH'}; "
        f"{statistics.median(pending_after):.0f} pending when a round ended, "
        f"all done {drained_in:.1f} s after the last"
    )
    verdict = "MET" if statistics.median(ratios) >= TARGET else "MISSED"
    print(
        f"    noise: the bare handler's repeats spread {noise(rates['bare-json']):.0%} "
        "(max - min over median)"
    )
    print(
        f"ack_bench: receiver durable acks / bare JSON handler x{spread(ratios, '{:.2f}')}, "
        f"target >= {TARGET}: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=96, help="requests in flight")
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: a temp dir)")
    args = parser.parse_args()
    with running(KINDS, "ack", args.inbox_dir) as servers:
        asyncio.run(measure(servers, args))


if __name__ == "__main__":
    main()
