"""Handler throughput of 1, 2 and 4 ``dokobit-async work`` processes on one Redis
inbox, the ratios 2/1 and 4/1 measured in the same run (issue 11, section 4).

Each event's handler waits ``--handler-ms`` on ``asyncio.sleep`` (an API call's I/O
wait, next to no CPU), and each worker runs ``--concurrency`` events at a time, so
one worker cannot exceed ``concurrency / handler time`` events/s: more workers must
raise that ceiling, and the ratio shows whether they do (the workers share one CPU,
so a ratio below the worker count with the CPU busy means the CPU, not the design,
is the limit). redis-server (``appendfsync always``) is pinned to one CPU, the
workers and this process to the other. Each repeat starts the workers, waits until
each is reading (start-up is not timed), stores ``--events`` events per worker over
a quarter as many signings at once (so that each run takes about as long, and its
fixed costs weigh the same) and times until every event is done (each exactly
once: checked). Prints events/s per run, the ratios (median, min, max over the
repeats), the noise (the spread of the 1-worker repeats) and one summary line last.

Usage: ``python benchmarks/redis_worker_bench.py [--events 400]
[--handler-ms 50] [--concurrency 4] [--repeats 3] [--dir DIR]`` (defaults: about a
minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from pathlib import Path

from _receiver_load import noise, spread
from _redis_procs import cli, cpu_seconds, flush, handlers, run_on_durable_redis, stop, wait_for

from dokobit_async.redis import RedisInbox

COUNTS = (1, 2, 4)  # worker processes
DEADLINE = 300.0  # seconds a run may take at most


def start_workers(
    url: str, count: int, router: str, directory: Path, concurrency: int, *options: str
) -> list[subprocess.Popen[bytes]]:
    """``count`` ``work`` processes (more ``options`` for each), returned once each is
    reading the inbox."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            log = directory / f"w{n}.err"
            with log.open("wb") as err:
                procs.append(
                    cli(
                        *("work", "--inbox", url, "--router", router, "--name", f"w{n}"),
                        *("--concurrency", str(concurrency), *options),
                        cwd=directory,
                        stderr=err,
                    )
                )
        for n, proc in enumerate(procs):
            wait_for(directory / f"w{n}.err", f"worker w{n} on", proc)
    except BaseException:
        for proc in procs:
            stop(proc)
        raise
    return procs


async def one_run(
    url: str, count: int, router: str, args: argparse.Namespace
) -> tuple[float, float]:
    """(events/s, the workers' CPU seconds over the wall seconds) of ``count`` workers,
    on a fresh inbox."""
    flush(url)
    events = args.events * count
    procs = start_workers(url, count, router, args.where, args.concurrency)
    try:
        async with RedisInbox(url) as inbox:
            cpu0 = cpu_seconds([proc.pid for proc in procs])
            started = time.monotonic()
            await asyncio.gather(*(add(inbox, n, events // 4) for n in range(events)))
            while (counts := await inbox.counts())["done"] < events:
                if time.monotonic() - started > DEADLINE:
                    raise SystemExit(f"{count} worker(s) did not finish in {DEADLINE:g} s")
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - started
            cpu1 = cpu_seconds([proc.pid for proc in procs])
    finally:
        codes = [stop(proc) for proc in procs]
    if sum(counts.values()) != events or codes != [0] * count:
        raise SystemExit(f"inbox {counts}, worker exits {codes}: not every event once")
    return events / elapsed, (cpu1 - cpu0) / elapsed


async def add(inbox: RedisInbox, n: int, signings: int) -> None:
    """Store event ``n`` (of signing ``n % signings``)."""
    signing = f"{n % signings:040x}"
    body = {"action": "signer_signed", "token": signing, "signer": f"signer-{n}"}
    stored = await inbox.add(
        id=f"event-{n}",
        signing_token=signing,
        action="signer_signed",
        body=json.dumps(body).encode(),
        content_type="application/json",
        received_at=time.time(),
    )
    assert stored is not None


async def measure(url: str, args: argparse.Namespace) -> None:
    router, _ = handlers(args.where, args.handler_ms)
    rates: dict[int, list[float]] = {count: [] for count in COUNTS}
    busy: dict[int, list[float]] = {count: [] for count in COUNTS}
    for repeat in range(args.repeats):
        for count in COUNTS:
            rate, share = await one_run(url, count, router, args)
            rates[count].append(rate)
            busy[count].append(share)
        shown = ", ".join(f"{c} worker(s) {rates[c][-1]:,.0f}/s" for c in COUNTS)
        print(f"repeat {repeat + 1}: events handled per second: {shown}", flush=True)
    ceiling = args.concurrency / (args.handler_ms / 1000)
    print(
        f"{args.events} events per worker over a quarter as many signings, handler "
        f"{args.handler_ms:g} ms "
        f"of I/O wait, {args.concurrency} events at a time per worker (one worker's ceiling "
        f"{ceiling:,.0f}/s), appendfsync {args.appendfsync}, {args.repeats} repeats:"
    )
    for count in COUNTS:
        reached = statistics.median(rates[count]) / (count * ceiling)
        print(
            f"    {count} worker(s): {spread(rates[count])} events/s ({reached:.0%} of their "
            f"ceiling), using {statistics.median(busy[count]):.0%} of their CPU"
        )
    ratios = {
        count: [r / one for r, one in zip(rates[count], rates[1], strict=True)]
        for count in COUNTS[1:]
    }
    for count, values in ratios.items():
        print(f"    {count} workers / 1 worker: {spread(values, '{:.2f}')} (ideal {count})")
    print(f"    noise: the 1-worker repeats spread {noise(rates[1]):.0%} (max - min over median)")
    print(
        f"redis_worker_bench: 4 workers / 1 worker events/s {spread(ratios[4], '{:.2f}')}, "
        f"2 / 1 {spread(ratios[2], '{:.2f}')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400, help="per worker")
    parser.add_argument("--handler-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=4, help="events at a time per worker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--appendfsync",
        choices=("always", "everysec", "no"),
        default="always",
        help="the server's AOF fsync policy (default: %(default)s, each write fsynced)",
    )
    parser.add_argument("--dir", help="where the AOF and the logs go (default: a temp dir)")
    args = parser.parse_args()
    run_on_durable_redis(measure, args, "redis-worker-bench")


if __name__ == "__main__":
    main()
